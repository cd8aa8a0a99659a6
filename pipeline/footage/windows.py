"""Which triplets a clip offers, the split each belongs to, why one is dropped, and the per-clip cap.

A window is a pair (I0, I1) with I1 ``2 * gap`` frames after I0 (``extract.gap`` may list several gaps);
its targets are the middle frame (t = 0.5) or, with ``timesteps: all``, every frame between them
(t = k / (2 gap)); a window whose frames' timestamps put a target further than ``timestep_tolerance`` from
that t (variable frame rate, frames left out) is dropped as uneven_timing.

Splits never leak: with ``split_by: time`` each clip is cut into train / val / test segments with
``guard_frames`` between them and a window belongs to the segment holding all its frames; with ``split_by:
blocks`` each clip is cut into blocks of ``block_frames`` (the last ``guard_frames`` of each unused), dealt to
the splits by a seeded shuffle, and a window belongs to the block holding all its frames; with ``split_by:
clip`` whole clips are dealt to the splits by a seeded shuffle.
"""

from __future__ import annotations

import logging
import zlib
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from pipeline.core.errors import UserError
from pipeline.core.params import Extract
from pipeline.core.paths import KEPT, SPLITS

log = logging.getLogger(__name__)

OVER_CAP = "over_cap"
MIN_BLOCKS = 3  # one block each for train, val and test
MAX_SEARCH = 100_000  # frames: where the search for the shortest usable clip gives up
BETWEEN_SPLITS = "between_splits"
UNEVEN_TIMING = "uneven_timing"


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

    def ranges(self, split: str) -> list[tuple[int, int]]:
        return [getattr(self, split)]


@dataclass(frozen=True)
class Blocks:
    """``split_by: blocks``: block ``b`` covers frames [b * size, (b + 1) * size - guard) and belongs to
    ``splits[b]``; the last ``guard`` frames of every block belong to no split."""

    size: int
    guard: int
    splits: tuple[str, ...]

    def split_of(self, first: int, last: int) -> str | None:
        block = min(first // self.size, len(self.splits) - 1)  # frames past the container's count: the last block
        end = 2**62 if block == len(self.splits) - 1 else (block + 1) * self.size - self.guard
        return self.splits[block] if last < end else None

    def ranges(self, split: str) -> list[tuple[int, int]]:
        last = len(self.splits) - 1
        return [(b * self.size, 2**62 if b == last else (b + 1) * self.size - self.guard)
                for b, name in enumerate(self.splits) if name == split]


def deal_blocks(num_frames: int, clip: str, cfg: Extract, seed: int) -> Blocks:
    """Cut a clip into blocks of ``block_frames`` and deal them to the splits by a shuffle seeded by ``seed`` and
    the clip's name: ``test_fraction`` of the blocks (at least one) to test, ``val_fraction`` to val (at least
    one when it is above 0 and the clip has three blocks or more), the rest (at least one) to train."""
    count = max(1, -(-num_frames // cfg.block_frames))
    n_test = max(1, round(count * cfg.test_fraction))
    n_val = max(1 if cfg.val_fraction > 0 and count >= 3 else 0, round(count * cfg.val_fraction))
    n_test, n_val = min(n_test, max(0, count - 1)), min(n_val, max(0, count - 1 - n_test))
    labels = ["test"] * n_test + ["val"] * n_val + ["train"] * (count - n_test - n_val)
    order = np.random.default_rng([seed, zlib.crc32(clip.encode())]).permutation(count)
    return Blocks(cfg.block_frames, cfg.guard_frames, tuple(labels[i] for i in order))


def clip_splits(clip: str, split: str | None, frames: int, cfg: Extract, seed: int) -> Segments | Blocks:
    """Where each split lies in a clip of ``frames`` frames: all of it (``split`` set by by-clip dealing), dealt
    blocks, or time segments. A clip too short for one block per split (:data:`MIN_BLOCKS`) is split by time, so
    short footage still gets a test and a val segment under ``split_by: blocks``."""
    if split:
        return whole_clip(split)
    if cfg.split_by == "blocks":
        if frames >= MIN_BLOCKS * cfg.block_frames:
            return deal_blocks(frames, clip, cfg, seed)
        log.info("%s: %d frames make fewer than %d blocks of %d; split by time instead", clip, frames, MIN_BLOCKS,
                 cfg.block_frames)
    return segments_for(frames, cfg)


def segments_for(num_frames: int, cfg: Extract) -> Segments:
    """Time segments of a clip: the last ``test_fraction`` is test, the ``val_fraction`` before it val."""
    test_len = max(1, round(num_frames * cfg.test_fraction))
    val_len = round(num_frames * cfg.val_fraction)
    test_start = num_frames - test_len
    val_start = test_start - cfg.guard_frames - val_len if val_len else test_start - cfg.guard_frames
    train_stop = val_start - cfg.guard_frames if val_len else val_start
    return Segments(train=(0, max(0, train_stop)), val=(max(0, val_start), max(0, val_start + val_len)),
                    test=(test_start, 2**62))  # frames past the container's count still belong to test


def min_clip_frames(cfg: Extract) -> int:
    """The fewest frames of a clip split by time (as any clip under three blocks is) that hold a train and a test
    window of the smallest ``extract.gap``."""
    span = 2 * min(cfg.gap)
    frames = span + 1
    while frames < MAX_SEARCH:
        seg = segments_for(frames, cfg)
        first_test = -(-seg.test[0] // cfg.stride) * cfg.stride
        if seg.train[1] - span > 0 and first_test < frames - span:
            return frames
        frames += 1
    return frames


def whole_clip(split: str) -> Segments:
    """Every frame of the clip in ``split`` (``split_by: clip``)."""
    ranges = {name: (0, 2**62) if name == split else (0, 0) for name in SPLITS}
    return Segments(**ranges)


def deal_clips(names: list[str], cfg: Extract, seed: int) -> dict[str, str]:
    """``split_by: clip``: a seeded shuffle of the clips, the first ones to test, the next to val."""
    count = len(names)
    n_test = max(1, round(count * cfg.test_fraction))
    n_val = round(count * cfg.val_fraction)
    if count - n_test - n_val < 1:
        raise UserError(f"extract.split_by = 'clip' with {count} clip(s) leaves none for training "
                        f"(test {n_test}, val {n_val}); add clips or use split_by: time")
    order = np.random.default_rng(seed).permutation(count)
    ranked = [sorted(names)[i] for i in order]
    return {name: "test" if i < n_test else "val" if i < n_test + n_val else "train"
            for i, name in enumerate(ranked)}


def deal_vimeo_groups(groups: list[str], val_fraction: float, seed: int) -> set[str]:
    """Groups (first part of a Vimeo entry) of the train list held out for validation, seeded."""
    sizes = Counter(groups)
    unique = sorted(sizes)
    wanted = round(len(groups) * val_fraction)
    chosen: set[str] = set()
    taken = 0
    for i in np.random.default_rng(seed).permutation(len(unique)):
        if taken >= wanted or len(chosen) == len(unique) - 1:
            break
        chosen.add(unique[i])
        taken += sizes[unique[i]]
    return chosen


def targets(cfg: Extract, gap: int) -> list[tuple[int, float]]:
    """(offset from I0, timestep) of each target of a window of ``gap``."""
    span = 2 * gap
    if cfg.timesteps == "middle":
        return [(gap, 0.5)]
    return [(k, k / span) for k in range(1, span)]


def periods(stamp_gap: int, unit: Fraction) -> Fraction:
    """A gap between two stamps in frame periods (``unit``: periods per stamp unit). Within one stamp unit of a
    whole number of periods it is read as that number: stamps are rounded to their time base (Matroska's
    millisecond stamps of 120 fps footage are 8 or 9 ms apart)."""
    span = stamp_gap * unit
    whole = round(span)
    return Fraction(whole) if abs(span - whole) <= unit else span


def timing_error(stamps: Sequence[int], unit: Fraction, cfg: Extract, gap: int) -> float:
    """How far the true timestep of a window's targets, from the stamps of its ``2 * gap + 1`` frames, strays from
    the nominal one (the largest |t - k / (2 gap)|; 0.5 when the stamps do not increase)."""
    whole = periods(stamps[-1] - stamps[0], unit)
    if whole <= 0:
        return 0.5
    return float(max(abs(periods(stamps[offset] - stamps[0], unit) / whole - Fraction(offset, 2 * gap))
                     for offset, _ in targets(cfg, gap)))


def drop_reason(split: str | None, motion: float, cut: float, duplicate: float, cfg: Extract,
                timing: float = 0.0) -> str:
    """``kept`` or why the window is dropped, the first rule that fires in this order; ``timing``: its
    :func:`timing_error`."""
    if split is None:
        return BETWEEN_SPLITS
    if timing > cfg.timestep_tolerance:
        return UNEVEN_TIMING
    if cut > cfg.cut_threshold:
        return "scene_cut"
    if duplicate < cfg.duplicate_threshold:
        return "duplicate_frame"
    if motion < cfg.static_threshold:
        return "static"
    return KEPT


class Cap:
    """At most ``max_per_clip`` kept windows of one gap per split, spread evenly: the split's candidate windows
    are cut into that many bins of consecutive windows, and the first clean window of each bin is kept."""

    def __init__(self, segments: Segments | Blocks, num_frames: int, cfg: Extract, gap: int) -> None:
        self.limit = cfg.max_per_clip
        self.starts: dict[str, np.ndarray] = {}  # split -> the starts of its candidate windows, ascending
        span = 2 * gap
        for split in SPLITS:
            parts = []
            for start, stop in segments.ranges(split):
                first = -(-start // cfg.stride) * cfg.stride
                parts.append(np.arange(first, min(stop, num_frames) - span, cfg.stride))
            self.starts[split] = np.concatenate(parts) if parts else np.zeros(0, dtype=int)
        self.filled: set[tuple[str, int]] = set()

    def count(self, split: str) -> int:
        return len(self.starts[split])

    def admit(self, split: str, start: int) -> bool:
        """Whether a clean window at ``start`` is kept (False: its bin already has one)."""
        count = self.count(split)
        if not self.limit or count <= self.limit:
            return True
        position = int(np.searchsorted(self.starts[split], start))
        bin_index = min(self.limit - 1, position * self.limit // count)
        if (split, bin_index) in self.filled:
            return False
        self.filled.add((split, bin_index))
        return True
