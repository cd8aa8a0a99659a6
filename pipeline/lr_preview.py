"""``python -m pipeline.lr_preview``: the learning rate of every parameter group at every step, without training.

Reads params.yaml (``lr``, ``train``). Writes ``results/lr_preview/lr.tsv`` (``step`` n = 1 .. steps, then one
column per group: the rate the n-th optimizer step uses, 0 while the group is frozen; the same convention as
training's logged curves) and
``results/lr_preview/lr.png``. It runs the real optimizer groups and scheduler that training builds, so the
preview and the curves training logs to ``results/train/plots/lr.tsv`` are the same numbers. A
``plateau`` schedule depends on validation scores, which a preview does not have: it is drawn as if
validation PSNR never stopped improving.
"""

from __future__ import annotations

import logging
import warnings

import pandas as pd
import torch

from pipeline.core.atomic import atomic_path
from pipeline.core.params import Params, load_params
from pipeline.core.paths import LR_PREVIEW_RESULTS, PRETRAINED
from pipeline.core.plotting import png_figure
from pipeline.core.runner import user_facing
from pipeline.models import create_model, with_resolved_arch
from pipeline.training.groups import check_group_names, frozen_at, unfreeze_steps
from pipeline.training.optim import build_optimizer, group_lrs
from pipeline.training.schedules import build_scheduler

log = logging.getLogger("pipeline.lr_preview")


def lr_table(params: Params) -> pd.DataFrame:
    """Per-step rates of each group, as training would set them (rows: steps 1 .. steps)."""
    cfg = params.train
    check_group_names(cfg)
    model = create_model(cfg.arch)
    for param in model.parameters():
        param.grad = torch.zeros_like(param)
    optimizer = build_optimizer(model, params.lr, cfg)
    scheduler = build_scheduler(optimizer, cfg)
    unfreeze = unfreeze_steps(cfg)
    rows = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # stepping the scheduler without real optimizer steps
        for step in range(cfg.steps):
            rows.append({"step": step + 1, **group_lrs(optimizer, frozen_at(unfreeze, step))})
            scheduler.step()
    return pd.DataFrame(rows)


def plot(table: pd.DataFrame, title: str, path) -> None:
    styles = ("-", "--", "-.", ":")  # groups at the same rate stay visible on top of each other
    with png_figure(path) as ax:
        for i, column in enumerate(table.columns[1:]):
            ax.plot(table["step"], table[column], styles[i % len(styles)], label=column, linewidth=1.5)
        ax.set(xlabel="optimizer step", ylabel="learning rate", title=title)
        ax.ticklabel_format(axis="y", style="sci", scilimits=(0, 0))


@user_facing
def main() -> None:
    params = with_resolved_arch(load_params(sections=("lr", "train")), PRETRAINED)
    table = lr_table(params)
    LR_PREVIEW_RESULTS.mkdir(parents=True, exist_ok=True)
    with atomic_path(LR_PREVIEW_RESULTS / "lr.tsv") as tmp:
        table.to_csv(tmp, sep="\t", index=False)
    with atomic_path(LR_PREVIEW_RESULTS / "lr.png") as tmp:
        plot(table, f"{params.train.schedule}, lr = {params.lr:g}, {params.train.steps} steps", tmp)
    peak = table.iloc[:, 1:].max()
    log.info("wrote %s and lr.png: %s", LR_PREVIEW_RESULTS / "lr.tsv",
             ", ".join(f"{name} peak {value:.3g}" for name, value in peak.items()))


if __name__ == "__main__":
    main()
