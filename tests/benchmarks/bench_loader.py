"""Benchmark of the training loader (run on demand, not part of the test suite):

    python -m tests.benchmarks.bench_loader [--steps 16] [--workers 0 1 2]

Needs ``data/triplets``, ``data/augmented/plan.csv`` and ``models/pretrained`` (``dvc repro augment``). Runs the
train stage's own optimizer step (``pipeline.training.loop.train_step``: same model, params, batch order and
channels_last layout) fed in turn by:

1. the same batches already in memory: the reference, a step that never waits for data (run first and last);
2. the stored crops of earlier versions: the plan's views written as pixels to a memory-mapped array, as
   ``augment`` used to store them, read as the old loader did (in the training process);
3. the plan loader, decoding each view's frames from ``data/triplets``, with each number of loader workers asked for.

Prints, for each: seconds per step, the time a step waited for its batch and its share of the step (target:
under 5%), and the step time against the reference; then the disk the plan takes per view against the stored
crops, and a check that both loaders gave the same batches.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import torch
from accelerate.utils import set_seed
from torch.utils.data import DataLoader, Dataset

from pipeline.core.params import Params, load_params
from pipeline.core.paths import AUGMENTED_DIR, PLAN_FILE, PRETRAINED
from pipeline.models import load_checkpoint, with_resolved_arch
from pipeline.training.loop import SizeGroupedBatches, TrainViews, batches, make_accelerator, make_loader, train_step
from pipeline.training.optim import build_optimizer

ROOT = Path(__file__).resolve().parents[2]
WARMUP_STEPS = 3  # first steps (allocator, worker start-up) left out of every figure


class Waiting:
    """An iterator of batches that adds up the time spent waiting for each."""

    def __init__(self, inner: Iterator) -> None:
        self.inner, self.seconds = inner, 0.0

    def __iter__(self) -> Waiting:
        return self

    def __next__(self):
        began = time.perf_counter()
        batch = next(self.inner)
        self.seconds += time.perf_counter() - began
        return batch


class StoredCrops(Dataset):
    """The old loader: every view's pixels stored in one array, read through a memory map."""

    def __init__(self, path: Path, timesteps: np.ndarray) -> None:
        self.array, self.timesteps = np.load(path, mmap_mode="r"), timesteps

    def __len__(self) -> int:
        return len(self.array)

    def __getitem__(self, index: int):
        frames = torch.from_numpy(np.array(self.array[index])).permute(0, 3, 1, 2).float().div_(255.0)
        return frames[0], frames[1], frames[2], torch.tensor(self.timesteps[index])


def store_crops(views: TrainViews, path: Path) -> None:
    """Write every view's pixels to ``path`` as earlier versions of ``augment`` did (one crop size only)."""
    sizes = np.unique(views.sizes)
    if len(sizes) > 1:
        raise SystemExit(f"the plan has crops of several sizes ({sizes.tolist()}); this benchmark compares one")
    side = int(sizes[0])
    out = np.lib.format.open_memmap(path, mode="w+", dtype=np.uint8, shape=(len(views), 3, side, side, 3))
    for i in range(len(views)):
        out[i] = views.sample(i)
    out.flush()


def run_steps(params: Params, feed: Callable[[], Iterator], steps: int) -> dict[str, float]:
    """``steps`` optimizer steps (after WARMUP_STEPS) of the train stage fed by ``feed()``: seconds per step and
    seconds of waiting for data per step."""
    cfg = params.train
    accelerator = make_accelerator(params.train)
    set_seed(params.base.seed)
    model = load_checkpoint(PRETRAINED, cfg.arch).train().to(memory_format=torch.channels_last)
    optimizer = build_optimizer(model, params.lr, cfg)
    model, optimizer = accelerator.prepare(model, optimizer)
    stream = Waiting(feed())
    times, waits = [], []
    for _ in range(WARMUP_STEPS + steps):
        began, waited = time.perf_counter(), stream.seconds
        train_step(model, optimizer, stream, params.train, accelerator, frozen=set())
        times.append(time.perf_counter() - began)
        waits.append(stream.seconds - waited)
    return {"step": statistics.mean(times[WARMUP_STEPS:]), "wait": statistics.mean(waits[WARMUP_STEPS:])}


def plan_feed(params: Params, workers: int) -> Callable[[], Iterator]:
    def feed() -> Iterator:
        with_workers = dataclasses.replace(params, train=dataclasses.replace(params.train, num_workers=workers))
        accelerator = make_accelerator(with_workers.train)
        loader = make_loader(with_workers.train, with_workers.base.seed, accelerator)
        return batches(accelerator, accelerator.prepare(loader), 0)
    return feed


def stored_feed(params: Params, crops: Path, views: TrainViews) -> Callable[[], Iterator]:
    def feed() -> Iterator:
        sampler = SizeGroupedBatches(views.sizes, params.train.batch_size, params.base.seed)
        accelerator = make_accelerator(params.train)
        return batches(accelerator, accelerator.prepare(DataLoader(StoredCrops(crops, views.timesteps),
                                                                   batch_sampler=sampler)), 0)
    return feed


def first_batches(feed: Callable[[], Iterator], count: int) -> list:
    stream = feed()
    return [next(stream) for _ in range(count)]


def report(name: str, run: dict[str, float], reference: float) -> None:
    print(f"{name:<34} {run['step']:6.3f} s/step  wait {1000 * run['wait']:7.1f} ms/step = "
          f"{100 * run['wait'] / run['step']:5.2f}% of a step (target < 5%)  step time x{run['step'] / reference:.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=16)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    args = parser.parse_args()
    os.chdir(ROOT)
    params = with_resolved_arch(load_params(), PRETRAINED)
    views = TrainViews()
    count = WARMUP_STEPS + args.steps
    print(f"{len(views)} views, batch {params.train.batch_size}, {torch.get_num_threads()} training thread(s), "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    in_memory = first_batches(plan_feed(params, 0), count)
    runs: dict[str, dict[str, float]] = {"batches in memory (reference)": run_steps(
        params, lambda: iter(in_memory), args.steps)}
    with tempfile.TemporaryDirectory(dir=ROOT / "data") as tmp:
        crops = Path(tmp) / "samples.npy"
        store_crops(views, crops)
        stored = first_batches(stored_feed(params, crops, views), count)
        same = all(all(torch.equal(a, b) for a, b in zip(x, y, strict=True))
                   for x, y in zip(stored, in_memory, strict=True))
        runs["stored crops (earlier versions)"] = run_steps(params, stored_feed(params, crops, views), args.steps)
        crop_bytes = crops.stat().st_size
    for workers in args.workers:
        runs[f"plan, {workers} loader worker(s)"] = run_steps(params, plan_feed(params, workers), args.steps)
    runs["batches in memory (again)"] = run_steps(params, lambda: iter(in_memory), args.steps)
    reference = min(runs["batches in memory (reference)"]["step"], runs["batches in memory (again)"]["step"])
    for name, run in runs.items():
        report(name, run, reference)
    plan_bytes = (AUGMENTED_DIR / PLAN_FILE).stat().st_size
    print(f"disk per view: plan {plan_bytes / len(views):.0f} bytes, stored crops {crop_bytes / len(views):.0f} bytes")
    print(f"the plan loader and the stored crops gave the same first {count} batches: {same}")


if __name__ == "__main__":
    main()
