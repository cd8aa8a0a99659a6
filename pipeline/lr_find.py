"""Stage ``lr_find``: a learning-rate range test from the pretrained weights.

Reads: ``data/augmented/plan.csv`` and the frames of ``data/triplets/`` it names, ``models/pretrained/flownet.pkl``;
params ``base``, ``train`` (architecture, batch, groups, optimizer, loss, loader workers, mixed precision) and
``lr_find``. Writes ``results/lr_find/``: ``curve.tsv`` (rate, loss and smoothed loss at each step; a dvc plot),
``metrics.json`` (the suggested rates) and ``lr_find.png``.

The base rate grows exponentially from ``min_lr`` to ``max_lr``, one training step at each rate (every group
at its multiple of it, as in training; ``train.freeze`` does not apply: the test probes every group); the loss is
smoothed exponentially (bias-corrected) and the test stops once the smoothed loss exceeds ``diverge`` times its
lowest value. Suggestions: ``steepest`` (where the
smoothed loss falls fastest against log rate), ``minimum_div_10`` (a tenth of the rate at the lowest
smoothed loss) and ``valley`` (the middle of the longest stretch over which the loss keeps falling). For
fine-tuning a pretrained network, read them as upper bounds: the RIFE author advises far lower rates
(1e-5) than a range test on few samples tends to suggest.
"""

from __future__ import annotations

import json
import logging
import math

import numpy as np
import pandas as pd
import torch
from accelerate.utils import set_seed
from tqdm import tqdm

from pipeline.core.atomic import atomic_path, output_set, write_text
from pipeline.core.params import Params, load_params
from pipeline.core.paths import LR_FIND_RESULTS, PRETRAINED
from pipeline.core.plotting import png_figure
from pipeline.core.runner import user_facing
from pipeline.core.system import pin_cpu_isa
from pipeline.models import load_checkpoint, with_resolved_arch
from pipeline.training.groups import check_group_names, multipliers
from pipeline.training.loop import batches, make_accelerator, make_loader, train_step, use_threads
from pipeline.training.optim import build_optimizer

log = logging.getLogger("pipeline.lr_find")

# the params this stage reads: its `params:` in dvc.yaml (their cross-field checks run here)
PARAMS = ("base", "train.arch", "train.batch_size", "train.groups", "train.optimizer", "train.weight_decay",
          "train.grad_clip", "train.loss", "train.num_workers", "train.threads", "train.cpu_isa",
          "train.mixed_precision", "lr_find")

MIN_STEPS_BEFORE_STOP = 5  # the smoothed loss is too noisy to call divergence over the first few steps
SETTLING_SHARE = 0.1  # the first tenth of the curve (at least MIN_STEPS_BEFORE_STOP) is left out of suggestions:
# the smoothed loss still leans on its first few batches there, and a lucky first batch looks like the minimum


def sweep_rates(min_lr: float, max_lr: float, steps: int) -> np.ndarray:
    return min_lr * (max_lr / min_lr) ** (np.arange(steps) / (steps - 1))


def smooth(losses: list[float], beta: float) -> list[float]:
    """Bias-corrected exponential moving average."""
    average, out = 0.0, []
    for i, loss in enumerate(losses):
        average = beta * average + (1 - beta) * loss
        out.append(average / (1 - beta ** (i + 1)))
    return out


def longest_descent(values: list[float]) -> tuple[int, int]:
    """First and last index of the longest strictly decreasing subsequence of ``values``."""
    length = [1] * len(values)
    start = list(range(len(values)))
    for i in range(len(values)):
        for j in range(i):
            if values[j] > values[i] and length[j] + 1 > length[i]:
                length[i], start[i] = length[j] + 1, start[j]
    end = int(np.argmax(length))
    return start[end], end


def suggestions(rates: np.ndarray, smoothed: list[float]) -> dict[str, float]:
    """The three suggested rates, from the settled part of the curve."""
    skip = min(max(MIN_STEPS_BEFORE_STOP, round(len(rates) * SETTLING_SHARE)), len(rates) - 2)
    rates, values = np.asarray(rates)[skip:], np.asarray(smoothed)[skip:]
    slope = np.gradient(values, np.log10(rates))
    first, last = longest_descent(values.tolist())
    return {"steepest": float(rates[int(np.argmin(slope))]),
            "minimum_div_10": float(rates[int(np.argmin(values))] / 10),
            "valley": float(rates[(first + last) // 2])}


def range_test(params: Params) -> pd.DataFrame:
    """Train from the pretrained weights with the base rate rising from ``min_lr`` to ``max_lr``, one
    optimizer step (the same step as ``train``) per rate; the loss and smoothed loss at each rate."""
    cfg, find = params.train, params.lr_find
    pin_cpu_isa(cfg.cpu_isa)
    accelerator = make_accelerator(cfg)
    use_threads(accelerator, cfg.threads)
    set_seed(params.base.seed)
    model = load_checkpoint(PRETRAINED, cfg.arch).train().to(memory_format=torch.channels_last)
    optimizer = build_optimizer(model, find.min_lr, cfg)
    model, optimizer, loader = accelerator.prepare(model, optimizer, make_loader(cfg, params.base.seed, accelerator))
    rate_of = multipliers(cfg)
    batch_iter = batches(accelerator, loader, 0)
    rates = sweep_rates(find.min_lr, find.max_lr, find.steps)
    rows: list[dict] = []
    bar = tqdm(rates, desc="lr_find", unit="step", disable=not accelerator.is_local_main_process)
    for step, rate in enumerate(bar):
        for group in optimizer.param_groups:
            group["lr"] = rate * rate_of[group["name"]]
        loss = train_step(model, optimizer, batch_iter, cfg, accelerator, frozen=set())["total"]
        if not math.isfinite(loss):
            log.info("loss is not finite at lr %.3g: stopping", rate)
            break
        rows.append({"step": step, "lr": float(rate), "log10_lr": math.log10(rate), "loss": loss})
        smoothed = smooth([r["loss"] for r in rows], find.smoothing)
        rows[-1]["smoothed_loss"] = smoothed[-1]
        bar.set_postfix(lr=f"{rate:.2e}", loss=f"{smoothed[-1]:.4f}")
        if step >= MIN_STEPS_BEFORE_STOP and smoothed[-1] > find.diverge * min(smoothed):
            log.info("smoothed loss passed %.1fx its lowest at lr %.3g: stopping", find.diverge, rate)
            break
    return pd.DataFrame(rows)


def plot(curve: pd.DataFrame, suggested: dict[str, float], path) -> None:
    with png_figure(path) as ax:
        ax.plot(curve["lr"], curve["loss"], color="0.75", linewidth=1, label="loss")
        ax.plot(curve["lr"], curve["smoothed_loss"], linewidth=2, label="smoothed loss")
        for (name, rate), style in zip(suggested.items(), ("--", "-.", ":"), strict=True):
            ax.axvline(rate, linestyle=style, color="k", linewidth=1, label=f"{name} {rate:.2g}")
        ax.set(xscale="log", xlabel="learning rate", ylabel="training loss", title="learning-rate range test",
               ylim=(0, 2 * curve["smoothed_loss"].max()))


@user_facing
def main() -> None:
    params = with_resolved_arch(load_params(sections=PARAMS), PRETRAINED)
    check_group_names(params.train)
    curve = range_test(params)
    suggested = suggestions(curve["lr"].to_numpy(), curve["smoothed_loss"].tolist())
    summary = {"suggested": suggested, "steps_run": len(curve), "last_lr": float(curve["lr"].iloc[-1]),
               "lowest_smoothed_loss": float(curve["smoothed_loss"].min())}
    with output_set():  # the curve, its plot and the summary are replaced together
        with atomic_path(LR_FIND_RESULTS / "curve.tsv") as tmp:
            curve.to_csv(tmp, sep="\t", index=False, float_format="%.6g")
        with atomic_path(LR_FIND_RESULTS / "lr_find.png") as tmp:
            plot(curve, suggested, tmp)
        write_text(LR_FIND_RESULTS / "metrics.json", json.dumps(summary, indent=2) + "\n")
    log.info("suggested rates: %s", ", ".join(f"{k} {v:.3g}" for k, v in suggested.items()))


if __name__ == "__main__":
    main()
