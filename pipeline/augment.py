"""Stage ``augment``: a stored, seeded set of training crops.

Reads: ``data/triplets/`` (the kept train triplets); params ``base``, ``augment``. Writes:
``data/augmented/samples.npy`` (uint8, shape (N, 3, crop, crop, 3): I0, It, I1 in RGB, read by training
through a memory map, no image decoding), ``manifest.csv`` (the triplet, timestep and transforms of each
sample). The same params give a byte-identical output.

Transforms, in RIFE's order and each with its probability in params: crop, channel reversal, vertical
flip, horizontal flip, temporal reversal (I0 and I1 swap, t becomes 1 - t), rotation by 90/180/270
degrees, and photometric jitter. Each is applied identically to the three frames.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
from numpy.lib.format import open_memmap
from tqdm import tqdm

from pipeline.core.atomic import atomic_dir
from pipeline.core.errors import UserError, user_facing
from pipeline.core.params import Augment, load_params
from pipeline.core.paths import AUGMENTED_DIR, SAMPLES_FILE, TRIPLETS_DIR
from pipeline.footage.triplets import read_triplet, split_triplets

log = logging.getLogger("pipeline.augment")


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


def augment_triplet(frames: np.ndarray, timestep: float, cfg: Augment,
                    rng: np.random.Generator) -> tuple[np.ndarray, dict]:
    """One training sample from a (3, H, W, C) triplet, and a record of what was done to it.

    Every random number is drawn whether or not its transform fires, so a probability change in params
    does not shift the crops of other samples.
    """
    crop, top, left = random_crop(frames, cfg.crop, rng)
    draws = rng.random(6)
    turns = int(rng.integers(1, 4))
    factors = rng.uniform(1.0 - cfg.jitter_strength, 1.0 + cfg.jitter_strength, size=2)
    record = {"top": top, "left": left, "channel_reverse": bool(draws[0] < cfg.channel_reverse),
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


def train_triplets(crop: int) -> pd.DataFrame:
    train = split_triplets("train")
    too_small = train[(train.height < crop) | (train.width < crop)]
    if len(too_small):
        row = too_small.iloc[0]
        raise UserError(f"augment.crop = {crop} is larger than clip {row['clip']} "
                        f"({row['width']}x{row['height']}); lower augment.crop")
    return train


@user_facing
def main() -> None:
    params = load_params()
    cfg = params.augment
    triplets = train_triplets(cfg.crop)
    rng = np.random.default_rng(params.base.seed)
    count = len(triplets) * cfg.crops_per_triplet
    records = []
    with atomic_dir(AUGMENTED_DIR) as tmp:
        samples = open_memmap(tmp / SAMPLES_FILE, mode="w+", dtype=np.uint8, shape=(count, 3, cfg.crop, cfg.crop, 3))
        for _, row in tqdm(triplets.iterrows(), total=len(triplets), desc="augment", unit="triplet"):
            frames = np.stack(read_triplet(row, TRIPLETS_DIR))
            for _ in range(cfg.crops_per_triplet):
                samples[len(records)], record = augment_triplet(frames, float(row["timestep"]), cfg, rng)
                records.append({"sample": len(records), "triplet": int(row["triplet"]), "clip": row["clip"], **record})
        samples.flush()
        del samples
        pd.DataFrame(records).to_csv(tmp / "manifest.csv", index=False)
    log.info("wrote %d samples of %dx%d to %s", count, cfg.crop, cfg.crop, AUGMENTED_DIR)


if __name__ == "__main__":
    main()
