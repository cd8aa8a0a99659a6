"""Training views: a seeded crop of a triplet with its transforms, drawn by ``augment`` into a plan (one row per
view, no pixels) and applied by the training loader to the frames ``extract`` stored.

A view is a row of ``data/augmented/plan.csv``: the triplet (its three frame files under ``data/triplets/``
and their size), the crop side and box, the downscale factor applied before the crop, channel reversal,
vertical and horizontal flips, temporal reversal (I0 and I1 swap, t becomes 1 - t), a rotation by 90/180/270
degrees, and the brightness and contrast factors of the photometric jitter, in the order they are applied.
Each transform is applied identically to the three frames. :func:`draw_view` draws a row; :func:`read_view`
decodes the frames and applies it. The same plan gives the same pixels, bit for bit.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import cv2
import numpy as np

from pipeline.core.params import Augment
from pipeline.footage.video import read_bgr

# Columns of the plan that describe a view (the plan also names the triplet, its clip and its frame files)
VIEW_COLUMNS = ["crop", "scale", "top", "left", "channel_reverse", "vflip", "hflip", "reversed", "rotation",
                "brightness", "contrast", "timestep"]
FRAME_COLUMNS = ["path0", "path_t", "path1"]


def crop_for(height: int, width: int, limit: int) -> int:
    """The crop side for frames of ``height`` x ``width``: ``limit``, or the largest multiple of 32 that fits."""
    return min(limit, min(height, width) // 32 * 32)


def scaled_size(height: int, width: int, factor: float, crop: int) -> tuple[int, int]:
    """(height, width) of frames shrunk by ``factor``, never below ``crop`` on a side."""
    return max(crop, round(height * factor)), max(crop, round(width * factor))


def downscale(frames: np.ndarray, factor: float, crop: int) -> np.ndarray:
    """Frames (3, H, W, C) shrunk by ``factor`` (area interpolation), never below ``crop`` on a side."""
    height, width = frames.shape[1:3]
    size = scaled_size(height, width, factor, crop)
    if size == (height, width):
        return frames
    return np.stack([cv2.resize(np.ascontiguousarray(f), size[::-1], interpolation=cv2.INTER_AREA) for f in frames])


def hflip(frames: np.ndarray) -> np.ndarray:
    return frames[:, :, ::-1]


def vflip(frames: np.ndarray) -> np.ndarray:
    return frames[:, ::-1]


def channel_reverse(frames: np.ndarray) -> np.ndarray:
    return frames[..., ::-1]


def rotate(frames: np.ndarray, quarter_turns: int) -> np.ndarray:
    """Rotate every frame counter-clockwise by ``quarter_turns`` x 90 degrees."""
    return np.rot90(frames, quarter_turns, axes=(1, 2))


def temporal_reverse(frames: np.ndarray, timestep: float) -> tuple[np.ndarray, float]:
    """Swap I0 and I1; the target then sits at 1 - t."""
    return frames[::-1], 1.0 - timestep


def jitter(frames: np.ndarray, brightness: float, contrast: float) -> np.ndarray:
    """Scale contrast about the triplet's mean, then brightness, with the same factors for all frames."""
    values = np.ascontiguousarray(frames, dtype=np.float32)  # the mean does not depend on the memory layout
    mean = np.float32(values.mean(dtype=np.float64))
    values = ((values - mean) * contrast + mean) * brightness
    return np.clip(np.rint(values), 0, 255).astype(np.uint8)


def draw_view(height: int, width: int, timestep: float, cfg: Augment, rng: np.random.Generator,
              size: int) -> dict:
    """One view of side ``size`` of a triplet of ``height`` x ``width`` frames whose target sits at ``timestep``.

    Every random number is drawn whether or not its transform fires, so a probability change in params does
    not move the other views (nor the other draws of this one).
    """
    shrink, factor = rng.random(), rng.uniform(cfg.downscale_min, 1.0)
    scale = 1.0
    if shrink < cfg.downscale:
        scale = max(float(factor), size / min(height, width))
    frame_height, frame_width = scaled_size(height, width, scale, size)
    top = int(rng.integers(0, frame_height - size + 1))
    left = int(rng.integers(0, frame_width - size + 1))
    draws = rng.random(6)
    turns = int(rng.integers(1, 4))
    factors = rng.uniform(1.0 - cfg.jitter_strength, 1.0 + cfg.jitter_strength, size=2)
    reversed_ = bool(draws[3] < cfg.temporal_reverse)
    brightness, contrast = (round(float(f), 4) for f in factors) if draws[5] < cfg.jitter else (1.0, 1.0)
    return {"crop": size, "scale": scale, "top": top, "left": left,
            "channel_reverse": bool(draws[0] < cfg.channel_reverse), "vflip": bool(draws[1] < cfg.vflip),
            "hflip": bool(draws[2] < cfg.hflip), "reversed": reversed_,
            "rotation": 90 * turns if draws[4] < cfg.rotate else 0,
            "brightness": brightness, "contrast": contrast, "timestep": 1.0 - timestep if reversed_ else timestep}


def apply_view(frames: np.ndarray, view: Mapping) -> np.ndarray:
    """The (3, crop, crop, C) uint8 sample that ``view`` makes of ``frames`` (I0, It, I1 stacked as (3, H, W, C))."""
    size = int(view["crop"])
    if view["scale"] != 1.0:
        frames = downscale(frames, float(view["scale"]), size)
    top, left = int(view["top"]), int(view["left"])
    sample = frames[:, top:top + size, left:left + size]
    if view["channel_reverse"]:
        sample = channel_reverse(sample)
    if view["vflip"]:
        sample = vflip(sample)
    if view["hflip"]:
        sample = hflip(sample)
    if view["reversed"]:
        sample = sample[::-1]  # the target time the plan records is already 1 - t
    if view["rotation"]:
        sample = rotate(sample, int(view["rotation"]) // 90)
    if (view["brightness"], view["contrast"]) != (1.0, 1.0):
        sample = jitter(sample, float(view["brightness"]), float(view["contrast"]))
    return np.ascontiguousarray(sample)


def read_view(view: Mapping, root: Path) -> np.ndarray:
    """Decode the triplet of ``view`` (a plan row) from ``root`` and apply the view: (3, crop, crop, 3) uint8 RGB.

    Frames are decoded in OpenCV's BGR order and turned to RGB by reversing the channels of the crop only (the
    same values as converting the whole frame first: area shrinking treats every channel alike)."""
    frames = np.stack([read_bgr(root / view[column]) for column in FRAME_COLUMNS])
    return apply_view(frames, {**view, "channel_reverse": not view["channel_reverse"]})
