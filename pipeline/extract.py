"""Stage ``extract``: cut the footage into (I0, It, I1) triplets with leak-free train/val/test splits.

Reads: the clips in the folder ``sources.videos`` names (read in place, never copied); params ``base``,
``sources.videos``, ``extract``. Writes: ``data/triplets/`` with ``frames/<clip>/<index>.png`` (each frame
stored once, lossless), ``manifest.csv`` (every candidate triplet, kept or not, with its scores and the
reason) and ``report.json`` (counts per split and per reason).

Each clip is split by time: its last ``test_fraction`` of frames is the test segment, the
``val_fraction`` before it the validation segment, the rest training, with ``guard_frames`` left out
between segments. A triplet belongs to the segment that holds all three of its frames.
"""

from __future__ import annotations

import json
import logging
from collections import deque
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from pipeline.errors import UserError, user_facing
from pipeline.fsutil import atomic_dir
from pipeline.params import Extract, load_params
from pipeline.paths import TRIPLETS_DIR
from pipeline.video import iter_frames, list_videos, thumbnail, write_image

log = logging.getLogger("pipeline.extract")

SPLITS = ("train", "val", "test")
KEPT = "kept"


@dataclass(frozen=True)
class Segments:
    """Frame ranges [start, stop) of each split within one clip."""

    train: tuple[int, int]
    val: tuple[int, int]
    test: tuple[int, int]

    def split_of(self, first: int, last: int) -> str | None:
        for name in SPLITS:
            start, stop = getattr(self, name)
            if start <= first and last < stop:
                return name
        return None


def segments_for(num_frames: int, cfg: Extract) -> Segments:
    test_len = max(1, round(num_frames * cfg.test_fraction))
    val_len = round(num_frames * cfg.val_fraction)
    test_start = num_frames - test_len
    val_start = test_start - cfg.guard_frames - val_len if val_len else test_start - cfg.guard_frames
    train_stop = val_start - cfg.guard_frames if val_len else val_start
    return Segments(train=(0, max(0, train_stop)), val=(max(0, val_start), max(0, val_start + val_len)),
                    test=(test_start, num_frames))


def score_clip(path: Path, cfg: Extract) -> tuple[list[dict], tuple[int, int], int]:
    """First pass: score every candidate triplet of ``path`` while streaming its frames."""
    span = 2 * cfg.gap
    window: deque[np.ndarray] = deque(maxlen=span + 1)
    adjacent: list[float] = []
    rows: list[dict] = []
    size = (0, 0)
    index = -1
    for index, frame in enumerate(iter_frames(path)):
        if index == 0:
            size = frame.shape[:2]
        elif frame.shape[:2] != size:
            raise UserError(f"{path}: frame {index} is {frame.shape[1]}x{frame.shape[0]}, "
                            f"earlier frames {size[1]}x{size[0]}")
        thumb = thumbnail(frame)
        if window:
            adjacent.append(float(np.abs(thumb - window[-1]).mean()))
        window.append(thumb)
        start = index - span
        if start >= 0 and start % cfg.stride == 0:
            diffs = adjacent[start:index]
            rows.append({"frame0": start, "frame_t": start + cfg.gap, "frame1": index, "timestep": 0.5,
                         "motion": float(np.abs(window[-1] - window[0]).mean()),
                         "cut_score": max(diffs), "duplicate_score": min(diffs)})
    num_frames = index + 1
    if num_frames < span + 1:
        raise UserError(f"{path}: {num_frames} frames, a triplet with gap {cfg.gap} needs at least {span + 1}")
    return rows, size, num_frames


def classify(rows: list[dict], segments: Segments, cfg: Extract) -> None:
    """Set ``split`` and ``status`` (``kept`` or the reason it was dropped) of each candidate."""
    for row in rows:
        row["split"] = segments.split_of(row["frame0"], row["frame1"]) or "none"
        if row["split"] == "none":
            row["status"] = "between_splits"
        elif row["cut_score"] > cfg.cut_threshold:
            row["status"] = "scene_cut"
        elif row["duplicate_score"] < cfg.duplicate_threshold:
            row["status"] = "duplicate_frame"
        elif row["motion"] < cfg.static_threshold:
            row["status"] = "static"
        else:
            row["status"] = KEPT
    if cfg.max_per_clip:
        for split in SPLITS:
            kept = [r for r in rows if r["split"] == split and r["status"] == KEPT]
            if len(kept) > cfg.max_per_clip:
                chosen = set(np.linspace(0, len(kept) - 1, cfg.max_per_clip).round().astype(int).tolist())
                for i, row in enumerate(kept):
                    if i not in chosen:
                        row["status"] = "over_cap"


def write_frames(path: Path, needed: set[int], out_dir: Path) -> None:
    """Second pass: store each needed frame once, as PNG."""
    out_dir.mkdir(parents=True, exist_ok=True)
    last = max(needed)
    for index, frame in enumerate(iter_frames(path)):
        if index in needed:
            write_image(out_dir / f"{index:06d}.png", frame)
        if index >= last:
            break


def process_clip(path: Path, clip: str, cfg: Extract, out: Path) -> list[dict]:
    rows, (height, width), num_frames = score_clip(path, cfg)
    classify(rows, segments_for(num_frames, cfg), cfg)
    for row in rows:
        row.update(clip=clip, height=height, width=width)
        for key in ("frame0", "frame_t", "frame1"):
            row["path" + key[5:]] = f"frames/{clip}/{row[key]:06d}.png"
    needed = {row[k] for row in rows if row["status"] == KEPT for k in ("frame0", "frame_t", "frame1")}
    if needed:
        write_frames(path, needed, out / "frames" / clip)
    return rows


def build_manifest(rows: list[dict]) -> pd.DataFrame:
    columns = ["triplet", "clip", "split", "status", "frame0", "frame_t", "frame1", "timestep", "height",
               "width", "motion", "cut_score", "duplicate_score", "path0", "path_t", "path1"]
    frame = pd.DataFrame(rows)
    frame["triplet"] = range(len(frame))
    return frame[columns]


def summarise(manifest: pd.DataFrame, source: Path) -> dict:
    kept = manifest[manifest.status == KEPT]
    report = {"source": str(source), "clips": int(manifest["clip"].nunique()), "candidates": len(manifest),
              "kept": {s: int((kept.split == s).sum()) for s in SPLITS},
              "dropped": {str(k): int(v) for k, v in manifest[manifest.status != KEPT].status.value_counts().items()}}
    for split in ("train", "test"):
        if report["kept"][split] == 0:
            raise UserError(f"{source}: no usable {split} triplet (report: {json.dumps(report['dropped'])}); "
                            "add footage or relax the extract thresholds in params.yaml")
    return report


@user_facing
def main() -> None:
    params = load_params()
    source = Path(params.sources.videos)
    if not source.is_dir():
        raise UserError(f"sources.videos {source}: no such folder")
    videos = list_videos(source)
    if not videos:
        raise UserError(f"sources.videos {source}: no video files ({', '.join(('mp4', 'mov', 'mkv', 'avi', 'webm'))})")
    rows: list[dict] = []
    with atomic_dir(TRIPLETS_DIR) as tmp:
        for path in tqdm(videos, desc="extract", unit="clip"):
            rows.extend(process_clip(path, path.relative_to(source).as_posix(), params.extract, tmp))
        manifest = build_manifest(rows)
        report = summarise(manifest, source)
        manifest.to_csv(tmp / "manifest.csv", index=False, float_format="%.6g")
        (tmp / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    log.info("kept %s triplets; dropped %s", report["kept"], report["dropped"])


if __name__ == "__main__":
    main()
