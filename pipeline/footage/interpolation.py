"""Interpolating a video frame by frame: every input frame is written, then the frames a model predicts between
it and the next (the nearer frame repeated across a scene cut), to a video writer or a folder of PNGs."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Protocol

import av
import numpy as np
import torch
from tqdm import tqdm

from pipeline.core.atomic import atomic_path
from pipeline.core.errors import UserError
from pipeline.footage.encoder import Codec, VideoWriter, output_colour
from pipeline.footage.video import (
    Frame,
    VideoInfo,
    change_score,
    decode,
    nearer_frames,
    open_video,
    thumbnail,
)
from pipeline.models import from_batch, to_batch


class Interpolator(Protocol):
    arch: str
    supports_timestep: bool

    def in_between(self, img0: torch.Tensor, img1: torch.Tensor, count: int,
                   scale: float = 1.0) -> list[torch.Tensor]: ...


class Sink(Protocol):
    count: int

    def write(self, rgb: np.ndarray, pts: int) -> None: ...


def check_frames(source: Path, count: int) -> None:
    """Interpolation needs two frames: one line for a video of fewer (as the container states, or as decoded)."""
    if count < 2:
        raise UserError(f"{source}: has {count} frame{'' if count == 1 else 's'}; interpolation needs at least "
                        "two frames")


def to_rgb(frame: torch.Tensor) -> np.ndarray:
    return np.clip(from_batch(frame)[0] * 255.0 + 0.5, 0, 255).astype(np.uint8)


def in_between_times(pts0: int, pts1: int, multi: int) -> list[int]:
    """Output timestamps (in the input time base divided by ``multi``) of the frames between two inputs."""
    return [pts0 * multi + k * (pts1 - pts0) for k in range(1, multi)]


def interpolate_video(model: Interpolator, source: Path, sink: Sink, multi: int, scale: float, threshold: float,
                      device: torch.device, total: int, passthrough=None) -> int:
    """Write every input frame and the frames between; returns the number of scene cuts met."""
    previous: Frame | None = None
    previous_batch = previous_thumb = None
    cuts = decoded = 0
    for frame in tqdm(decode(source, "rgb24", passthrough), total=total, desc="interpolate", unit="frame"):
        decoded += 1
        thumb, batch = thumbnail(frame.image), to_batch(frame.image[None], device)
        if previous is not None:
            if frame.image.shape != previous.image.shape:
                raise UserError(f"{source}: the frame size changes inside the video")
            sink.write(previous.image, previous.pts * multi)
            times = in_between_times(previous.pts, frame.pts, multi)
            if change_score(previous_thumb, thumb) > threshold:
                cuts += 1
                middles = nearer_frames(previous.image, frame.image, multi)
            else:
                middles = [to_rgb(t) for t in model.in_between(previous_batch, batch, multi - 1, scale)]
            for image, pts in zip(middles, times, strict=True):
                sink.write(image, pts)
        previous, previous_batch, previous_thumb = frame, batch, thumb
    check_frames(source, decoded)  # a container that stated more frames than it holds
    sink.write(previous.image, previous.pts * multi)
    return cuts


def audio_streams(path: Path) -> tuple[av.container.InputContainer, tuple]:
    container = open_video(path)
    return container, tuple(container.streams.audio)


def write_video(args: argparse.Namespace, codec: Codec, model: Interpolator, info: VideoInfo, threshold: float,
                device: torch.device) -> tuple[int, int]:
    rate = info.rate * args.multi
    with atomic_path(args.output, keep_suffix=True) as tmp:
        templates, audio = audio_streams(args.input)
        try:
            writer = VideoWriter(tmp, codec, args.crf, (info.height, info.width), rate,
                                 info.time_base / args.multi, audio, output_colour(info.colour))
        finally:
            templates.close()
        try:
            cuts = interpolate_video(model, args.input, writer, args.multi, args.scale, threshold, device,
                                     info.frames, writer.copy if audio else None)
        except BaseException:
            writer.abort()
            raise
        writer.close()
    return writer.count, cuts
