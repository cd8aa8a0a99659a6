"""Mixed precision at inference (run on demand, alone on the machine; not part of the test suite):

    python -m tests.benchmarks.bench_inference_precision PROJECT CLIP [CLIP ...] [--triplets 12] [--threads 2]

For each clip, ``--triplets`` evenly spread triplets of consecutive frames (I0, I1 = frames k and k + 2, the truth
frame k + 1) are interpolated by PROJECT's ``models/pretrained/flownet.pkl`` through evaluate's own predictor
(``pipeline.scoring.batches.model_predictor``, one triplet per call, model scale 1.0), in float32 and under bf16
autocast, one after the other in this process, with the CPU's native kernels (bf16 needs AVX-512 BF16 or AMX).
Prints per clip the median seconds per frame of each precision and their ratio (float32 / bf16, above 1: bf16
is faster), and the mean PSNR of each against the truth (predictions rounded to 8 bits, as evaluate scores
them) with the mean and largest per-frame difference. ``evaluate.mixed_precision`` counts as official only where
that difference is below 0.01 dB.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from pipeline.core.paths import PRETRAINED
from pipeline.core.system import pin_cpu_isa
from pipeline.footage.video import decode
from pipeline.models import AUTO, load_checkpoint
from pipeline.scoring.batches import model_predictor
from pipeline.scoring.metrics import prediction_to_255, psnr

PRECISIONS = ("no", "bf16")


def triplets(clip: Path, count: int) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    frames = [frame.image for frame in decode(clip)]
    starts = np.linspace(0, len(frames) - 3, count).round().astype(int)
    return [(frames[k], frames[k + 1], frames[k + 2]) for k in starts]


def bench_clip(clip: Path, model: torch.nn.Module, count: int) -> None:
    device = torch.device("cpu")
    chosen = triplets(clip, count)
    seconds: dict[str, list[float]] = {}
    scores: dict[str, list[float]] = {}
    for precision in PRECISIONS:
        predict = model_predictor(model, device, 1.0, precision)
        predict(chosen[0][0][None], chosen[0][2][None], 0.5)  # warm-up: kernels chosen, memory allocated
        for img0, truth, img1 in chosen:
            start = time.perf_counter()
            pred = predict(img0[None], img1[None], 0.5)[0]
            seconds.setdefault(precision, []).append(time.perf_counter() - start)
            scores.setdefault(precision, []).append(psnr(prediction_to_255(pred), truth))
    diff = np.asarray(scores["bf16"]) - np.asarray(scores["no"])
    height, width = chosen[0][0].shape[:2]
    fp32, bf16 = statistics.median(seconds["no"]), statistics.median(seconds["bf16"])
    print(f"\n{clip.name}: {len(chosen)} triplets {width}x{height}")
    print(f"  seconds per frame: float32 {fp32:.3f}, bf16 {bf16:.3f}, ratio {fp32 / bf16:.2f}")
    print(f"  PSNR: float32 {np.mean(scores['no']):.4f} dB, bf16 {np.mean(scores['bf16']):.4f} dB; "
          f"bf16 - float32 mean {diff.mean():+.4f} dB, largest |difference| {np.abs(diff).max():.4f} dB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("project", type=Path, help="project folder with models/pretrained/flownet.pkl")
    parser.add_argument("clips", type=Path, nargs="+", help="videos to take the triplets from")
    parser.add_argument("--triplets", type=int, default=12, help="triplets per clip (default 12)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    args = parser.parse_args()
    pin_cpu_isa("native")
    torch.set_num_threads(args.threads)
    model = load_checkpoint(args.project / PRETRAINED, AUTO).for_inference(torch.device("cpu"))
    for clip in args.clips:
        bench_clip(clip, model, args.triplets)


if __name__ == "__main__":
    main()
