"""Stage ``extract``: cut the footage into (I0, It, I1) triplets with leak-free train/val/test splits.

Reads: everything under the folder ``sources.videos`` names (video files, folders of numbered images,
Vimeo-90K; read in place, never copied whole); params ``base``, ``sources.videos``, ``extract``.
Writes: ``data/triplets/`` with ``frames/<clip>/<index>.png`` (each frame a kept triplet uses, stored once,
lossless), ``manifest.csv`` (every candidate triplet, kept or not, with its scores and the reason) and
``report.json`` (counts per split and per reason, each clip, and any skipped file).

Each clip is decoded once, streaming: a window of ``2 * gap + 1`` frames (the largest gap of ``extract.gap``)
is held, and the window of each gap is scored on thumbnails and decided as soon as its last frame arrives (see :mod:`pipeline.footage.windows`), so memory stays flat
whatever the clip's length. Clips are processed in parallel, one process per available core.
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import shutil
from collections import deque
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
from tqdm import tqdm

from pipeline.core.atomic import atomic_dir
from pipeline.core.errors import UserError, user_facing
from pipeline.core.params import Extract, load_params
from pipeline.core.paths import TRIPLETS_DIR
from pipeline.footage.sources import VIDEO_EXTENSIONS, Clip, VimeoEntry, discover
from pipeline.footage.video import mean_abs_diff, read_bgr, thumbnail, write_bgr
from pipeline.footage.windows import (KEPT, OVER_CAP, SPLITS, Blocks, Cap, Segments, deal_blocks, deal_clips,
                                      deal_vimeo_groups, drop_reason, segments_for, targets, whole_clip)

log = logging.getLogger("pipeline.extract")
MIN_BLOCKS = 3  # one block each for train, val and test

PENDING_PER_WRITER = 2  # frames queued per writer thread; bounds memory while PNG encoding overlaps decoding
VIMEO_CHUNK = 500  # Vimeo entries per parallel task
COLUMNS = ["triplet", "clip", "split", "status", "gap", "frame0", "frame_t", "frame1", "timestep", "height", "width",
           "motion", "cut_score", "duplicate_score", "path0", "path_t", "path1"]


class FrameStore:
    """Stores each frame of one clip once, as PNG, on background threads (PNG encoding releases the GIL, so it
    overlaps decoding); PNG sources are copied as they are."""

    def __init__(self, folder: Path, writers: int = 1) -> None:
        self.folder = folder
        self.written: set[int] = set()
        self.pool = ThreadPoolExecutor(max_workers=writers)
        self.max_pending = PENDING_PER_WRITER * writers
        self.pending: deque[Future] = deque()

    def add(self, index: int, frame: np.ndarray, source: Path | None) -> None:
        if index in self.written:
            return
        self.written.add(index)
        self.folder.mkdir(parents=True, exist_ok=True)
        while len(self.pending) >= self.max_pending:
            self.pending.popleft().result()
        self.pending.append(self.pool.submit(self._write, self.folder / f"{index:06d}.png", frame, source))

    @staticmethod
    def _write(dest: Path, frame: np.ndarray, source: Path | None) -> None:
        if source is not None and source.suffix.lower() == ".png":
            shutil.copyfile(source, dest)
        else:
            write_bgr(dest, frame)

    def close(self) -> None:
        try:
            while self.pending:
                self.pending.popleft().result()
        finally:
            self.pool.shutdown()


def window_scores(first: np.ndarray, last: np.ndarray, adjacent: list[float]) -> dict[str, float]:
    """Motion (I0 vs I1), cut score (largest adjacent change) and duplicate score (smallest)."""
    return {"motion": mean_abs_diff(first, last), "cut_score": max(adjacent), "duplicate_score": min(adjacent)}


def clip_splits(clip: Clip, split: str | None, frames: int, cfg: Extract, seed: int) -> Segments | Blocks:
    """Where each split lies in ``clip``: all of it (``split`` set by by-clip dealing), dealt blocks, or segments.
    A clip too short for one block per split (``MIN_BLOCKS``) is split by time, so short footage still gets a test
    and a val segment under ``split_by: blocks``."""
    if split:
        return whole_clip(split)
    if cfg.split_by == "blocks":
        if frames >= MIN_BLOCKS * cfg.block_frames:
            return deal_blocks(frames, clip.name, cfg, seed)
        log.info("%s: %d frames make fewer than %d blocks of %d; split by time instead", clip.name, frames,
                 MIN_BLOCKS, cfg.block_frames)
    return segments_for(frames, cfg)


def extract_clip(clip: Clip, split: str | None, cfg: Extract, out: Path, writers: int = 1, seed: int = 0) -> dict:
    """Decode ``clip`` once and keep its clean windows of every gap; ``split`` fixes the whole clip's split
    (by-clip); ``writers`` threads encode the stored frames; ``seed`` deals the blocks of ``split_by: blocks``."""
    expected = clip.frame_count()
    span = 2 * max(cfg.gap)
    segments = clip_splits(clip, split, expected, cfg, seed)
    caps = {gap: Cap(segments, expected, cfg, gap) for gap in cfg.gap}
    window: deque[tuple[np.ndarray, np.ndarray, Path | None]] = deque(maxlen=span + 1)
    adjacent: deque[float] = deque(maxlen=span)
    rows: list[dict] = []
    store = FrameStore(out / "frames" / clip.name, writers)
    index = -1
    size = None
    try:
        for index, (frame, source) in enumerate(clip.iter_frames()):
            if size is None:
                size = frame.shape[:2]
            elif frame.shape[:2] != size:
                raise UserError(f"{source or clip.path}: frame {index} is {frame.shape[1]}x{frame.shape[0]}, "
                                f"earlier frames {size[1]}x{size[0]}")
            thumb = thumbnail(frame)
            if window:
                adjacent.append(mean_abs_diff(thumb, window[-1][1]))
            window.append((frame, thumb, source))
            for gap in cfg.gap:
                rows += decide_window(window, list(adjacent), index, gap, segments, caps[gap], cfg, clip.name, store)
    finally:
        store.close()
    if index + 1 < 2 * min(cfg.gap) + 1:
        raise UserError(f"{clip.path}: {index + 1} frames, a triplet with gap {min(cfg.gap)} needs at least "
                        f"{2 * min(cfg.gap) + 1}")
    prefix = f"frames/{clip.name}/"
    for row in rows:
        row.update(height=size[0], width=size[1], path0=f"{prefix}{row['frame0']:06d}.png",
                   path_t=f"{prefix}{row['frame_t']:06d}.png", path1=f"{prefix}{row['frame1']:06d}.png")
    summary = {"clip": clip.name, "kind": clip.kind, "frames": index + 1, "size": f"{size[1]}x{size[0]}",
               "kept": {s: sum(r["split"] == s and r["status"] == KEPT for r in rows) for s in SPLITS}}
    if clip.kind == "video" and abs(expected - (index + 1)) > 1:
        log.warning("%s: the container says %d frames, %d were decoded", clip.path, expected, index + 1)
    return {"rows": rows, "clips": [summary], "skipped": []}


def decide_window(window: deque, adjacent: list[float], index: int, gap: int, segments: Segments | Blocks,
                  cap: Cap, cfg: Extract, clip: str, store: FrameStore) -> list[dict]:
    """Rows of the window of ``gap`` that ends at frame ``index`` (none when it starts before the clip or off
    the stride); the frames of a kept one go to ``store``."""
    span = 2 * gap
    start = index - span
    if start < 0 or start % cfg.stride or len(window) < span + 1:
        return []
    frames = list(window)[-(span + 1):]
    win_split = segments.split_of(start, index)
    scores = window_scores(frames[0][1], frames[-1][1], adjacent[-span:])
    status = drop_reason(win_split, scores["motion"], scores["cut_score"], scores["duplicate_score"], cfg)
    if status == KEPT and not cap.admit(win_split, start):
        status = OVER_CAP
    rows = []
    for offset, timestep in targets(cfg, gap):
        rows.append({"clip": clip, "split": win_split or "none", "status": status, "gap": gap, "frame0": start,
                     "frame_t": start + offset, "frame1": index, "timestep": timestep, **scores})
        if status == KEPT:
            for k in (0, offset, span):
                store.add(start + k, frames[k][0], frames[k][2])
    return rows


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
            for src, rel in zip(entry.files, paths):
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


def plan_tasks(source: Path, cfg: Extract, seed: int) -> tuple[list[tuple[Callable, tuple]], list[dict]]:
    footage = discover(source, cfg.skip_unreadable)
    if not footage.clips and not footage.vimeo:
        raise UserError(f"sources.videos {source}: no footage found (video files {'/'.join(VIDEO_EXTENSIONS)}, "
                        "folders of numbered images, or Vimeo-90K with tri_trainlist.txt)")
    fixed = deal_clips([c.name for c in footage.clips], cfg, seed) if cfg.split_by == "clip" and footage.clips else {}
    cores = available_cores()
    writers = max(1, cores // max(1, min(len(footage.clips), cores)))  # cores left idle by few clips encode PNGs
    tasks: list[tuple[Callable, tuple]] = [(run_clip, (clip, fixed.get(clip.name), cfg, writers, seed))
                                           for clip in footage.clips]
    val_groups = deal_vimeo_groups([e.group for e in footage.vimeo if e.listed_as == "train"], cfg.val_fraction, seed)
    entries = [(e, "val" if e.listed_as == "train" and e.group in val_groups else e.listed_as) for e in footage.vimeo]
    for i in range(0, len(entries), VIMEO_CHUNK):
        tasks.append((extract_vimeo, (entries[i:i + VIMEO_CHUNK], cfg)))
    return tasks, footage.skipped


def available_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def run_tasks(tasks: list[tuple[Callable, tuple]], out: Path) -> list[dict]:
    """Run ``tasks`` (in parallel when there are several cores and tasks); results in task order."""
    workers = min(len(tasks), available_cores())
    progress = tqdm(total=len(tasks), desc="extract", unit="clip")
    try:
        if workers <= 1:
            results = []
            for fn, args in tasks:
                results.append(fn(*args, out))
                progress.update()
            return results
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            futures = [pool.submit(fn, *args, out) for fn, args in tasks]
            try:
                for future in as_completed(futures):
                    future.result()
                    progress.update()
            except BaseException:
                pool.shutdown(wait=True, cancel_futures=True)
                raise
            return [future.result() for future in futures]
    finally:
        progress.close()


def build_manifest(rows: list[dict]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=[c for c in COLUMNS if c != "triplet"])
    frame.insert(0, "triplet", range(len(frame)))
    return frame


def merge_summaries(summaries: list[dict]) -> list[dict]:
    """One entry per clip; the chunks of a Vimeo-90K folder add up into one."""
    merged: dict[str, dict] = {}
    for summary in summaries:
        if summary["clip"] in merged and summary["kind"] == "vimeo":
            total = merged[summary["clip"]]
            total["triplets"] += summary["triplets"]
            total["kept"] = {s: total["kept"][s] + summary["kept"][s] for s in SPLITS}
        else:
            merged[summary["clip"]] = dict(summary)
    return list(merged.values())


def summarise(manifest: pd.DataFrame, source: Path, results: list[dict], skipped: list[dict]) -> dict:
    kept = manifest[manifest.status == KEPT]
    report = {"source": str(source), "candidates": len(manifest),
              "kept": {s: int((kept.split == s).sum()) for s in SPLITS},
              "dropped": {str(k): int(v) for k, v in manifest[manifest.status != KEPT].status.value_counts().items()},
              "clips": merge_summaries([c for r in results for c in r["clips"]]),
              "skipped": skipped + [s for r in results for s in r["skipped"]]}
    for split in ("train", "test"):
        if report["kept"][split] == 0:
            raise UserError(f"{source}: no usable {split} triplet (dropped: {json.dumps(report['dropped'])}, "
                            f"skipped files: {len(report['skipped'])}); add footage or relax the extract "
                            "thresholds in params.yaml")
    return report


@user_facing
def main() -> None:
    params = load_params()
    source = Path(params.sources.videos)
    if not source.is_dir():
        raise UserError(f"sources.videos {source}: no such folder")
    tasks, skipped = plan_tasks(source, params.extract, params.base.seed)
    with atomic_dir(TRIPLETS_DIR) as tmp:
        results = run_tasks(tasks, tmp)
        manifest = build_manifest([row for result in results for row in result["rows"]])
        report = summarise(manifest, source, results, skipped)
        manifest.to_csv(tmp / "manifest.csv", index=False, float_format="%.6g")
        (tmp / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    for problem in report["skipped"]:
        log.warning("skipped %s: %s", problem["file"], problem["problem"])
    log.info("kept %s triplets; dropped %s", report["kept"], report["dropped"])


if __name__ == "__main__":
    main()
