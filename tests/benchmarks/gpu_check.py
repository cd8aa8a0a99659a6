"""The checks that need an NVIDIA GPU (run on demand on a CUDA machine; not part of the test suite):

    python -m tests.benchmarks.gpu_check [--crop 224] [--batch 4] [--steps 5]

1. Training: the train stage's own optimizer step (``train_step`` under ``make_accelerator``'s Accelerator) in
   float32, bf16 and fp16, each after one warm-up step: seconds per step and steps/s, and that the loss stays
   finite. float32 and bf16 are timed twice, with ``torch.backends.cudnn.benchmark`` off (what the pipeline
   leaves it at) and on.
2. Interpolation of one 3840x2160 frame pair, as ``evaluate`` and ``interpolate`` run the network
   (``model_predictor``: autocast around the call, float32 out) at flow scale 0.5 (``evaluate.scale: auto``
   for 4K) in float32, bf16 and fp16: seconds, ``torch.cuda.max_memory_allocated`` and the largest difference
   from the float32 frame, in 8-bit levels.

``cudnn.benchmark``: with it on, cuDNN times its convolution algorithms for every new input shape and keeps the
fastest. The pipeline leaves it off: a run mixes crop sizes (footage smaller than ``augment.crop`` is cropped
smaller), validation and evaluation see full frames of every size, and each new shape would be timed again;
the chosen algorithms can also vary from run to run. Step 1's two timings tell whether turning it on would pay.

Weights: ``models/pretrained/flownet.pkl`` if present, else seeded HDv3 weights (the speed and memory do not
depend on the values). Without CUDA it stops with one line.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np
import torch

from pipeline.core.params import PRECISIONS
from pipeline.scoring.batches import model_predictor
from tests.benchmarks.bench_precision import bench_config, seconds_per_step, starting_weights

HEIGHT, WIDTH = 2160, 3840
FOUR_K_SCALE = 0.5  # evaluate.scale: auto for frames above 1080p (RIFE's advice for 4K)


def four_k_frames(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Two 3840x2160 uint8 RGB frames of a blocky random texture moved 8 pixels to the right."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, (HEIGHT // 16 + 1, WIDTH // 16 + 2, 3), dtype=np.uint8)
    texture = np.repeat(np.repeat(coarse, 16, axis=0), 16, axis=1)[:HEIGHT]
    return texture[None, :, 8:WIDTH + 8].copy(), texture[None, :, :WIDTH].copy()


def interpolation(precision: str, model: torch.nn.Module, frames: tuple[np.ndarray, np.ndarray],
                  device: torch.device) -> tuple[float, int, np.ndarray]:
    """Seconds (the second of two calls), peak GPU memory in bytes and the predicted frame at ``precision``."""
    predict = model_predictor(model, device, FOUR_K_SCALE, precision)
    predict(*frames, 0.5)  # warm-up: kernels chosen, memory pools filled
    torch.cuda.synchronize(device)
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats(device)
    began = time.perf_counter()
    frame = predict(*frames, 0.5)
    torch.cuda.synchronize(device)
    return time.perf_counter() - began, torch.cuda.max_memory_allocated(device), frame


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--crop", type=int, default=224)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--steps", type=int, default=5)
    args = parser.parse_args()
    if not torch.cuda.is_available():
        sys.exit("gpu_check: no CUDA device (torch.cuda.is_available() is False); run it on a machine with an "
                 "NVIDIA GPU and a CUDA build of torch")
    device = torch.device("cuda")
    print(f"{torch.cuda.get_device_name(device)}, torch {torch.__version__}, CUDA {torch.version.cuda}, "
          f"bf16 supported: {torch.cuda.is_bf16_supported()}")
    print(f"1. training: crop {args.crop}, batch {args.batch}, {args.steps} steps after 1 warm-up")
    cfg = bench_config(args.batch, 0)
    for precision in PRECISIONS:
        for benchmark in (False, True) if precision != "fp16" else (False,):
            seconds, finite = seconds_per_step(cfg, precision, args.crop, args.steps, cudnn_benchmark=benchmark)
            print(f"   {precision:4s} cudnn.benchmark {'on ' if benchmark else 'off'}: {seconds:.4f} s/step, "
                  f"{1 / seconds:.2f} steps/s, loss finite: {finite}")
    torch.backends.cudnn.benchmark = False
    print(f"2. interpolation of one {WIDTH}x{HEIGHT} pair at flow scale {FOUR_K_SCALE}")
    model = starting_weights().for_inference(device)
    frames = four_k_frames()
    reference = None
    for precision in PRECISIONS:
        seconds, peak, frame = interpolation(precision, model, frames, device)
        reference = frame if reference is None else reference
        levels = float(np.abs(frame - reference).max()) * 255
        print(f"   {precision:4s}: {seconds:.3f} s, max_memory_allocated {peak / 2**30:.2f} GiB, "
              f"output {frame.dtype}, largest difference from float32 {levels:.2f} levels of 255")


if __name__ == "__main__":
    main()
