"""The parts of a training run that ``train`` and ``lr_find`` share: the Accelerator, the planned training views
and their loader, the endless batch stream, and one optimizer step.

Each view of ``augment``'s plan is made when it is loaded: its triplet's frames are decoded from ``data/triplets``
and cropped and transformed as the plan says, in ``train.num_workers`` loader processes (0: in the training
process). Views of several crop sizes (footage smaller than ``augment.crop`` is cropped smaller) never share a
batch: every batch holds views of one size, drawn by :class:`SizeGroupedBatches`."""

from __future__ import annotations

import logging
import math
import multiprocessing.context
import os
import signal
import sys
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import torch
from accelerate import Accelerator
from accelerate.utils import DataLoaderConfiguration, DistributedDataParallelKwargs, GradientAccumulationPlugin
from torch.utils.data import DataLoader, Dataset, Sampler

from pipeline.core.errors import UserError
from pipeline.core.params import Train
from pipeline.core.paths import AUGMENTED_DIR, PLAN_FILE, TRIPLETS_DIR
from pipeline.core.system import cpu_threads
from pipeline.footage.triplets import split_triplets
from pipeline.footage.views import FRAME_COLUMNS, VIEW_COLUMNS, read_plan, read_view
from pipeline.models import check_timesteps
from pipeline.training.losses import needs_teacher, rife_loss
from pipeline.training.optim import PullToPretrained, drop_frozen_gradients

log = logging.getLogger(__name__)


class TrainViews(Dataset):
    """The planned training views (``data/augmented/plan.csv``) made from the stored frames (``data/triplets``):
    item ``i`` is (I0, It, I1) as float CHW tensors in [0, 1] and the target's timestep t (a 0-d float tensor),
    decoded and transformed when it is asked for. ``sizes[i]`` is its crop side."""

    def __init__(self, plan_path: Path = AUGMENTED_DIR / PLAN_FILE, frames: Path = TRIPLETS_DIR) -> None:
        plan = read_plan(plan_path, split_triplets("train", root=frames), str(frames / "manifest.csv"))
        self.frames = frames
        self.columns = {name: plan[name].to_numpy() for name in FRAME_COLUMNS + VIEW_COLUMNS}  # one array each
        self.timesteps = plan["timestep"].to_numpy(np.float32)
        self.sizes = plan["crop"].to_numpy(np.int64)
        check_frames(plan, frames)

    def __len__(self) -> int:
        return len(self.sizes)

    def sample(self, index: int) -> np.ndarray:
        """View ``index`` as (3, crop, crop, 3) uint8 RGB (I0, It, I1)."""
        return read_view({name: values[index] for name, values in self.columns.items()}, self.frames)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        frames = torch.from_numpy(self.sample(index)).permute(0, 3, 1, 2).float().div_(255.0)
        return frames[0], frames[1], frames[2], torch.tensor(self.timesteps[index])


def check_frames(plan: pd.DataFrame, root: Path) -> None:
    """Every frame file the plan names is there (a missing one stops the stage before training starts)."""
    for name in pd.unique(plan[FRAME_COLUMNS].to_numpy().ravel()):
        if not (root / name).is_file():
            raise UserError(f"{root / name}: missing (the augment plan uses it); run `dvc repro extract` "
                            "or `dvc checkout data/triplets`")


def quiet_worker(worker_id: int) -> None:
    """A loader worker decodes on one thread (the training process already uses every core) and leaves Ctrl-C
    and SIGTERM to the training process, which shuts its workers down: a worker killed by the signal makes the
    loader raise in the training process while it unwinds, a traceback instead of one line."""
    cv2.setNumThreads(1)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, lambda signum, frame: os._exit(0))
    sys.excepthook = drop_lost_connections


def drop_lost_connections(kind: type[BaseException], value: BaseException, tb) -> None:
    """A loader worker's report of an uncaught exception, without the connections the training process dropped.

    A worker hands each batch's shared memory to the training process through a thread that reports its errors
    here; when a Ctrl-C or SIGTERM stops the training process in the middle of such a hand-over, the thread's
    connection breaks and it printed a traceback (seen once, cut short by the worker's own exit), although the
    training process says in one line how the run stopped. Any other exception is reported as Python would."""
    if issubclass(kind, (ConnectionError, EOFError)):
        return
    sys.__excepthook__(kind, value, tb)


class LoaderWorker(multiprocessing.context.SpawnProcess):
    """A loader worker process that ends with ``os._exit`` as soon as torch's worker loop returns.

    A worker that ended through Python's own shutdown aborted in it 4 times in 120 exits here ("terminate called
    without an active exception", after the last Python frame), and the training process reported the loader's
    traceback. That shutdown stops the daemon threads a worker still has (the queue's feeder, which may be
    pickling a batch through torch's C++ code) by unwinding them where they stand; ending at once skips it (0
    aborts in 100 exits). The batches still in flight are not wanted once the loop has returned."""

    def run(self) -> None:
        super().run()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)


class LoaderStart(multiprocessing.context.SpawnContext):
    """Loader workers start as fresh processes: a worker forked from the running training process inherits its
    threads' locks in whatever state they were, and such a worker hung for good before its first batch (twice, on
    this project's CPU machine); a spawned one starts clean (it imports torch again, once per run). Each ends as
    :class:`LoaderWorker` does."""

    Process = LoaderWorker


WORKER_START = LoaderStart()


class SizeGroupedBatches(Sampler[list[int]]):
    """Shuffled batches of ``batch_size`` samples that share a crop size, so they stack.

    Each epoch, the samples of every size are shuffled and cut into full batches (a remainder under one batch is
    left out, as ``drop_last`` does), and the batches of all sizes are shuffled together. The order depends only
    on ``seed`` and the epoch (set by ``set_epoch``), so a resumed run sees the same batches.
    """

    def __init__(self, sizes: np.ndarray, batch_size: int, seed: int) -> None:
        self.sizes = np.asarray(sizes)
        self.batch_size, self.seed, self.epoch = batch_size, seed, 0
        self.drop_last = True

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return sum(int((self.sizes == size).sum()) // self.batch_size for size in np.unique(self.sizes))

    def __iter__(self) -> Iterator[list[int]]:
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        groups: list[list[int]] = []
        for size in np.unique(self.sizes):
            members = np.flatnonzero(self.sizes == size)
            order = members[torch.randperm(len(members), generator=generator).numpy()]
            full = len(order) // self.batch_size * self.batch_size
            groups += [order[i:i + self.batch_size].tolist() for i in range(0, full, self.batch_size)]
        for i in torch.randperm(len(groups), generator=generator).tolist():
            yield groups[i]


LAUNCHER_PRECISION = "ACCELERATE_MIXED_PRECISION"  # what `accelerate launch` passes its processes


def make_accelerator(cfg: Train, log_with: str | None = None) -> Accelerator:
    """The Accelerator of a run: gradient accumulation from ``train.grad_accum_steps``, a seedable sampler, and
    mixed precision (:func:`run_precision`): the network's forward under autocast, with fp16's loss scaling."""
    # Without the teacher loss, block_tea gets no gradient: DDP must be told to expect unused parameters.
    unused = DistributedDataParallelKwargs(find_unused_parameters=not needs_teacher(cfg.loss))
    precision = run_precision(cfg)
    try:
        accelerator = Accelerator(
            gradient_accumulation_plugin=GradientAccumulationPlugin(
                num_steps=cfg.grad_accum_steps, sync_with_dataloader=False),
            dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True),
            kwargs_handlers=[unused],
            log_with=log_with,
            mixed_precision=precision,
        )
    except ValueError as err:  # e.g. "bf16 mixed precision requires a supported device."
        if "mixed precision" not in str(err):
            raise
        raise UserError(f"train.mixed_precision = {precision}: {str(err).rstrip('.')}; use no") from None
    if precision == "fp16" and accelerator.device.type == "cpu":
        # Accelerate neither autocasts nor scales the loss on a CPU: the run would train in float32 unannounced
        raise UserError("train.mixed_precision = fp16 runs on a GPU only (on a CPU, Accelerate would train in "
                        "float32); use bf16 or no")
    if precision == "bf16" and accelerator.device.type == "cpu" and cfg.cpu_isa == "avx2":
        log.warning("train.mixed_precision = bf16 on a CPU capped at AVX2 (train.cpu_isa = avx2), which has no "
                    "bf16 instructions: its convolutions run many times slower than float32; set train.cpu_isa: "
                    "native on a CPU with AVX-512 BF16 or AMX, or use no")
    return accelerator


def run_precision(cfg: Train) -> str:
    """``train.mixed_precision``, unless ``accelerate launch`` started this process with another: its own
    ``--mixed_precision`` flag (or ``accelerate config``, for ``accelerate launch -m pipeline.train``) wins."""
    precision = os.environ.get(LAUNCHER_PRECISION, cfg.mixed_precision)
    if precision != cfg.mixed_precision:
        log.warning("mixed precision %s, from the launcher's --mixed_precision or accelerate config; "
                    "train.mixed_precision = %s is not used", precision, cfg.mixed_precision)
    return precision


USER_THREADS = "PIPELINE_USER_OMP_NUM_THREADS"  # the user's OMP_NUM_THREADS, passed past the launcher


def use_threads(accelerator: Accelerator, threads: int) -> int:
    """Set the intra-op CPU threads of this training process to ``train.threads``; the number set.

    The thread count decides how torch splits its sums over threads, so it is part of the result: the same params
    give the same weights whatever the machine's core count (on a machine with the same instruction set). With
    ``threads: 0`` the process takes every core it may use (``accelerate launch`` gives a lone CPU process one
    thread; several processes already share the cores out and are left alone), or the OMP_NUM_THREADS the user
    set before ``python -m pipeline.train``: faster on a large machine, but the weights then depend on it.
    """
    if threads > 0:
        torch.set_num_threads(threads)
        return threads
    if accelerator.device.type != "cpu" or accelerator.num_processes > 1:
        return torch.get_num_threads()
    wanted = os.environ.get(USER_THREADS, "")
    chosen = int(wanted) if wanted.isdigit() and int(wanted) > 0 else cpu_threads(0)
    torch.set_num_threads(chosen)
    return chosen


def make_loader(cfg: Train, seed: int, accelerator: Accelerator) -> DataLoader:
    """A shuffled loader over the views of ``data/augmented/plan.csv`` in batches of ``train.batch_size`` per
    process, in an order seeded by ``seed``, made by ``train.num_workers`` worker processes (kept for the run)."""
    views = TrainViews()
    check_timesteps(cfg.arch, views.timesteps, str(AUGMENTED_DIR / PLAN_FILE))
    per_step = cfg.batch_size * accelerator.num_processes
    batch_sampler = SizeGroupedBatches(views.sizes, cfg.batch_size, seed)
    if len(batch_sampler) < accelerator.num_processes:
        raise UserError(f"{AUGMENTED_DIR / PLAN_FILE} holds {len(views)} views, fewer than one batch of one crop "
                        f"size (train.batch_size {cfg.batch_size} x {accelerator.num_processes} processes)")
    for size in np.unique(views.sizes):
        count = int((views.sizes == size).sum())
        if count < per_step:
            log.warning("the %d views of %dx%d are fewer than one batch and are never trained on; raise "
                        "augment.views_per_triplet or lower train.batch_size", count, size, size)
    workers = cfg.num_workers
    return DataLoader(views, batch_sampler=batch_sampler, num_workers=workers, persistent_workers=workers > 0,
                      worker_init_fn=quiet_worker if workers else None,
                      multiprocessing_context=WORKER_START if workers else None)


def batches(accelerator: Accelerator, loader: DataLoader, start: int) -> Iterator:
    """Endless micro-batches, epoch after epoch, starting at micro-batch ``start`` (for resume)."""
    epoch, skip = divmod(start, len(loader))
    while True:
        loader.set_epoch(epoch)
        try:
            yield from (accelerator.skip_first_batches(loader, skip) if skip else loader)
        except UserError as err:  # from a loader worker, torch puts the worker's traceback in the message
            raise UserError(str(err).strip().splitlines()[-1].removeprefix(f"{UserError.__module__}.UserError: ")) \
                from None
        epoch, skip = epoch + 1, 0


def train_step(model, optimizer, batch_iter, cfg: Train, accelerator: Accelerator, frozen: set[str],
               pull: PullToPretrained | None = None) -> dict[str, float]:
    """One optimizer step over ``grad_accum_steps`` micro-batches, leaving ``frozen`` groups untouched (and
    pulling the others towards the pretrained weights with ``pull``); returns the mean loss terms
    (``{"total": nan}`` as soon as a loss is not finite on any process)."""
    sums: dict[str, float] = {}
    teach = needs_teacher(cfg.loss)
    for _ in range(cfg.grad_accum_steps):
        *frames, timestep = next(batch_iter)
        # channels_last: 13% faster training steps on this CPU (tests/benchmarks/bench_train.py)
        img0, gt, img1 = (f.contiguous(memory_format=torch.channels_last) for f in frames)
        with accelerator.accumulate(model):
            terms = rife_loss(model(img0, img1, gt if teach else None, timestep=timestep), gt, cfg.loss)
            finite = accelerator.gather(torch.isfinite(terms["total"].detach()).reshape(1)).all()
            if not finite:
                return {"total": math.nan}
            accelerator.backward(terms["total"])  # fp16: the loss scaled, so small gradients stay above zero
            if accelerator.sync_gradients:
                drop_frozen_gradients(optimizer, frozen)
                if cfg.grad_clip > 0:  # fp16: unscales the gradients first, so the norm is the true one
                    accelerator.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            optimizer.step()  # fp16: skipped where a gradient overflowed, and the loss scale lowered
            if pull is not None and accelerator.sync_gradients and not accelerator.optimizer_step_was_skipped:
                pull.step(frozen)
            optimizer.zero_grad()
        for name, value in terms.items():
            sums[name] = sums.get(name, 0.0) + value.item() / cfg.grad_accum_steps
    return sums
