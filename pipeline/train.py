"""Stage ``train``: fine-tune the pretrained flow network with Hugging Face Accelerate.

Reads: ``data/augmented/plan.csv`` (the training views), ``data/triplets/`` (the frames the views are made from, and
the val split), ``models/pretrained/flownet.pkl``;
params ``lr``, ``base``, ``train``. Writes: ``models/finetuned/flownet.pkl`` (official key layout) and
``results/train/`` (dvclive: loss, learning rate per group, validation PSNR/SSIM, by optimizer step; the
validation at step 0 scores the pretrained weights, and ``metrics.json`` ends with ``val.gain``, the kept weights'
val PSNR minus the pretrained one, with its 95% bootstrap interval).

Run it as dvc.yaml does, ``python -m pipeline.train [accelerate launch flags]``: it checks params.yaml and the
checkpoint, then starts itself under ``accelerate launch`` (``accelerate launch -m pipeline.train`` works too).
Hardware (CPU, GPUs, machines, mixed precision) comes from those flags or ``accelerate config``, never from
params.yaml. Interrupted runs
resume from ``state/train/`` when the stage is run again with the same params and data.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import torch
from accelerate import Accelerator
from accelerate.utils import gather_object, set_seed
from tqdm import tqdm

from pipeline.core.errors import EXIT_INTERRUPTED, UserError, user_facing
from pipeline.core.params import Params, load_params
from pipeline.core.atomic import atomic_dir
from pipeline.core.paths import (AUGMENTED_DIR, FINETUNED, PLAN_FILE, PRETRAINED, TRAIN_LIVE, TRAIN_RESULTS,
                                 TRIPLETS_DIR)
from pipeline.footage.triplets import split_triplets
from pipeline.models import check_timesteps, load_checkpoint, read_checkpoint, save_checkpoint, with_resolved_arch
from pipeline.scoring.batches import score_rows
from pipeline.training.groups import check_group_names, frozen_at, unfreeze_steps
from pipeline.training.loop import USER_THREADS, batches, make_accelerator, make_loader, train_step, use_cpu_cores
from pipeline.training.optim import build_optimizer, group_lrs
from pipeline.training.resume import TrainState, fingerprint
from pipeline.training.schedules import build_scheduler, observe_validation
from pipeline.training.weights import BestOnValidation, ValidationGain, moving_average

log = logging.getLogger("pipeline.train")

LAUNCHED_BY_ACCELERATE = "ACCELERATE_DYNAMO_BACKEND"  # set by `accelerate launch` for every process it starts
LAUNCHED_BY_TORCHRUN = "TORCHELASTIC_RUN_ID"  # set by torchrun (which accelerate's multi-process launch uses too)


def start_curves(directory: Path, step: int) -> None:
    """A fresh run (``step`` 0) starts with no curves; a resumed one keeps those logged up to ``step``."""
    if step == 0:
        shutil.rmtree(directory, ignore_errors=True)
    else:
        trim_curves(directory, step)


def publish_curves(live: Path, results: Path) -> None:
    """Replace ``results`` (what dvc.yaml declares) with the completed run's curves and summary, at once."""
    with atomic_dir(results) as tmp:
        shutil.copytree(live / "plots", tmp / "plots")
        shutil.copy2(live / "metrics.json", tmp / "metrics.json")
    log.info("wrote %s", results)


def trim_curves(directory: Path, step: int) -> None:
    """Drop logged rows past ``step`` (written after the checkpoint a resumed run starts from)."""
    for tsv in directory.glob("plots/metrics/**/*.tsv"):
        curve = pd.read_csv(tsv, sep="\t")
        if (curve["step"] > step).any():
            curve[curve["step"] <= step].to_csv(tsv, sep="\t", index=False)


def seconds_so_far(directory: Path) -> float:
    """The wall time logged up to the checkpoint a resumed run starts from (0 if none was logged)."""
    curve = directory / "plots/metrics/train/seconds.tsv"
    if not curve.is_file():
        return 0.0
    logged = pd.read_csv(curve, sep="\t")
    return float(logged["seconds"].iloc[-1]) if len(logged) else 0.0


def val_rows(params: Params) -> pd.DataFrame:
    """The val triplets every validation scores (read and checked once, before training starts)."""
    rows = split_triplets("val", params.train.val_max_triplets)
    check_timesteps(params.train.arch, rows["timestep"], "the val split of data/triplets")
    return rows


def validate(net: torch.nn.Module, rows: pd.DataFrame, params: Params,
             accelerator: Accelerator) -> tuple[dict[str, float], list[float]]:
    """Mean PSNR/SSIM of ``net`` (unwrapped) on ``rows`` (full frames), shared out over processes, and the PSNR of
    each triplet (in the same order at every validation)."""
    if rows.empty:
        return {}, []
    net.eval()
    mine = rows.iloc[accelerator.process_index::accelerator.num_processes]
    scores = gather_object(score_rows(net, mine, accelerator.device, round_prediction=True,
                                      batch_size=params.train.batch_size))
    net.train()
    means = {"val/psnr": sum(s[0] for s in scores) / len(scores), "val/ssim": sum(s[1] for s in scores) / len(scores)}
    return means, [s[0] for s in scores]


def run(params: Params) -> None:
    cfg = params.train
    accelerator = make_accelerator(params, log_with="dvclive")
    use_cpu_cores(accelerator)
    if accelerator.is_main_process:
        log.info("training %s with %d process(es) (%s) on %s, mixed precision %s", cfg.arch,
                 accelerator.num_processes, accelerator.distributed_type, accelerator.device.type,
                 accelerator.mixed_precision)
    set_seed(params.base.seed)
    # channels_last weights to match the channels_last batches of train_step (same weights, faster steps)
    model = load_checkpoint(PRETRAINED, cfg.arch).train().to(memory_format=torch.channels_last)
    optimizer = build_optimizer(model, params.lr, cfg)
    scheduler = build_scheduler(optimizer, cfg)
    loader = make_loader(params, accelerator)
    rows = val_rows(params)
    model, optimizer, loader = accelerator.prepare(model, optimizer, loader)
    ema = moving_average(accelerator.unwrap_model(model), cfg)
    best = BestOnValidation(cfg.early_stopping.patience, cfg.early_stopping.min_delta, cfg.keep == "best")
    val_gain = ValidationGain(cfg.keep == "best")
    for extra in (scheduler, best, ema, val_gain):
        if extra is not None:
            accelerator.register_for_checkpointing(extra)
    key = fingerprint(params.lr, params.base, cfg, accelerator.num_processes,
                      files=(PRETRAINED, AUGMENTED_DIR / PLAN_FILE, TRIPLETS_DIR / "manifest.csv"))
    state = TrainState(accelerator, key)
    start = state.restore()
    if accelerator.is_main_process:
        start_curves(TRAIN_LIVE, start)
    seconds = seconds_so_far(TRAIN_LIVE) if start else 0.0
    # The curves are logged into the resumable state, and replace results/train only when the run completes: a
    # failed or interrupted run never leaves curves that belong to no model, and a resumed one keeps every step.
    accelerator.init_trackers("train", init_kwargs={"dvclive": {
        "dir": str(TRAIN_LIVE), "dvcyaml": False, "save_dvc_exp": False, "resume": start > 0}})

    def evaluate_now(step: int) -> dict[str, float]:
        net = ema.module if ema is not None else accelerator.unwrap_model(model)
        scores, psnrs = validate(net, rows, params, accelerator)
        if scores:
            val_gain.update(psnrs, step, best.update(scores["val/psnr"], step, net))
            observe_validation(scheduler, scores["val/psnr"])
        return scores

    if start == 0:
        accelerator.log(evaluate_now(0), step=0)
    batch_iter = batches(accelerator, loader, start * cfg.grad_accum_steps)
    bar = tqdm(range(start, cfg.steps), initial=start, total=cfg.steps, desc="train", unit="step",
               disable=not accelerator.is_local_main_process)
    samples_per_step = cfg.batch_size * cfg.grad_accum_steps * accelerator.num_processes
    unfreeze = unfreeze_steps(cfg)
    done = start
    for step in bar:
        began = time.perf_counter()
        frozen = frozen_at(unfreeze, step)
        lrs = group_lrs(optimizer, frozen)
        terms = train_step(model, optimizer, batch_iter, params, accelerator, frozen)
        if not math.isfinite(terms["total"]):
            raise UserError(f"training loss is not finite at step {step} (lr {max(lrs.values()):g}): the "
                            "learning rate is likely too high; lower lr. The previous fine-tuned model and its "
                            "results are kept")
        scheduler.step()
        if ema is not None:
            ema.update_parameters(accelerator.unwrap_model(model))
        record = {f"train/loss_{k}" if k != "total" else "train/loss": v for k, v in terms.items()}
        record.update({f"lr/{name}": value for name, value in lrs.items()})
        record["train/samples_per_s"] = samples_per_step / (time.perf_counter() - began)
        done = step + 1
        if done % cfg.val_every == 0 or done == cfg.steps:
            record.update(evaluate_now(done))
        seconds += time.perf_counter() - began
        record["train/seconds"] = seconds  # wall time of the run so far, validations included, across resumes
        accelerator.log(record, step=done)
        bar.set_postfix(loss=f"{terms['total']:.4f}", lr=f"{max(lrs.values()):.2e}")
        if best.should_stop():
            log.info("early stopping at step %d: val PSNR has not beaten %.3f dB (step %d) for %d validations",
                     done, best.best_psnr, best.best_step, best.bad)
            break
        if done % cfg.checkpoint_every == 0 and done < cfg.steps:
            state.save(done)
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        record_val_gain(accelerator, val_gain)
    accelerator.end_training()  # dvclive writes its summary (metrics.json) here
    if accelerator.is_main_process:
        save_output(accelerator.unwrap_model(model), ema, best, cfg)
        publish_curves(TRAIN_LIVE, TRAIN_RESULTS)
    state.clear()


def record_val_gain(accelerator: Accelerator, val_gain: ValidationGain) -> None:
    """Put the kept weights' val gain over the pretrained weights into results/train/metrics.json (``val.gain``)."""
    gain = val_gain.summary()
    if not gain:
        return
    log.info("val gain of the kept weights (step %d) over the pretrained: %+.3f dB PSNR (95%% CI %+.3f .. %+.3f) "
             "on %d val triplets", gain["gain_step"], gain["gain"], gain["gain_ci95_low"], gain["gain_ci95_high"],
             gain["triplets"])
    live = accelerator.get_tracker("dvclive", unwrap=True)
    live.summary.setdefault("val", {}).update(gain)
    live.make_summary()


def save_output(model: torch.nn.Module, ema, best: BestOnValidation, cfg) -> None:
    """Write the weights ``train.keep`` asks for: the last step's (or their moving average), or the best on val."""
    net = ema.module if ema is not None else model
    if cfg.keep == "best" and best.weights is not None:
        net.load_state_dict(best.weights)
        log.info("keeping the weights of step %d (val PSNR %.3f dB)", best.best_step, best.best_psnr)
    save_checkpoint(net, FINETUNED, extras=read_checkpoint(PRETRAINED).extras)
    log.info("wrote %s", FINETUNED)


def child_pids() -> list[int]:
    """The processes this one started (the launcher's workers), read from /proc (Linux; elsewhere none)."""
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == os.getpid():
            children.append(int(stat.parent.name))
    return children


def forward_to_children(signum: int, frame) -> None:
    for pid in child_pids():
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signum)


def launch(launcher_flags: list[str]) -> None:
    """Start this stage under ``accelerate launch`` (with the given launcher flags and the user's
    ``accelerate config``), and pass on its exit code without the launcher's own traceback."""
    from accelerate.commands.launch import launch_command, launch_command_parser

    args = launch_command_parser().parse_args([*launcher_flags, "-m", "pipeline.train"])
    # A scheduler's SIGTERM often reaches only this process: pass it on, so the workers stop as after Ctrl-C
    signal.signal(signal.SIGTERM, forward_to_children)
    try:
        launch_command(args)
    except subprocess.CalledProcessError as err:
        sys.exit(err.returncode)
    except KeyboardInterrupt:
        sys.exit(EXIT_INTERRUPTED)  # the worker has said what happened
    except Exception as err:  # multi-GPU launches report a failed worker with their own exception types
        print(f"error: training failed in a worker process ({type(err).__name__}); see its messages above",
              file=sys.stderr)
        sys.exit(1)


@user_facing
def main() -> None:
    params = with_resolved_arch(load_params(), PRETRAINED)
    check_group_names(params.train)
    if LAUNCHED_BY_ACCELERATE not in os.environ and LAUNCHED_BY_TORCHRUN not in os.environ:
        load_checkpoint(PRETRAINED, params.train.arch)  # a checkpoint that does not fit stops here, in one line
        if "OMP_NUM_THREADS" in os.environ:  # the launcher replaces it; the worker honours the user's value
            os.environ[USER_THREADS] = os.environ["OMP_NUM_THREADS"]
        launch(sys.argv[1:])
        return
    run(params)


if __name__ == "__main__":
    main()
