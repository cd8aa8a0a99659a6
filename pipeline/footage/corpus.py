"""The whole footage folder through extraction: one task per clip (and per chunk of Vimeo-90K entries), run in
parallel, one process per available core; then the manifest of every candidate triplet and the report."""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import os
import signal
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import pandas as pd
from tqdm import tqdm

from pipeline.core.errors import UserError
from pipeline.core.params import Extract
from pipeline.core.paths import KEPT, SPLITS
from pipeline.core.system import available_cores
from pipeline.footage.extraction import extract_vimeo, run_clip
from pipeline.footage.sources import VIDEO_EXTENSIONS, discover
from pipeline.footage.windows import deal_clips, deal_vimeo_groups, min_clip_frames

VIMEO_CHUNK = 500  # Vimeo entries per parallel task
COLUMNS = ["triplet", "clip", "split", "status", "gap", "frame0", "frame_t", "frame1", "timestep", "height", "width",
           "motion", "cut_score", "duplicate_score", "path0", "path_t", "path1"]

Task = tuple[Callable, tuple]


def plan_tasks(source: Path, cfg: Extract, seed: int) -> tuple[list[Task], list[dict]]:
    """The tasks that extract ``source`` (each called with the output folder last), and the files skipped."""
    footage = discover(source, cfg.skip_unreadable)
    if not footage.clips and not footage.vimeo:
        raise UserError(f"sources.videos {source}: no footage found (video files {'/'.join(VIDEO_EXTENSIONS)}, "
                        "folders of numbered images, or Vimeo-90K with tri_trainlist.txt)")
    fixed = deal_clips([c.name for c in footage.clips], cfg, seed) if cfg.split_by == "clip" and footage.clips else {}
    cores = available_cores()
    writers = max(1, cores // max(1, min(len(footage.clips), cores)))  # cores left idle by few clips encode PNGs
    tasks: list[Task] = [(run_clip, (clip, fixed.get(clip.name), cfg, writers, seed)) for clip in footage.clips]
    val_groups = deal_vimeo_groups([e.group for e in footage.vimeo if e.listed_as == "train"], cfg.val_fraction, seed)
    entries = [(e, "val" if e.listed_as == "train" and e.group in val_groups else e.listed_as) for e in footage.vimeo]
    for i in range(0, len(entries), VIMEO_CHUNK):
        tasks.append((extract_vimeo, (entries[i:i + VIMEO_CHUNK], cfg)))
    return tasks, footage.skipped


def run_tasks(tasks: list[Task], out: Path) -> list[dict]:
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
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                                 initializer=_leave_quietly_on_ctrl_c) as pool:
            with _ctrl_c_held():  # the workers start (and import) with Ctrl-C held until they can take it quietly
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


@contextlib.contextmanager
def _ctrl_c_held() -> Iterator[None]:
    """SIGINT blocked while the block runs (a Ctrl-C in it arrives when it ends, not lost); processes started in it
    begin with SIGINT blocked too (the mask is inherited), so it cannot reach them half-imported."""
    before = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, before)


def _leave_quietly_on_ctrl_c() -> None:
    """In each worker: Ctrl-C reaches every process of the terminal's group, so a worker ends at once and silently
    (exit 130) and the main process alone says, in one line, that extract was interrupted; left to Python, each
    worker would print a KeyboardInterrupt traceback. Then the Ctrl-C held while it started is let in."""
    signal.signal(signal.SIGINT, lambda *_: os._exit(130))
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


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


def too_short(report: dict, source: Path, cfg: Extract) -> str | None:
    """Why no clip can give a train and a test triplet when every one is shorter than that needs; None otherwise."""
    clips = [c for c in report["clips"] if c["kind"] != "vimeo"]
    if cfg.split_by == "clip" or not clips or len(clips) < len(report["clips"]):
        return None
    longest, needed = max(clips, key=lambda c: c["frames"]), min_clip_frames(cfg)
    if longest["frames"] >= needed:
        return None
    which = (f"{longest['clip']} has {longest['frames']} frames" if len(clips) == 1 else
             f"its {len(clips)} clips have at most {longest['frames']} frames ({longest['clip']})")
    return (f"{source}: the footage is too short: {which}, and a clip needs at least {needed} for a train and a test "
            f"triplet (extract.gap {min(cfg.gap)}, test_fraction {cfg.test_fraction:g}, val_fraction "
            f"{cfg.val_fraction:g}, guard_frames {cfg.guard_frames}); add longer footage")


def summarise(manifest: pd.DataFrame, source: Path, results: list[dict], skipped: list[dict], cfg: Extract) -> dict:
    """``report.json``: counts per split and per reason, each clip, every skipped file; a corpus without a
    train or test triplet stops here (footage too short for one says so)."""
    kept = manifest[manifest.status == KEPT]
    report = {"source": str(source), "candidates": len(manifest),
              "kept": {s: int((kept.split == s).sum()) for s in SPLITS},
              "dropped": {str(k): int(v) for k, v in manifest[manifest.status != KEPT].status.value_counts().items()},
              "clips": merge_summaries([c for r in results for c in r["clips"]]),
              "skipped": skipped + [s for r in results for s in r["skipped"]]}
    for split in ("train", "test"):
        if report["kept"][split] == 0:
            raise UserError(too_short(report, source, cfg) or
                            f"{source}: no usable {split} triplet (dropped: {json.dumps(report['dropped'])}, "
                            f"skipped files: {len(report['skipped'])}); add footage or relax the extract "
                            "thresholds in params.yaml")
    return report
