"""Stage ``train``: fine-tune the pretrained flow network with Hugging Face Accelerate.

Reads: ``data/augmented/`` (training crops), ``data/triplets/`` (val split), ``models/pretrained/flownet.pkl``;
params ``lr``, ``base``, ``train``. Writes: ``models/finetuned/flownet.pkl`` (official key layout) and
``results/train/`` (dvclive: loss, learning rate per group, validation PSNR/SSIM, by optimizer step).

Run it as dvc.yaml does, ``accelerate launch -m pipeline.train``: hardware (CPU, GPUs, machines, mixed
precision) comes from ``accelerate launch`` / ``accelerate config``, never from params.yaml. Interrupted runs
resume from ``state/train/`` when the stage is run again with the same params and data.
"""

from __future__ import annotations

import logging
import math
import time
from typing import Iterator

import torch
from accelerate import Accelerator
from accelerate.utils import DataLoaderConfiguration, GradientAccumulationPlugin, gather_object, set_seed
from torch.utils.data import DataLoader
from tqdm import tqdm

from pipeline.data import TrainSamples, split_triplets
from pipeline.errors import UserError, user_facing
from pipeline.inference import score_rows
from pipeline.losses import needs_teacher, rife_loss
from pipeline.models import load_checkpoint, save_checkpoint
from pipeline.optim import build_optimizer, group_lrs
from pipeline.params import Params, load_params
from pipeline.paths import AUGMENTED_DIR, FINETUNED, PRETRAINED, TRAIN_RESULTS
from pipeline.resume import TrainState, fingerprint
from pipeline.schedules import build_scheduler

log = logging.getLogger("pipeline.train")



def make_accelerator(params: Params) -> Accelerator:
    return Accelerator(
        gradient_accumulation_plugin=GradientAccumulationPlugin(
            num_steps=params.train.grad_accum_steps, sync_with_dataloader=False),
        dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True),
        log_with="dvclive",
    )


def make_loader(params: Params, accelerator: Accelerator) -> DataLoader:
    samples = TrainSamples(AUGMENTED_DIR)
    per_step = params.train.batch_size * accelerator.num_processes
    if len(samples) < per_step:
        raise UserError(f"data/augmented holds {len(samples)} samples, fewer than one batch "
                        f"(train.batch_size {params.train.batch_size} x {accelerator.num_processes} processes)")
    generator = torch.Generator().manual_seed(params.base.seed)
    return DataLoader(samples, batch_size=params.train.batch_size, shuffle=True, drop_last=True,
                      generator=generator, num_workers=params.train.num_workers)


def batches(accelerator: Accelerator, loader: DataLoader, start: int) -> Iterator:
    """Endless micro-batches, epoch after epoch, starting at micro-batch ``start`` (for resume)."""
    epoch, skip = divmod(start, len(loader))
    while True:
        loader.set_epoch(epoch)
        yield from (accelerator.skip_first_batches(loader, skip) if skip else loader)
        epoch, skip = epoch + 1, 0


def validate(model: torch.nn.Module, params: Params, accelerator: Accelerator) -> dict[str, float]:
    """Mean PSNR/SSIM of the current weights on the val split (full frames), shared out over processes."""
    rows = split_triplets("val", params.train.val_max_triplets)
    if rows.empty:
        return {}
    net = accelerator.unwrap_model(model)
    net.eval()
    mine = rows.iloc[accelerator.process_index::accelerator.num_processes]
    scores = gather_object(score_rows(net, mine, accelerator.device, round_prediction=True))
    net.train()
    return {"val/psnr": sum(s[0] for s in scores) / len(scores), "val/ssim": sum(s[1] for s in scores) / len(scores)}


def train_step(model, optimizer, batch_iter, params: Params, accelerator: Accelerator) -> dict[str, float]:
    """One optimizer step over ``grad_accum_steps`` micro-batches; returns the mean loss terms."""
    cfg = params.train
    sums: dict[str, float] = {}
    teach = needs_teacher(cfg.loss)
    for _ in range(cfg.grad_accum_steps):
        img0, gt, img1 = next(batch_iter)
        with accelerator.accumulate(model):
            terms = rife_loss(model(img0, img1, gt if teach else None), gt, cfg.loss)
            finite = accelerator.gather(torch.isfinite(terms["total"].detach()).reshape(1)).all()
            if not finite:
                return {"total": math.nan}
            accelerator.backward(terms["total"])
            if accelerator.sync_gradients and cfg.grad_clip > 0:
                accelerator.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            optimizer.step()
            optimizer.zero_grad()
        for name, value in terms.items():
            sums[name] = sums.get(name, 0.0) + value.item() / cfg.grad_accum_steps
    return sums


def run(params: Params) -> None:
    cfg = params.train
    accelerator = make_accelerator(params)
    set_seed(params.base.seed)
    model = load_checkpoint(PRETRAINED, cfg.arch).train()
    optimizer = build_optimizer(model, params.lr, cfg)
    scheduler = build_scheduler(optimizer, cfg)
    loader = make_loader(params, accelerator)
    model, optimizer, loader = accelerator.prepare(model, optimizer, loader)
    accelerator.register_for_checkpointing(scheduler)
    key = fingerprint(params.lr, params.base, cfg, accelerator.num_processes,
                      files=(PRETRAINED, AUGMENTED_DIR / "manifest.csv"))
    state = TrainState(accelerator, key)
    start = state.restore()
    accelerator.init_trackers("train", init_kwargs={"dvclive": {
        "dir": str(TRAIN_RESULTS), "dvcyaml": False, "save_dvc_exp": False, "resume": start > 0}})
    if start == 0:
        accelerator.log(validate(model, params, accelerator), step=0)
    batch_iter = batches(accelerator, loader, start * cfg.grad_accum_steps)
    bar = tqdm(range(start, cfg.steps), initial=start, total=cfg.steps, desc="train", unit="step",
               disable=not accelerator.is_local_main_process)
    samples_per_step = cfg.batch_size * cfg.grad_accum_steps * accelerator.num_processes
    for step in bar:
        began = time.perf_counter()
        lrs = group_lrs(optimizer)
        terms = train_step(model, optimizer, batch_iter, params, accelerator)
        if not math.isfinite(terms["total"]):
            raise UserError(f"training loss is not finite at step {step} (lr {max(lrs.values()):g}); the "
                            "learning rate is likely too high. Lower lr; the last good checkpoint is kept in "
                            f"{state.directory}")
        scheduler.step()
        record = {f"train/loss_{k}" if k != "total" else "train/loss": v for k, v in terms.items()}
        record.update({f"lr/{name}": value for name, value in lrs.items()})
        record["train/samples_per_s"] = samples_per_step / (time.perf_counter() - began)
        done = step + 1
        if done % cfg.val_every == 0 or done == cfg.steps:
            record.update(validate(model, params, accelerator))
        accelerator.log(record, step=done)
        bar.set_postfix(loss=f"{terms['total']:.4f}", lr=f"{max(lrs.values()):.2e}")
        if done % cfg.checkpoint_every == 0 and done < cfg.steps:
            state.save(done)
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        save_checkpoint(accelerator.unwrap_model(model), FINETUNED)
        log.info("wrote %s", FINETUNED)
    accelerator.end_training()
    state.clear()


@user_facing
def main() -> None:
    run(load_params())


if __name__ == "__main__":
    main()
