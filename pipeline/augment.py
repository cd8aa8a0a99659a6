"""Stage ``augment``: a stored, seeded set of training crops.

Reads: ``data/triplets/`` (the kept train triplets); params ``base``, ``augment``. Writes:
``data/augmented/samples_<crop>.npy``, one per crop size (uint8, shape (N, 3, crop, crop, 3): I0, It, I1 in
RGB, read by training through a memory map, no image decoding), ``manifest.csv`` (the triplet, crop size,
timestep and transforms of each sample, in the order of the arrays). The same params give a byte-identical
output.

``augment.crop`` is an upper bound: a clip smaller than it is cropped at the largest multiple of 32 that fits
(logged, and in the manifest's ``crop`` column); a frame under 64 pixels on a side is an error naming the clip.

Transforms, each with its probability in params: downscale (the whole frames shrink by a factor from
``[downscale_min, 1]``, never below the crop, so large motion is seen at a learnable size), then RIFE's: crop,
channel reversal, vertical flip, horizontal flip, temporal reversal (I0 and I1 swap, t becomes 1 - t),
rotation by 90/180/270 degrees, and photometric jitter. Each is applied identically to the three frames.
"""

from __future__ import annotations

import logging

import cv2
import numpy as np
import pandas as pd
from numpy.lib.format import open_memmap
from tqdm import tqdm

from pipeline.core.atomic import atomic_dir
from pipeline.core.errors import UserError, user_facing
from pipeline.core.params import Augment, load_params
from pipeline.core.paths import AUGMENTED_DIR, TRIPLETS_DIR, samples_file
from pipeline.footage.triplets import read_triplet, split_triplets

log = logging.getLogger("pipeline.augment")

MIN_SIDE = 64  # pixels: the smallest crop (two blocks of RIFE's coarsest 1/32 scale)


def crop_for(height: int, width: int, limit: int) -> int:
    """The crop side for frames of ``height`` x ``width``: ``limit``, or the largest multiple of 32 that fits."""
    return min(limit, min(height, width) // 32 * 32)


def downscale(frames: np.ndarray, factor: float, crop: int) -> np.ndarray:
    """Frames (3, H, W, C) shrunk by ``factor`` (area interpolation), never below ``crop`` on a side."""
    height, width = frames.shape[1:3]
    size = (max(crop, round(width * factor)), max(crop, round(height * factor)))
    if size == (width, height):
        return frames
    return np.stack([cv2.resize(np.ascontiguousarray(f), size, interpolation=cv2.INTER_AREA) for f in frames])


def random_crop(frames: np.ndarray, size: int, rng: np.random.Generator) -> tuple[np.ndarray, int, int]:
    """The same ``size`` x ``size`` window of each frame in ``frames`` (3, H, W, C)."""
    height, width = frames.shape[1:3]
    top = int(rng.integers(0, height - size + 1))
    left = int(rng.integers(0, width - size + 1))
    return frames[:, top:top + size, left:left + size], top, left


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
    values = frames.astype(np.float32)
    mean = values.mean()
    values = ((values - mean) * contrast + mean) * brightness
    return np.clip(np.rint(values), 0, 255).astype(np.uint8)


def augment_triplet(frames: np.ndarray, timestep: float, cfg: Augment, rng: np.random.Generator,
                    size: int | None = None) -> tuple[np.ndarray, dict]:
    """One training sample of side ``size`` (default ``augment.crop``) from a (3, H, W, C) triplet, and a
    record of what was done to it.

    Every random number is drawn whether or not its transform fires, so a probability change in params
    does not shift the crops of other samples.
    """
    size = size or cfg.crop
    shrink, factor = rng.random(), rng.uniform(cfg.downscale_min, 1.0)
    scale = 1.0
    if shrink < cfg.downscale:
        scale = max(float(factor), size / min(frames.shape[1:3]))
        frames = downscale(frames, scale, size)
    crop, top, left = random_crop(frames, size, rng)
    draws = rng.random(6)
    turns = int(rng.integers(1, 4))
    factors = rng.uniform(1.0 - cfg.jitter_strength, 1.0 + cfg.jitter_strength, size=2)
    record = {"crop": size, "scale": round(scale, 4), "top": top, "left": left, "channel_reverse": bool(draws[0] < cfg.channel_reverse),
              "vflip": bool(draws[1] < cfg.vflip), "hflip": bool(draws[2] < cfg.hflip),
              "reversed": bool(draws[3] < cfg.temporal_reverse),
              "rotation": 90 * turns if draws[4] < cfg.rotate else 0,
              "brightness": 1.0, "contrast": 1.0}
    if record["channel_reverse"]:
        crop = channel_reverse(crop)
    if record["vflip"]:
        crop = vflip(crop)
    if record["hflip"]:
        crop = hflip(crop)
    if record["reversed"]:
        crop, timestep = temporal_reverse(crop, timestep)
    if record["rotation"]:
        crop = rotate(crop, record["rotation"] // 90)
    if draws[5] < cfg.jitter:
        record["brightness"], record["contrast"] = (round(float(f), 4) for f in factors)
        crop = jitter(crop, record["brightness"], record["contrast"])
    record["timestep"] = timestep
    return np.ascontiguousarray(crop), record


def train_triplets() -> pd.DataFrame:
    """The kept train triplets; a frame under :data:`MIN_SIDE` pixels on a side stops the stage, naming the clip."""
    train = split_triplets("train")
    too_small = train[(train.height < MIN_SIDE) | (train.width < MIN_SIDE)]
    if len(too_small):
        row = too_small.iloc[0]
        raise UserError(f"clip {row['clip']} is {row['width']}x{row['height']}: augment needs frames of at least "
                        f"{MIN_SIDE}x{MIN_SIDE}; leave it out of sources.videos")
    return train


def crop_sizes(triplets: pd.DataFrame, limit: int) -> pd.Series:
    """The crop side of each triplet; logs each clip cropped smaller than ``limit``."""
    sizes = pd.Series([crop_for(h, w, limit) for h, w in zip(triplets.height, triplets.width)], index=triplets.index)
    for index in triplets.index[sizes < limit].intersection(triplets.drop_duplicates("clip").index):
        row = triplets.loc[index]
        log.info("%s is %dx%d: cropped at %dx%d (augment.crop = %d does not fit)", row["clip"], row["width"],
                 row["height"], sizes[index], sizes[index], limit)
    return sizes


@user_facing
def main() -> None:
    params = load_params()
    cfg = params.augment
    triplets = train_triplets()
    sizes = crop_sizes(triplets, cfg.crop)
    rng = np.random.default_rng(params.base.seed)
    counts = (sizes.value_counts() * cfg.crops_per_triplet).sort_index()
    records = []
    with atomic_dir(AUGMENTED_DIR) as tmp:
        arrays = {int(side): open_memmap(tmp / samples_file(int(side)), mode="w+", dtype=np.uint8,
                                         shape=(int(n), 3, int(side), int(side), 3)) for side, n in counts.items()}
        filled = dict.fromkeys(arrays, 0)
        for index, row in tqdm(triplets.iterrows(), total=len(triplets), desc="augment", unit="triplet"):
            frames = np.stack(read_triplet(row, TRIPLETS_DIR))
            side = int(sizes[index])
            for _ in range(cfg.crops_per_triplet):
                arrays[side][filled[side]], record = augment_triplet(frames, float(row["timestep"]), cfg, rng, side)
                filled[side] += 1
                records.append({"sample": len(records), "triplet": int(row["triplet"]), "clip": row["clip"], **record})
        for array in arrays.values():
            array.flush()
        del arrays
        pd.DataFrame(records).to_csv(tmp / "manifest.csv", index=False)
    log.info("wrote %d samples to %s (%s)", len(records), AUGMENTED_DIR,
             ", ".join(f"{n} of {s}x{s}" for s, n in counts.items()))


if __name__ == "__main__":
    main()
