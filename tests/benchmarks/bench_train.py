"""Benchmark of the train stage (run on demand, not part of the test suite):

    python -m tests.benchmarks.bench_train [--steps 30]

Needs the outputs of `dvc repro augment` and the pretrained checkpoint (``data/triplets``, ``data/augmented``,
``models/pretrained``). The data wait of the plan loader against its step time, and against crops stored as
pixels, has its own benchmark: ``bench_loader``. Prints, all measured in the same run on the same model,
batch and crop size:

1. samples/s of ``python -m pipeline.train`` against a minimal plain-PyTorch loop (target: ratio >= 0.95);
2. the share of a training step spent waiting for data (target: under 5%);
3. peak memory of the stage with the real training set and with one several times larger (same steps);
4. achieved FLOP/s (forward + backward, counted by torch's FlopCounterMode) as a fraction of this machine's
   float32 matrix-multiply rate, for the plain loop as it is and with ``channels_last``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import torch
import yaml
from torch.utils.flop_counter import FlopCounterMode

from pipeline.core.params import load_params
from pipeline.core.paths import PLAN_FILE
from pipeline.models import load_checkpoint, with_resolved_arch
from pipeline.training.loop import TrainViews
from pipeline.training.losses import needs_teacher, rife_loss
from pipeline.training.optim import build_optimizer

ROOT = Path(__file__).resolve().parents[2]
WARMUP_STEPS = 3  # first steps (allocator, caches) left out of every rate


def matmul_rate(sizes: tuple[int, ...] = (1024, 2048, 4096), seconds: float = 2.0) -> float:
    """float32 FLOP/s of square matrix multiplies on this machine: the best of a few sizes."""
    best = 0.0
    for size in sizes:
        a, b = torch.randn(size, size), torch.randn(size, size)
        torch.mm(a, b)
        count, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            torch.mm(a, b)
            count += 1
        best = max(best, 2 * size**3 * count / (time.perf_counter() - start))
    return best


PEAK_RSS = """
import resource, subprocess, sys
done = subprocess.run(sys.argv[1:], capture_output=True, text=True)
if done.returncode:
    sys.exit(done.stderr[-3000:])
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
"""


def enlarged_plan(src: Path, dest: Path, copies: int) -> None:
    """``dest`` holds the training views of ``src`` repeated ``copies`` times (a bigger training set)."""
    dest.mkdir(parents=True)
    plan = pd.concat([pd.read_csv(src / PLAN_FILE)] * copies, ignore_index=True)
    plan["view"] = range(len(plan))
    plan.to_csv(dest / PLAN_FILE, index=False)


def run_stage(steps: int, copies: int = 1) -> tuple[float, float]:
    """Median samples/s the real stage logs and its peak RSS in MB, run in a scratch copy of the project
    whose training set is the real one repeated ``copies`` times."""
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for name in ("pipeline", "params.yaml"):
            (shutil.copytree if (ROOT / name).is_dir() else shutil.copy)(ROOT / name, work / name)
        (work / "data").mkdir()
        (work / "models").mkdir()
        os.symlink(ROOT / "data/triplets", work / "data/triplets")
        os.symlink(ROOT / "models/pretrained", work / "models/pretrained")
        if copies == 1:
            os.symlink(ROOT / "data/augmented", work / "data/augmented")
        else:
            enlarged_plan(ROOT / "data/augmented", work / "data/augmented", copies)
        params = yaml.safe_load((work / "params.yaml").read_text())
        params["train"].update(steps=steps, warmup_steps=0, val_every=10 * steps, checkpoint_every=10 * steps)
        (work / "params.yaml").write_text(yaml.safe_dump(params))
        done = subprocess.run([sys.executable, "-c", PEAK_RSS, sys.executable, "-m", "pipeline.train"], cwd=work,
                              capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(work)})
        if done.returncode:
            sys.exit(done.stderr[-3000:])
        rates = pd.read_csv(work / "results/train/plots/metrics/train/samples_per_s.tsv", sep="\t")
        return statistics.median(rates.iloc[WARMUP_STEPS:, -1]), int(done.stdout.strip()) / 1024


def plain_loop(steps: int, channels_last: bool) -> dict[str, float]:
    """The same model, optimizer, loss and batches in the plainest loop; rates and the data-wait share."""
    params = load_params(ROOT / "params.yaml")
    cfg = with_resolved_arch(params, ROOT / "models/pretrained/flownet.pkl").train
    torch.manual_seed(0)
    model = load_checkpoint(ROOT / "models/pretrained/flownet.pkl", cfg.arch).train()
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = build_optimizer(model, params.lr, cfg)
    samples = TrainViews(ROOT / "data/augmented" / PLAN_FILE, ROOT / "data/triplets")
    loader = torch.utils.data.DataLoader(samples, batch_size=cfg.batch_size, shuffle=True, drop_last=True)
    batches = iter(loader)
    teach = needs_teacher(cfg.loss)
    wait = work = 0.0
    flops = 0
    for step in range(steps):
        began = time.perf_counter()
        try:
            img0, gt, img1, timestep = next(batches)
        except StopIteration:
            batches = iter(loader)
            img0, gt, img1, timestep = next(batches)
        if channels_last:
            img0, gt, img1 = (t.contiguous(memory_format=torch.channels_last) for t in (img0, gt, img1))
        fetched = time.perf_counter()
        counter = FlopCounterMode(display=False) if step == 0 else None
        if counter:
            counter.__enter__()
        loss = rife_loss(model(img0, img1, gt if teach else None, timestep=timestep), gt, cfg.loss)["total"]
        loss.backward()
        if counter:
            counter.__exit__(None, None, None)
            flops = counter.get_total_flops()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        optimizer.step()
        optimizer.zero_grad()
        ended = time.perf_counter()
        if step >= WARMUP_STEPS:
            wait += fetched - began
            work += ended - began
    measured = steps - WARMUP_STEPS
    return {"samples_per_s": measured * cfg.batch_size / work, "data_wait_share": wait / work,
            "flops_per_step": flops, "seconds_per_step": work / measured}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--copies", type=int, default=8, help="size of the big training set, in copies of the real one")
    args = parser.parse_args()
    os.chdir(ROOT)
    peak = matmul_rate()
    stage, rss = run_stage(args.steps)
    _, rss_big = run_stage(args.steps, copies=args.copies)
    plain = plain_loop(args.steps, channels_last=False)
    last = plain_loop(args.steps, channels_last=True)
    print(f"threads: {torch.get_num_threads()}, float32 matmul: {peak / 1e9:.1f} GFLOP/s")
    for name, run in (("plain loop", plain), ("plain loop, channels_last", last)):
        print(f"train stage {stage:.2f} samples/s, {name} {run['samples_per_s']:.2f} samples/s: "
              f"ratio {stage / run['samples_per_s']:.3f} (target >= 0.95)")
    print(f"data wait: {100 * plain['data_wait_share']:.2f}% of a step (target < 5%)")
    print(f"peak RSS of the stage: {rss:.0f} MB with the real training set, {rss_big:.0f} MB with it "
          f"{args.copies}x larger: ratio {rss_big / rss:.3f} (target: no growth)")
    for name, run in (("plain", plain), ("channels_last", last)):
        achieved = run["flops_per_step"] / run["seconds_per_step"]
        print(f"{name}: {run['flops_per_step'] / 1e9:.1f} GFLOP per step, {run['seconds_per_step']:.3f} s per step, "
              f"{achieved / 1e9:.1f} GFLOP/s = {100 * achieved / peak:.1f}% of the matmul rate")


if __name__ == "__main__":
    main()
