"""Which stretches of the footage ``evaluate`` rebuilds: each clip's test segment, every ``2 x gap``-th frame kept
(``gap``: the smallest of the test split), and the true frames of each interval, decoded from the source footage
as ``extract`` decoded it (``data/triplets`` stores only frames that kept triplets use, and a segment also holds
static and cut windows; the stored frames are checked to be the same pixels once per segment)."""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from pipeline.core.errors import UserError
from pipeline.core.params import Params
from pipeline.core.paths import TRIPLETS_DIR
from pipeline.footage.sources import Clip, discover
from pipeline.footage.triplets import split_spans
from pipeline.footage.video import probe, read_image
from pipeline.models import ARCHITECTURES, check_timesteps

log = logging.getLogger(__name__)

IMAGE_RATE = Fraction(25)  # frames per second assumed for a folder of numbered images (it states none)
Key = tuple[str, int, int, float]  # (clip, I0 frame, I1 frame, timestep): one prediction


@dataclass(frozen=True)
class Segment:
    """A rebuilt stretch of one clip: kept frames ``first``, ``first + step``, ... ``first + pairs x step``."""

    clip: Clip
    first: int
    pairs: int
    step: int  # 2 x gap
    rate: Fraction
    size: tuple[int, int]  # (height, width)
    video_pairs: int  # intervals at the start that go into the side-by-side video (0: no video)

    @property
    def last(self) -> int:
        return self.first + self.pairs * self.step

    @property
    def timesteps(self) -> list[float]:
        return [k / self.step for k in range(1, self.step)]

    def keys(self) -> Iterator[Key]:
        for start in range(self.first, self.last, self.step):
            for t in self.timesteps:
                yield self.clip.name, start, start + self.step, round(t, 6)


def _clip_info(clip: Clip) -> tuple[Fraction, tuple[int, int] | None]:
    if clip.frames:
        return IMAGE_RATE, None
    info = probe(clip.path)
    return info.rate, (info.height, info.width)


def plan_segments(rows: pd.DataFrame, params: Params) -> list[Segment]:
    """The segments to rebuild: the test runs of every clip of ``rows`` (kept test triplets), each cut to its
    first ``evaluate.segments.seconds``; the first segment of the ``videos.max_clips`` clips with the most test
    triplets gets ``videos.seconds`` of video."""
    opts, videos = params.evaluate.segments, params.evaluate.videos
    if opts.seconds == 0 or rows.empty:
        return []
    gap = int(rows["gap"].min())
    # A model without a timestep input (HDv3) can only rebuild one frame in two, whatever the triplets' gap
    step = 2 * gap if ARCHITECTURES[params.train.arch].supports_timestep else 2
    if step != 2 * gap:
        log.info("train.arch = %s predicts only the middle frame: segments keep one frame in 2, not in %d",
                 params.train.arch, 2 * gap)
    footage = discover(Path(params.sources.videos), skip_unreadable=True)
    clips = {clip.name: clip for clip in footage.clips}
    vimeo = {entry.name for entry in footage.vimeo}
    sizes = rows.groupby("clip").size()
    filmed = set(sorted(sizes.index, key=lambda c: (-sizes[c], c))[:videos.max_clips])
    segments: list[Segment] = []
    for name, first, last in split_spans("test", gap):
        if name in vimeo or name not in sizes.index:
            continue  # Vimeo-90K entries are single triplets; clips without a kept test triplet are not scored
        if name not in clips:
            raise UserError(f"{params.sources.videos}: clip {name} of data/triplets/manifest.csv is not there any "
                            "more; run `dvc repro` (extract reads the footage again)")
        clip = clips[name]
        rate, size = _clip_info(clip)
        last = min(last, first + math.floor(opts.seconds * rate))
        pairs = (last - first) // step
        if pairs < 1:
            continue
        size = size or read_image(clip.frames[0]).shape[:2]
        video_pairs = 0
        if name in filmed and not any(s.clip.name == name for s in segments):
            video_pairs = min(pairs, math.floor(videos.seconds * rate) // step)
        segments.append(Segment(clip, first, pairs, step, rate, tuple(size), video_pairs))
    if vimeo:
        log.info("%d Vimeo-90K entries: single triplets, no segment to rebuild", len(vimeo))
    if segments:
        check_timesteps(params.train.arch, segments[0].timesteps,
                        f"the rebuilt test segments (one frame in {step} kept)")
    return segments


def interval_frames(seg: Segment) -> Iterator[tuple[np.ndarray, list[np.ndarray], np.ndarray]]:
    """(I0, the true frames between, I1) of each interval of ``seg``, as RGB, decoding the clip once."""
    window: list[np.ndarray] = []
    for index, (bgr, *_) in enumerate(seg.clip.iter_frames()):
        if index < seg.first:
            continue
        window.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
        if index == seg.first:
            _check_same_as_stored(seg, window[0])
        if len(window) == seg.step + 1:
            yield window[0], window[1:-1], window[-1]
            window = [window[-1]]
        if index == seg.last:
            return
    raise UserError(f"{seg.clip.path}: ended before frame {seg.last} of its test segment; run `dvc repro`")


def _check_same_as_stored(seg: Segment, frame: np.ndarray) -> None:
    stored = TRIPLETS_DIR / "frames" / seg.clip.name / f"{seg.first:06d}.png"
    if stored.is_file() and not np.array_equal(read_image(stored), frame):
        raise UserError(f"{seg.clip.path}: frame {seg.first} differs from {stored} (the footage changed since "
                        "extract); run `dvc repro`")
