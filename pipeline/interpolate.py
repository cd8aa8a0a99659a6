"""Apply a checkpoint to a video: ``python -m pipeline.interpolate INPUT OUTPUT --multi 2``.

Reads a video, puts ``multi - 1`` predicted frames between every pair of neighbours and writes a video at
``multi`` times the frame rate (or, for an OUTPUT without a suffix, a folder of numbered lossless PNGs).
The checkpoint defaults to the fine-tuned one; its architecture is recognised unless ``--arch`` names it.
The output is written under a temporary name and renamed when complete; the input is never overwritten.
Sound is not copied (OpenCV writes video only).
"""

from __future__ import annotations

import argparse
import logging
import math
from pathlib import Path

import cv2
import numpy as np
import torch
from tqdm import tqdm

from pipeline.core.atomic import atomic_dir, atomic_path
from pipeline.core.errors import UserError, user_facing
from pipeline.core.paths import FINETUNED
from pipeline.footage.video import check_file, iter_video_bgr, video_frame_count, write_bgr
from pipeline.models import ARCHITECTURES, AUTO, FlowNet, from_batch, load_checkpoint, to_batch

log = logging.getLogger("pipeline.interpolate")

# Codec per container: what OpenCV's bundled FFmpeg can encode without extra libraries.
FOURCC = {".mp4": "mp4v", ".m4v": "mp4v", ".mov": "mp4v", ".mkv": "mp4v", ".avi": "MJPG"}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m pipeline.interpolate", description=__doc__.splitlines()[0])
    parser.add_argument("input", type=Path, help="video to interpolate")
    parser.add_argument("output", type=Path, help=f"video to write ({', '.join(FOURCC)}), or a folder for PNGs")
    parser.add_argument("--checkpoint", type=Path, default=FINETUNED, help=f"flownet.pkl (default {FINETUNED})")
    parser.add_argument("--arch", default=AUTO, choices=[AUTO, *ARCHITECTURES], help="default: recognised")
    parser.add_argument("--multi", type=int, default=2, help="frame-rate multiplier, 2 or more (default 2)")
    parser.add_argument("--scale", type=float, default=1.0, choices=[0.25, 0.5, 1.0],
                        help="flow resolution; 0.5 is RIFE's advice for 4K (default 1.0)")
    parser.add_argument("--overwrite", action="store_true", help="replace OUTPUT if it exists")
    return parser.parse_args(argv)


def check_paths(args: argparse.Namespace) -> None:
    if not args.input.is_file():
        raise UserError(f"{args.input}: no such video file")
    check_file(args.input)
    if args.output.resolve() == args.input.resolve():
        raise UserError(f"{args.output}: is the input video; choose another output path")
    if args.output.exists() and not args.overwrite:
        raise UserError(f"{args.output}: exists; pass --overwrite to replace it")
    if not args.output.suffix and args.output.is_file():
        raise UserError(f"{args.output}: is a file; PNG frames go to a folder (or give a video suffix)")
    if args.output.suffix and args.output.suffix.lower() not in FOURCC:
        raise UserError(f"{args.output}: cannot write {args.output.suffix} videos; use one of "
                        f"{', '.join(FOURCC)} or a folder (no suffix) for PNG frames")
    if args.multi < 2:
        raise UserError(f"--multi {args.multi}: the frame rate multiplier must be 2 or more")


def load_model(args: argparse.Namespace, device: torch.device) -> FlowNet:
    model = load_checkpoint(args.checkpoint, args.arch).for_inference(device)
    if not model.supports_timestep and args.multi & (args.multi - 1):
        raise UserError(f"--multi {args.multi}: {args.checkpoint} is RIFE {model.arch}, which predicts middle "
                        "frames only; use a power of two (2, 4, 8)")
    log.info("%s: RIFE %s on %s, %dx frames, flow scale %g", args.checkpoint, model.arch, device.type,
             args.multi, args.scale)
    return model


def input_fps(path: Path) -> float:
    cap = cv2.VideoCapture(str(path))
    fps = cap.get(cv2.CAP_PROP_FPS)
    cap.release()
    if not fps or not math.isfinite(fps) or fps <= 0:
        raise UserError(f"{path}: the container does not state a frame rate")
    return fps


class FrameSink:
    """Where output frames go: a video file (opened on the first frame) or a folder of numbered PNGs."""

    def __init__(self, target: Path, fps: float, folder: bool) -> None:
        self.target, self.fps, self.folder, self.count, self.writer = target, fps, folder, 0, None

    def write(self, bgr: np.ndarray) -> None:
        if not self.folder:
            if self.writer is None:
                fourcc = cv2.VideoWriter_fourcc(*FOURCC[self.target.suffix.lower()])
                self.writer = cv2.VideoWriter(str(self.target), fourcc, self.fps, (bgr.shape[1], bgr.shape[0]))
                if not self.writer.isOpened():
                    raise UserError(f"{self.target}: OpenCV could not open a {self.target.suffix} writer")
            self.writer.write(bgr)
        else:
            write_bgr(self.target / f"{self.count:06d}.png", bgr)
        self.count += 1

    def close(self) -> None:
        if self.writer is not None:
            self.writer.release()


def to_bgr(frame: torch.Tensor) -> np.ndarray:
    rgb = np.clip(from_batch(frame)[0] * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return np.ascontiguousarray(rgb[:, :, ::-1])


def interpolate_video(model: FlowNet, source: Path, sink: FrameSink, multi: int, scale: float,
                      device: torch.device) -> None:
    previous_bgr, previous = None, None
    total = video_frame_count(source)
    for bgr in tqdm(iter_video_bgr(source), total=total, desc="interpolate", unit="frame"):
        current = to_batch(np.ascontiguousarray(bgr[None, :, :, ::-1]), device)
        if previous is not None:
            if current.shape != previous.shape:
                raise UserError(f"{source}: the frame size changes inside the video")
            sink.write(previous_bgr)
            for frame in model.in_between(previous, current, multi - 1, scale):
                sink.write(to_bgr(frame))
        previous_bgr, previous = bgr, current
    sink.write(previous_bgr)


@user_facing
def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    check_paths(args)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model = load_model(args, device)
    fps = input_fps(args.input) * args.multi
    if args.output.suffix:
        with atomic_path(args.output, keep_suffix=True) as tmp:
            sink = FrameSink(tmp, fps, folder=False)
            try:
                interpolate_video(model, args.input, sink, args.multi, args.scale, device)
            finally:
                sink.close()
    else:
        with atomic_dir(args.output) as tmp:
            sink = FrameSink(tmp, fps, folder=True)
            interpolate_video(model, args.input, sink, args.multi, args.scale, device)
    log.info("wrote %s: %d frames at %.3f fps", args.output, sink.count, fps)


if __name__ == "__main__":
    main()
