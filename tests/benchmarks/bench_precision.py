"""Benchmark of mixed precision in training (run on demand, alone on the machine; not part of the test suite):

    python -m tests.benchmarks.bench_precision [--crop 224] [--batch 4] [--steps 5] [--cpu-isa native]

Times the train stage's own optimizer step (``pipeline.training.loop.train_step`` under the Accelerator that
``make_accelerator`` builds from ``train.mixed_precision``) in float32 and in bf16, one after the other in this
process, on the same weights (``models/pretrained/flownet.pkl`` if present, else seeded HDv3 weights) and the same
synthetic batches of ``--crop`` x ``--crop`` views. Each precision gets one warm-up step, then ``--steps`` timed
steps; prints the median seconds per step of each and the ratio float32 / bf16 (above 1: bf16 is faster).

On a CPU, bf16 needs ``--cpu-isa native`` (the default here): the project's default ``train.cpu_isa: avx2`` caps
oneDNN at AVX2, which has no bf16 instructions. ``--cpu-isa avx2`` times that setting too. On a GPU the same
script runs as it is (``tests/benchmarks/gpu_check.py`` adds fp16 and 4K inference).
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import statistics
import time
from collections.abc import Iterator

import torch
from accelerate.state import AcceleratorState

from pipeline.core.params import Train, load_params
from pipeline.core.system import pin_cpu_isa
from pipeline.models import AUTO, create_model, expected_shapes, load_checkpoint, resolve_arch
from pipeline.training.loop import make_accelerator, train_step
from pipeline.training.optim import build_optimizer
from tests.golden import seeded_state
from tests.helpers import ROOT

PRETRAINED = ROOT / "models/pretrained/flownet.pkl"


def starting_arch() -> str:
    """The architecture of the project's pretrained network, or HDv3 where it has none."""
    return resolve_arch(AUTO, PRETRAINED) if PRETRAINED.is_file() else "hdv3"


def starting_weights() -> torch.nn.Module:
    """The project's pretrained network, or seeded HDv3 weights where it has none."""
    if PRETRAINED.is_file():
        return load_checkpoint(PRETRAINED, starting_arch())
    model = create_model("hdv3")
    model.load_state_dict(seeded_state(expected_shapes("hdv3")))
    return model


def synthetic_batches(batch: int, crop: int, device: torch.device, seed: int = 0) -> Iterator[tuple]:
    """Endless (I0, It, I1, t) batches of a texture moving two pixels a frame, on ``device``."""
    generator = torch.Generator().manual_seed(seed)
    texture = torch.nn.functional.avg_pool2d(torch.rand(batch, 3, crop, crop + 8, generator=generator), 5, 1, 2)
    frames = [texture[..., k * 2:k * 2 + crop].contiguous().to(device) for k in range(3)]
    timestep = torch.full((batch,), 0.5, device=device)
    while True:
        yield frames[0], frames[1], frames[2], timestep


def seconds_per_step(cfg: Train, precision: str, crop: int, steps: int, warmup: int = 1,
                     cudnn_benchmark: bool = False) -> tuple[float, bool]:
    """Median wall seconds of ``steps`` optimizer steps of the train stage at ``precision``, after ``warmup``;
    and whether every loss was finite."""
    AcceleratorState._reset_state(reset_partial_state=True)  # one precision per Accelerator state
    torch.backends.cudnn.benchmark = cudnn_benchmark
    cfg = dataclasses.replace(cfg, mixed_precision=precision)
    accelerator = make_accelerator(cfg)
    model = starting_weights().train().to(memory_format=torch.channels_last)
    model, optimizer = accelerator.prepare(model, build_optimizer(model, 1e-5, cfg))
    stream = synthetic_batches(cfg.batch_size, crop, accelerator.device)
    times, finite = [], True
    for step in range(warmup + steps):
        synchronize(accelerator.device)
        began = time.perf_counter()
        loss = train_step(model, optimizer, stream, cfg, accelerator, frozen=set())["total"]
        synchronize(accelerator.device)
        finite = finite and math.isfinite(loss)
        if step >= warmup:
            times.append(time.perf_counter() - began)
    return statistics.median(times), finite


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bench_config(batch: int, threads: int, cpu_isa: str) -> Train:
    """``train`` of the project's params.yaml with the benchmark's batch (one micro-batch per step), threads and
    CPU instruction set."""
    cfg = load_params(ROOT / "params.yaml", sections=()).train
    return dataclasses.replace(cfg, arch=starting_arch(), batch_size=batch, grad_accum_steps=1, threads=threads,
                               cpu_isa=cpu_isa)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--crop", type=int, default=224)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--threads", type=int, default=0, help="CPU threads (0: every core)")
    parser.add_argument("--cpu-isa", choices=("avx2", "native"), default="native")
    args = parser.parse_args()
    pin_cpu_isa(args.cpu_isa)  # before any tensor work
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = bench_config(args.batch, args.threads, args.cpu_isa)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    print(f"device {device}, {torch.get_num_threads()} threads, cpu_isa {args.cpu_isa}, crop {args.crop}, "
          f"batch {args.batch}, {args.steps} steps after 1 warm-up, weights "
          f"{'pretrained' if PRETRAINED.is_file() else 'seeded hdv3'}")
    fp32, finite = seconds_per_step(cfg, "no", args.crop, args.steps)
    print(f"float32: {fp32:.3f} s/step ({args.batch / fp32:.2f} samples/s), loss finite: {finite}")
    bf16, finite = seconds_per_step(cfg, "bf16", args.crop, args.steps)
    print(f"bf16:    {bf16:.3f} s/step ({args.batch / bf16:.2f} samples/s), loss finite: {finite}")
    print(f"ratio float32 / bf16 step time: {fp32 / bf16:.2f} (above 1: bf16 is faster)")


if __name__ == "__main__":
    main()
