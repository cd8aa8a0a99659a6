"""Benchmark of the exported ONNX graph on onnxruntime (CPU) against our PyTorch inference (run on demand):

    python -m tests.benchmarks.bench_onnx [--arch 4.18 hdv3] [--runs 3]

For each architecture (seeded weights; speed does not depend on their values): export the graph, then time,
alternating in one process on the same 1280x720 frames, ``FlowNet.interpolate`` as interpolate runs it
(``for_inference``: eval mode, ``channels_last``) and onnxruntime's CPU provider on the exported file (its
padding is inside the graph). Prints the median frames per second of each, their ratio and the largest
difference between the two outputs.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

from pipeline.models import create_model, expected_shapes
from pipeline.models.onnx_model import OnnxFlowNet, export_onnx, load_onnx
from tests.golden import seeded_state

HEIGHT, WIDTH = 720, 1280


def alternating(fns: dict, runs: int) -> dict[str, tuple[float, torch.Tensor]]:
    """Median seconds of ``runs`` calls of each function, taken in turn (so load on a shared machine falls on
    both alike), after one warm-up call each; with the last output of each."""
    outs = {name: fn() for name, fn in fns.items()}
    seconds: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(runs):
        for name, fn in fns.items():
            start = time.perf_counter()
            outs[name] = fn()
            seconds[name].append(time.perf_counter() - start)
    return {name: (statistics.median(seconds[name]), outs[name]) for name in fns}


def bench(arch: str, runs: int, folder: Path) -> None:
    model = create_model(arch)
    model.load_state_dict(seeded_state(expected_shapes(arch)))
    export_onnx(model.eval(), folder / f"{arch}.onnx")
    onnx_net = OnnxFlowNet(load_onnx(folder / f"{arch}.onnx"))
    torch_net = model.for_inference("cpu")
    gen = torch.Generator().manual_seed(0)
    base = torch.rand(1, 3, HEIGHT // 8, WIDTH // 8, generator=gen)
    img0 = torch.nn.functional.interpolate(base, size=(HEIGHT, WIDTH), mode="bilinear")
    img1 = torch.roll(img0, shifts=(3, 5), dims=(2, 3))
    def run_torch() -> torch.Tensor:
        with torch.inference_mode():
            return torch_net.interpolate(img0, img1, 0.5)

    found = alternating({"torch": run_torch, "onnx": lambda: onnx_net.interpolate(img0, img1, 0.5)}, runs)
    (t_torch, out_torch), (t_onnx, out_onnx) = found["torch"], found["onnx"]
    print(f"{arch:8s} PyTorch {1 / t_torch:6.2f} fps   onnxruntime {1 / t_onnx:6.2f} fps   "
          f"onnxruntime / PyTorch {t_torch / t_onnx:5.2f}   max |diff| {float((out_torch - out_onnx).abs().max()):.1e}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", nargs="+", default=["4.18", "hdv3"])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    print(f"{WIDTH}x{HEIGHT}, CPU, torch threads {torch.get_num_threads()}, median of {args.runs} runs")
    with tempfile.TemporaryDirectory() as tmp:
        for arch in args.arch:
            bench(arch, args.runs, Path(tmp))


if __name__ == "__main__":
    main()
