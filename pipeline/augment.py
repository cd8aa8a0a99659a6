"""Stage ``augment``: a stored, seeded plan of training views.

Reads: ``data/triplets/manifest.csv`` (the kept train triplets; no frame is decoded here); params ``base``,
``augment``. Writes ``data/augmented/plan.csv``: one row per view, ``augment.views_per_triplet`` views per train
triplet, each naming its triplet (``triplet``, ``clip``, the frame files ``path0``, ``path_t``, ``path1`` and
their ``height`` and ``width``) and what the view is (see :mod:`pipeline.footage.views`): crop side and box
(``crop``, ``top``, ``left``), downscale factor (``scale``), ``channel_reverse``, ``vflip``, ``hflip``,
``reversed``, ``rotation``, ``brightness``, ``contrast`` and the target's ``timestep``. The training loader
decodes the triplet and applies the view, so the stage's output is about 200 bytes per view whatever the frame
size, and more views per triplet cost no disk. The same params give a byte-identical plan.

``augment.crop`` is an upper bound: a clip smaller than it is cropped at the largest multiple of 32 that fits
(logged, and in the plan's ``crop`` column); a frame under 64 pixels on a side is an error naming the clip.

Transforms, each with its probability in params: downscale (the whole frames shrink by a factor from
``[downscale_min, 1]``, never below the crop, so large motion is seen at a learnable size), then RIFE's: crop,
channel reversal, vertical flip, horizontal flip, temporal reversal, rotation by 90/180/270 degrees, and
photometric jitter.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
from tqdm import tqdm

from pipeline.core.atomic import atomic_dir
from pipeline.core.errors import UserError
from pipeline.core.params import Augment, load_params
from pipeline.core.paths import AUGMENTED_DIR, PLAN_FILE
from pipeline.core.runner import user_facing
from pipeline.footage.triplets import split_triplets
from pipeline.footage.views import FRAME_COLUMNS, MIN_CROP, crop_for, draw_view

log = logging.getLogger("pipeline.augment")

# the params this stage reads: its `params:` in dvc.yaml (their cross-field checks run here)
PARAMS = ("base", "augment")

MIN_SIDE = MIN_CROP  # pixels: a frame must hold the smallest crop


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
    sides = zip(triplets.height, triplets.width, strict=True)
    sizes = pd.Series([crop_for(h, w, limit) for h, w in sides], index=triplets.index)
    for index in triplets.index[sizes < limit].intersection(triplets.drop_duplicates("clip").index):
        row = triplets.loc[index]
        log.info("%s is %dx%d: cropped at %dx%d (augment.crop = %d does not fit)", row["clip"], row["width"],
                 row["height"], sizes[index], sizes[index], limit)
    return sizes


def plan_views(triplets: pd.DataFrame, cfg: Augment, seed: int) -> pd.DataFrame:
    """``cfg.views_per_triplet`` views of every triplet, drawn in triplet order from one generator seeded by
    ``seed``, so the same params give the same views."""
    sizes = crop_sizes(triplets, cfg.crop)
    rng = np.random.default_rng(seed)
    rows = []
    columns = ["triplet", "clip", *FRAME_COLUMNS, "height", "width", "timestep"]
    for (index, triplet, clip, *paths, height, width, timestep) in tqdm(
            triplets[columns].itertuples(), total=len(triplets), desc="augment", unit="triplet"):
        for _ in range(cfg.views_per_triplet):
            view = draw_view(int(height), int(width), float(timestep), cfg, rng, int(sizes[index]))
            files = dict(zip(FRAME_COLUMNS, paths, strict=True))
            rows.append({"view": len(rows), "triplet": int(triplet), "clip": clip, **files,
                         "height": int(height), "width": int(width), **view})
    return pd.DataFrame(rows)


@user_facing
def main() -> None:
    params = load_params(sections=PARAMS)
    plan = plan_views(train_triplets(), params.augment, params.base.seed)
    with atomic_dir(AUGMENTED_DIR) as tmp:
        plan.to_csv(tmp / PLAN_FILE, index=False)
    counts = plan.groupby("crop").size()
    log.info("wrote %d views of %d train triplets to %s (%s)", len(plan), plan.triplet.nunique(),
             AUGMENTED_DIR / PLAN_FILE, ", ".join(f"{n} of {s}x{s}" for s, n in counts.items()))


if __name__ == "__main__":
    main()
