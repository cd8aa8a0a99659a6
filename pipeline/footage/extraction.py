"""One clip (or one chunk of Vimeo-90K entries) cut into candidate triplets: each window scored, split, kept or
dropped with its reason, and the frames of the kept ones stored.

A clip is decoded once, streaming: a window of ``2 * gap + 1`` frames (the largest gap of ``extract.gap``) is
held, and the window of each gap is scored on thumbnails and decided as soon as its last frame arrives (see
:mod:`pipeline.footage.windows`), so memory stays flat whatever the clip's length."""

from __future__ import annotations

import logging
import shutil
from collections import Counter, deque
from fractions import Fraction
from pathlib import Path

import numpy as np

from pipeline.core.errors import UserError
from pipeline.core.params import Extract
from pipeline.core.paths import KEPT, SPLITS
from pipeline.footage.frame_store import FrameStore
from pipeline.footage.sources import Clip, VimeoEntry
from pipeline.footage.video import mean_abs_diff, read_bgr, thumbnail
from pipeline.footage.windows import (
    OVER_CAP,
    UNEVEN_TIMING,
    Blocks,
    Cap,
    Segments,
    clip_splits,
    drop_reason,
    targets,
    timing_error,
)

log = logging.getLogger(__name__)


def window_scores(first: np.ndarray, last: np.ndarray, adjacent: list[float]) -> dict[str, float]:
    """Motion (I0 vs I1), cut score (largest adjacent change) and duplicate score (smallest)."""
    return {"motion": mean_abs_diff(first, last), "cut_score": max(adjacent), "duplicate_score": min(adjacent)}


class ClipWindows:
    """The windows of one clip as its frames arrive: each frame is pushed once, and every window that ends on it
    (one per gap) comes back as manifest rows; the frames of kept windows go to ``store``. ``unit``: frame periods
    per unit of the frames' stamps; ``worst_timing``: the largest timing error of a window dropped for it."""

    def __init__(self, clip: str, segments: Segments | Blocks, frames: int, unit: Fraction, cfg: Extract,
                 store: FrameStore) -> None:
        self.clip, self.segments, self.unit, self.cfg, self.store = clip, segments, unit, cfg, store
        self.caps = {gap: Cap(segments, frames, cfg, gap) for gap in cfg.gap}
        span = 2 * max(cfg.gap)
        self.window: deque[tuple[np.ndarray, np.ndarray, Path | None, int]] = deque(maxlen=span + 1)
        self.adjacent: deque[float] = deque(maxlen=span)
        self.worst_timing = 0.0

    def push(self, index: int, frame: np.ndarray, source: Path | None, stamp: int) -> list[dict]:
        thumb = thumbnail(frame)
        if self.window:
            self.adjacent.append(mean_abs_diff(thumb, self.window[-1][1]))
        self.window.append((frame, thumb, source, stamp))
        return [row for gap in self.cfg.gap for row in self.decide(index, gap)]

    def decide(self, index: int, gap: int) -> list[dict]:
        """Rows of the window of ``gap`` that ends at frame ``index`` (none when it starts before the clip or off
        the stride)."""
        span = 2 * gap
        start = index - span
        if start < 0 or start % self.cfg.stride or len(self.window) < span + 1:
            return []
        frames = list(self.window)[-(span + 1):]
        split = self.segments.split_of(start, index)
        scores = window_scores(frames[0][1], frames[-1][1], list(self.adjacent)[-span:])
        timing = timing_error([f[3] for f in frames], self.unit, self.cfg, gap)
        status = drop_reason(split, scores["motion"], scores["cut_score"], scores["duplicate_score"], self.cfg,
                             timing)
        if status == UNEVEN_TIMING:
            self.worst_timing = max(self.worst_timing, timing)
        if status == KEPT and not self.caps[gap].admit(split, start):
            status = OVER_CAP
        rows = []
        for offset, timestep in targets(self.cfg, gap):
            rows.append({"clip": self.clip, "split": split or "none", "status": status, "gap": gap, "frame0": start,
                         "frame_t": start + offset, "frame1": index, "timestep": timestep, **scores})
            if status == KEPT:
                for k in (0, offset, span):
                    self.store.add(start + k, frames[k][0], frames[k][2])
        return rows


def extract_clip(clip: Clip, split: str | None, cfg: Extract, out: Path, writers: int = 1, seed: int = 0) -> dict:
    """Decode ``clip`` once and keep its clean windows of every gap; ``split`` fixes the whole clip's split
    (by-clip); ``writers`` threads encode the stored frames; ``seed`` deals the blocks of ``split_by: blocks``."""
    timing = clip.timing()
    expected = timing.frames
    store = FrameStore(out / "frames" / clip.name, writers)
    windows = ClipWindows(clip.name, clip_splits(clip.name, split, expected, cfg, seed), expected, timing.unit, cfg,
                          store)
    rows: list[dict] = []
    index, size = -1, None
    try:
        for index, (frame, source, stamp) in enumerate(clip.iter_frames()):
            if size is None:
                size = frame.shape[:2]
            elif frame.shape[:2] != size:
                raise UserError(f"{source or clip.path}: frame {index} is {frame.shape[1]}x{frame.shape[0]}, "
                                f"earlier frames {size[1]}x{size[0]}")
            rows += windows.push(index, frame, source, stamp)
    finally:
        store.close()
    if index + 1 < 2 * min(cfg.gap) + 1:
        raise UserError(f"{clip.path}: {index + 1} frames, a triplet with gap {min(cfg.gap)} needs at least "
                        f"{2 * min(cfg.gap) + 1}")
    prefix = f"frames/{clip.name}/"
    for row in rows:
        row.update(height=size[0], width=size[1], path0=f"{prefix}{row['frame0']:06d}.png",
                   path_t=f"{prefix}{row['frame_t']:06d}.png", path1=f"{prefix}{row['frame1']:06d}.png")
    dropped = Counter(row["status"] for row in rows if row["status"] != KEPT)
    summary = {"clip": clip.name, "kind": clip.kind, "frames": index + 1, "size": f"{size[1]}x{size[0]}",
               "kept": {s: sum(r["split"] == s and r["status"] == KEPT for r in rows) for s in SPLITS},
               "dropped": dict(sorted(dropped.items()))}
    if clip.kind == "video" and abs(expected - (index + 1)) > 1:
        log.warning("%s: the container says %d frames, %d were decoded", clip.path, expected, index + 1)
    if dropped[UNEVEN_TIMING]:
        log.warning("%s: %d triplet(s) dropped as %s: their frames are not evenly spaced in time (a target up to "
                    "%.3f off its timestep, more than extract.timestep_tolerance = %g)", clip.path,
                    dropped[UNEVEN_TIMING], UNEVEN_TIMING, windows.worst_timing, cfg.timestep_tolerance)
    return {"rows": rows, "clips": [summary], "skipped": []}


def extract_vimeo(entries: list[tuple[VimeoEntry, str]], cfg: Extract, out: Path) -> dict:
    """Ready-made triplets; the test list is kept whole (comparable with published Vimeo-90K numbers)."""
    rows, skipped = [], []
    for entry, split in entries:
        try:
            frames = [read_bgr(path) for path in entry.files]
            if len({f.shape for f in frames}) > 1:
                raise UserError(f"{entry.files[0].parent}: im1..im3 differ in size")
        except UserError as error:
            if not cfg.skip_unreadable:
                raise
            skipped.append({"file": str(entry.files[0].parent), "problem": str(error)})
            continue
        thumbs = [thumbnail(f) for f in frames]
        scores = window_scores(thumbs[0], thumbs[2], [mean_abs_diff(thumbs[0], thumbs[1]),
                                                      mean_abs_diff(thumbs[1], thumbs[2])])
        status = KEPT if split == "test" else drop_reason(split, scores["motion"], scores["cut_score"],
                                                           scores["duplicate_score"], cfg)
        paths = [f"frames/{entry.name}/{f.name}" for f in entry.files]
        if status == KEPT:
            (out / "frames" / entry.name).mkdir(parents=True, exist_ok=True)
            for src, rel in zip(entry.files, paths, strict=True):
                shutil.copyfile(src, out / rel)
        rows.append({"clip": entry.name, "split": split, "status": status, "gap": 1, "frame0": 0, "frame_t": 1,
                     "frame1": 2, "timestep": 0.5, **scores, "height": frames[0].shape[0], "width": frames[0].shape[1],
                     "path0": paths[0], "path_t": paths[1], "path1": paths[2]})
    summary = {"clip": entries[0][0].name.rsplit("/", 2)[0], "kind": "vimeo", "triplets": len(rows),
               "kept": {s: sum(r["split"] == s and r["status"] == KEPT for r in rows) for s in SPLITS}}
    return {"rows": rows, "clips": [summary], "skipped": skipped}


def run_clip(clip: Clip, split: str | None, cfg: Extract, writers: int, seed: int, out: Path) -> dict:
    """:func:`extract_clip`, or the clip skipped and reported when ``skip_unreadable`` is set."""
    try:
        return extract_clip(clip, split, cfg, out, writers, seed)
    except UserError as error:
        if not cfg.skip_unreadable:
            raise
        shutil.rmtree(out / "frames" / clip.name, ignore_errors=True)
        return {"rows": [], "clips": [], "skipped": [{"file": str(clip.path), "problem": str(error)}]}
