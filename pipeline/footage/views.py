"""Training views: a seeded crop of a triplet with its transforms, drawn by ``augment`` into a plan (one row per
view, no pixels) and applied by the training loader to the frames ``extract`` stored.

A view is a row of ``data/augmented/plan.csv``: the triplet (its three frame files under ``data/triplets/``
and their size), the crop side and box, the downscale factor applied before the crop, channel reversal,
vertical and horizontal flips, temporal reversal (I0 and I1 swap, t becomes 1 - t), a rotation by 90/180/270
degrees, and the brightness and contrast factors of the photometric jitter, in the order they are applied.
Each transform is applied identically to the three frames. :func:`draw_view` draws a row; :func:`read_plan`
reads the plan back, checking every value; :func:`read_view` decodes the frames and applies a row. The same plan
gives the same pixels, bit for bit.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from pipeline.core.errors import UserError
from pipeline.core.params import Augment
from pipeline.footage.video import read_bgr

# Columns of the plan that describe a view (the plan also names the triplet, its clip and its frame files)
VIEW_COLUMNS = ["crop", "scale", "top", "left", "channel_reverse", "vflip", "hflip", "reversed", "rotation",
                "brightness", "contrast", "timestep"]
FRAME_COLUMNS = ["path0", "path_t", "path1"]
TRIPLET_COLUMNS = ["clip", *FRAME_COLUMNS, "height", "width"]  # copied from the triplet's row of the manifest
PLAN_COLUMNS = ["view", "triplet", *TRIPLET_COLUMNS, *VIEW_COLUMNS]
INTEGER_COLUMNS = ("view", "triplet", "height", "width", "crop", "top", "left", "rotation")
FLAG_COLUMNS = ("channel_reverse", "vflip", "hflip", "reversed")
FLAGS = {"True": True, "False": False, "true": True, "false": False, "1": True, "0": False}
NUMBER_COLUMNS = ("scale", "brightness", "contrast", "timestep")
INTEGER = r"[+-]?\d{1,18}"
NUMBER = r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?"  # no nan, no inf
MIN_CROP = 64  # pixels: the smallest crop (two blocks of RIFE's coarsest 1/32 scale)
CROP_MULTIPLE = 32  # RIFE's coarsest block works at 1/32 of the input
ROTATIONS = (0, 90, 180, 270)
JITTER_LIMITS = (0.5, 1.5)  # 1 -/+ the largest augment.jitter_strength (0.5)


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


@dataclass(frozen=True)
class PlanFile:
    """A plan being read: its path and its cells as written, for error lines that name a row and a column."""

    path: Path
    cells: pd.DataFrame
    manifest: str

    def check(self, bad: np.ndarray | pd.Series, column: str, expected: Callable[[int], str]) -> None:
        """Stop at the first row where ``bad`` holds, naming it, the column, the value and ``expected(row)``."""
        rows = np.flatnonzero(np.asarray(bad, dtype=bool))
        if len(rows):
            row = int(rows[0])
            value = str(self.cells[column].iloc[row]).strip() or "(empty)"
            value = value if value.isprintable() else repr(value)  # a line break stays inside the one line
            raise UserError(f"{self.path}, row {row + 1} (line {row + 2}), column {column} = {value}: expected "
                            f"{expected(row)}; run `dvc repro augment` to write the plan again")


def parse_column(plan: PlanFile, column: str) -> np.ndarray:
    """One column's cells as their type: integers, flags, numbers or non-empty text."""
    text = plan.cells[column].str.strip()
    if column in INTEGER_COLUMNS:
        plan.check(~text.str.fullmatch(INTEGER), column, lambda row: "an integer")
        return text.astype(np.int64).to_numpy()
    if column in FLAG_COLUMNS:
        flags = text.map(FLAGS)
        plan.check(flags.isna(), column, lambda row: "True or False (or 1 or 0)")
        return flags.astype(bool).to_numpy()
    if column in NUMBER_COLUMNS:
        plan.check(~text.str.fullmatch(NUMBER), column, lambda row: "a number")
        return text.astype(float).to_numpy()
    plan.check(text == "", column, lambda row: "a non-empty name")
    return plan.cells[column].to_numpy(object)


def check_triplets(plan: PlanFile, views: pd.DataFrame, train: pd.DataFrame) -> pd.DataFrame:
    """Every view names a train triplet of the manifest, with its clip, frame files and size; the manifest's rows."""
    plan.check(~views.triplet.isin(train.triplet), "triplet",
               lambda row: f"the id of one of the {len(train)} train triplets of {plan.manifest}")
    manifest = train.set_index("triplet").loc[views.triplet].reset_index(drop=True)
    for column in TRIPLET_COLUMNS:
        def expected(row: int, column: str = column) -> str:
            return f"{manifest[column].iloc[row]} (triplet {views.triplet.iloc[row]} in {plan.manifest})"
        plan.check(views[column].to_numpy() != manifest[column].to_numpy(), column, expected)
    return manifest


def check_crops(plan: PlanFile, views: pd.DataFrame) -> None:
    """The crop side fits the frame, the downscale factor is in (0, 1], and the crop box lies inside the frame."""
    height, width, crop, scale = (views[c].to_numpy() for c in ("height", "width", "crop", "scale"))
    largest = np.minimum(height, width) // CROP_MULTIPLE * CROP_MULTIPLE
    plan.check((crop < MIN_CROP) | (crop % CROP_MULTIPLE != 0) | (crop > largest), "crop",
               lambda row: f"a multiple of {CROP_MULTIPLE} from {MIN_CROP} to {largest[row]} (the frames are "
                           f"{width[row]}x{height[row]})")
    plan.check(~((scale > 0) & (scale <= 1)), "scale", lambda row: "a number above 0 and at most 1")
    frame_height, frame_width = np.maximum(crop, np.rint(height * scale)), np.maximum(crop, np.rint(width * scale))

    def inside(side: np.ndarray) -> Callable[[int], str]:
        def expected(row: int) -> str:
            shrunk = f" shrunk by {scale[row]:g}" if scale[row] != 1 else ""
            return (f"an integer from 0 to {int(side[row] - crop[row])} (a {crop[row]}-pixel crop inside the "
                    f"{int(frame_width[row])}x{int(frame_height[row])} frame{shrunk})")
        return expected

    for column, side in (("top", frame_height), ("left", frame_width)):
        offset = views[column].to_numpy()
        plan.check((offset < 0) | (offset > side - crop), column, inside(side))


def check_transforms(plan: PlanFile, views: pd.DataFrame, manifest: pd.DataFrame) -> None:
    """Rotation by quarter turns, jitter factors within reach of augment, and the triplet's own timestep."""
    plan.check(~views.rotation.isin(ROTATIONS), "rotation", lambda row: f"one of {', '.join(map(str, ROTATIONS))}")
    low, high = JITTER_LIMITS
    for column in ("brightness", "contrast"):
        plan.check(~views[column].between(low, high), column, lambda row: f"a number from {low} to {high}")
    t = manifest.timestep.to_numpy(float)
    expected = np.where(views.reversed, 1.0 - t, t)
    plan.check(~np.isclose(views.timestep, expected, rtol=0, atol=1e-9), "timestep",
               lambda row: f"{expected[row]:g} (the timestep of triplet {views.triplet.iloc[row]} in {plan.manifest}"
                           + (", 1 - it as the view is reversed)" if views.reversed.iloc[row] else ")"))


def read_plan(path: Path, train: pd.DataFrame, manifest: str) -> pd.DataFrame:
    """The plan at ``path`` with every value checked against its range, its triplet (a row of ``train``, the train
    triplets of ``manifest``) and the frame size: one line naming the row, the column and what is allowed for the
    first bad value. Floats read back exactly as written."""
    if not path.is_file():
        raise UserError(f"{path}: missing; run `dvc repro augment` first")
    cells = pd.read_csv(path, dtype=str, keep_default_na=False)
    missing = [column for column in PLAN_COLUMNS if column not in cells.columns]
    if missing:
        raise UserError(f"{path}: no column {missing[0]}; run `dvc repro augment` again")
    plan = PlanFile(path, cells, manifest)
    views = pd.DataFrame({column: parse_column(plan, column) for column in PLAN_COLUMNS})
    rows = check_triplets(plan, views, train)
    check_crops(plan, views)
    check_transforms(plan, views, rows)
    return views
