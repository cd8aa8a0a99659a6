"""Stage ``augment``: a stored, seeded set of training crops.

Reads: ``data/triplets/`` (the kept train triplets); params ``base``, ``augment``. Writes:
``data/augmented/samples.npy`` (uint8, shape (N, 3, crop, crop, 3): I0, It, I1 in RGB, read by training
through a memory map, no image decoding), ``manifest.csv`` (which triplet and transforms each sample got).
The same params give a byte-identical output.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
from numpy.lib.format import open_memmap
from tqdm import tqdm

from pipeline.errors import UserError, user_facing
from pipeline.extract import KEPT
from pipeline.fsutil import atomic_dir
from pipeline.params import Augment, load_params
from pipeline.paths import AUGMENTED_DIR, SAMPLES_FILE, TRIPLETS_DIR
from pipeline.video import read_image

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


def temporal_reverse(frames: np.ndarray, timestep: float) -> tuple[np.ndarray, float]:
    """Swap I0 and I1; the target then sits at 1 - t."""
    return frames[::-1], 1.0 - timestep


def augment_triplet(frames: np.ndarray, timestep: float, cfg: Augment,
                    rng: np.random.Generator) -> tuple[np.ndarray, dict]:
    """One training sample from a (3, H, W, C) triplet, and a record of what was done to it."""
    crop, top, left = random_crop(frames, cfg.crop, rng)
    record = {"top": top, "left": left, "hflip": bool(rng.random() < cfg.hflip),
              "vflip": bool(rng.random() < cfg.vflip), "reversed": bool(rng.random() < cfg.temporal_reverse)}
    if record["hflip"]:
        crop = hflip(crop)
    if record["vflip"]:
        crop = vflip(crop)
    if record["reversed"]:
        crop, timestep = temporal_reverse(crop, timestep)
    record["timestep"] = timestep
    return np.ascontiguousarray(crop), record


def load_triplet(row: pd.Series, root: Path) -> np.ndarray:
    return np.stack([read_image(root / row[k]) for k in ("path0", "path_t", "path1")])


def train_triplets(root: Path, crop: int) -> pd.DataFrame:
    manifest = pd.read_csv(root / "manifest.csv")
    train = manifest[(manifest.status == KEPT) & (manifest.split == "train")]
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
    triplets = train_triplets(TRIPLETS_DIR, cfg.crop)
    rng = np.random.default_rng(params.base.seed)
    count = len(triplets) * cfg.crops_per_triplet
    records = []
    with atomic_dir(AUGMENTED_DIR) as tmp:
        samples = open_memmap(tmp / SAMPLES_FILE, mode="w+", dtype=np.uint8, shape=(count, 3, cfg.crop, cfg.crop, 3))
        for _, row in tqdm(triplets.iterrows(), total=len(triplets), desc="augment", unit="triplet"):
            frames = load_triplet(row, TRIPLETS_DIR)
            for _ in range(cfg.crops_per_triplet):
                samples[len(records)], record = augment_triplet(frames, float(row["timestep"]), cfg, rng)
                records.append({"sample": len(records), "triplet": int(row["triplet"]), "clip": row["clip"], **record})
        samples.flush()
        del samples
        pd.DataFrame(records).to_csv(tmp / "manifest.csv", index=False)
    log.info("wrote %d samples of %dx%d to %s", count, cfg.crop, cfg.crop, AUGMENTED_DIR)


if __name__ == "__main__":
    main()
