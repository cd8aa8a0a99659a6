"""One fine-tuning run: the prepared model, optimizer, schedule and loader, the step loop with its validations,
resumable checkpoints and curves, and the weights the run keeps.

:func:`fit` runs in every process ``accelerate launch`` started; the entry point ``pipeline.train`` wires params
to it and writes what it returns."""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass

import pandas as pd
import torch
from accelerate import Accelerator
from accelerate.utils import set_seed
from tqdm import tqdm

from pipeline.core.errors import UserError
from pipeline.core.params import Params
from pipeline.core.paths import AUGMENTED_DIR, PLAN_FILE, PRETRAINED, TRAIN_LIVE, TRAIN_RESULTS, TRIPLETS_DIR
from pipeline.models import load_checkpoint
from pipeline.training.curves import CurvePreview, add_to_summary, seconds_so_far, start_curves
from pipeline.training.groups import frozen_at, unfreeze_steps
from pipeline.training.loop import batches, make_loader, train_step
from pipeline.training.optim import PullToPretrained, build_optimizer, group_lrs, pull_to_pretrained
from pipeline.training.resume import TrainState, fingerprint
from pipeline.training.schedules import build_scheduler, observe_validation
from pipeline.training.validation import val_rows, validate
from pipeline.training.weights import BestOnValidation, ValidationGain, moving_average

log = logging.getLogger(__name__)


@dataclass
class Fitted:
    """What a completed run hands back: the trained network (unwrapped), its moving average (or None), the
    best validation (its weights when ``train.keep`` is best), and its resumable state, to clear once the
    outputs are written (until then, a run killed while writing them resumes at its end)."""

    model: torch.nn.Module
    ema: torch.nn.Module | None
    best: BestOnValidation
    state: TrainState

    def kept(self, keep: str) -> tuple[torch.nn.Module, int | None]:
        """The network to write for ``train.keep`` and the step its weights come from (None: the last step)."""
        net = self.ema.module if self.ema is not None else self.model
        if keep == "best" and self.best.weights is not None:
            net.load_state_dict(self.best.weights)
            return net, self.best.best_step
        return net, None


@dataclass
class Run:
    """The prepared objects of a run, and the val triplets it scores."""

    accelerator: Accelerator
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: object
    loader: object
    rows: pd.DataFrame
    ema: torch.nn.Module | None
    best: BestOnValidation
    val_gain: ValidationGain
    pull: PullToPretrained | None

    def validate_now(self, params: Params, step: int) -> dict[str, float]:
        """Score the weights being trained (or their average) on val, and tell the objects that follow it."""
        net = self.ema.module if self.ema is not None else self.accelerator.unwrap_model(self.model)
        scores, psnrs = validate(net, self.rows, params.train.batch_size, self.accelerator,
                                 params.train.val_vmaf_triplets, params.train.val_scale)
        if scores:
            is_best = self.best.update(scores["val/psnr"], step, net, scores.get("val/vmaf"))
            self.val_gain.update(psnrs, step, is_best)
            observe_validation(self.scheduler, scores["val/psnr"])
        return scores


def prepare(params: Params, accelerator: Accelerator) -> Run:
    cfg = params.train
    set_seed(params.base.seed)
    # channels_last weights to match the channels_last batches of train_step (same weights, faster steps)
    model = load_checkpoint(PRETRAINED, cfg.arch).train().to(memory_format=torch.channels_last)
    optimizer = build_optimizer(model, params.lr, cfg)
    scheduler = build_scheduler(optimizer, cfg)
    loader = make_loader(cfg, params.base.seed, accelerator)
    rows = val_rows(cfg)
    model, optimizer, loader = accelerator.prepare(model, optimizer, loader)
    pull = pull_to_pretrained(optimizer, cfg)  # anchored to the pretrained weights, on the training device
    ema = moving_average(accelerator.unwrap_model(model), cfg)
    best = BestOnValidation(cfg.early_stopping.patience, cfg.early_stopping.min_delta, cfg.keep == "best",
                            cfg.keep_by, cfg.vmaf_tolerance)
    val_gain = ValidationGain(cfg.keep == "best")
    for extra in (scheduler, best, ema, val_gain):
        if extra is not None:
            accelerator.register_for_checkpointing(extra)
    return Run(accelerator, model, optimizer, scheduler, loader, rows, ema, best, val_gain, pull)


def fit(params: Params, accelerator: Accelerator) -> Fitted:
    """Train from the pretrained weights for ``train.steps`` (or until early stopping), resuming from the last
    checkpoint of an interrupted run with the same params and data; curves go to the run's dvclive folder."""
    cfg = params.train
    run = prepare(params, accelerator)
    key = fingerprint(params.lr, params.base, cfg, accelerator.num_processes, accelerator.mixed_precision,
                      files=(PRETRAINED, AUGMENTED_DIR / PLAN_FILE, TRIPLETS_DIR / "manifest.csv"))
    state = TrainState(accelerator, key)
    start = state.restore()
    if accelerator.is_main_process:
        start_curves(TRAIN_LIVE, start)
    accelerator.init_trackers("train", init_kwargs={"dvclive": {
        "dir": str(TRAIN_LIVE), "dvcyaml": False, "save_dvc_exp": False, "resume": start > 0}})
    preview = CurvePreview(TRAIN_LIVE, TRAIN_RESULTS) if accelerator.is_main_process else None
    if start == 0:
        accelerator.log(run.validate_now(params, 0), step=0)
    if preview:
        preview.update(now=True)
    step_loop(params, run, state, start, preview)
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        record_val_gain(accelerator, run.val_gain)
    accelerator.end_training()  # dvclive writes its summary (metrics.json) here
    return Fitted(accelerator.unwrap_model(run.model), run.ema, run.best, state)


def step_loop(params: Params, run: Run, state: TrainState, start: int, preview: CurvePreview | None) -> None:
    """Optimizer steps ``start`` .. ``train.steps``: log every step (and show it in the ``preview``), validate and
    checkpoint as params say."""
    cfg, accelerator = params.train, run.accelerator
    batch_iter = batches(accelerator, run.loader, start * cfg.grad_accum_steps)
    bar = tqdm(range(start, cfg.steps), initial=start, total=cfg.steps, desc="train", unit="step",
               disable=not accelerator.is_local_main_process)
    samples_per_step = cfg.batch_size * cfg.grad_accum_steps * accelerator.num_processes
    unfreeze = unfreeze_steps(cfg)
    seconds = seconds_so_far(TRAIN_LIVE) if start else 0.0
    for step in bar:
        began = time.perf_counter()
        frozen = frozen_at(unfreeze, step)
        lrs = group_lrs(run.optimizer, frozen)
        terms = train_step(run.model, run.optimizer, batch_iter, cfg, accelerator, frozen, run.pull)
        if not math.isfinite(terms["total"]):
            raise UserError(f"training loss is not finite at step {step} (lr {max(lrs.values()):g}): the "
                            f"learning rate is likely too high; lower lr{overflow_hint(accelerator)}. The previous "
                            "fine-tuned model and its results are kept")
        run.scheduler.step()
        if run.ema is not None:
            run.ema.update_parameters(accelerator.unwrap_model(run.model))
        record = {f"train/loss_{k}" if k != "total" else "train/loss": v for k, v in terms.items()}
        record.update({f"lr/{name}": value for name, value in lrs.items()})
        record["train/samples_per_s"] = samples_per_step / (time.perf_counter() - began)
        done = step + 1
        if done % cfg.val_every == 0 or done == cfg.steps:
            record.update(run.validate_now(params, done))
        seconds += time.perf_counter() - began
        record["train/seconds"] = seconds  # wall time of the run so far, validations included, across resumes
        accelerator.log(record, step=done)
        if preview:
            preview.update(now="val/psnr" in record)
        bar.set_postfix(loss=f"{terms['total']:.4f}", lr=f"{max(lrs.values()):.2e}")
        if run.best.should_stop():
            log.info("early stopping at step %d: %d validations in a row have not beaten step %d's (train.keep_by: "
                     "%s)", done, run.best.bad, run.best.best_step, cfg.keep_by)
            break
        if done % cfg.checkpoint_every == 0 and done < cfg.steps:
            state.save(done)


def overflow_hint(accelerator: Accelerator) -> str:
    """fp16 holds values up to 65504 only: a network whose activations pass it gives an infinite loss."""
    if accelerator.mixed_precision != "fp16":
        return ""
    return " (or fp16 overflowed: try train.mixed_precision bf16 or no)"


def record_val_gain(accelerator: Accelerator, val_gain: ValidationGain) -> None:
    """Put the kept weights' val gain over the pretrained weights into the run's summary (``val.gain``)."""
    gain = val_gain.summary()
    if not gain:
        return
    log.info("val gain of the kept weights (step %d) over the pretrained: %+.3f dB PSNR (95%% CI %+.3f .. %+.3f) "
             "on %d val triplets", gain["gain_step"], gain["gain"], gain["low"], gain["high"],
             gain["triplets"])
    add_to_summary(accelerator, "val", gain)
