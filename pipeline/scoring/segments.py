"""Each clip's test segment rebuilt the way a user would use a method, and scored frame by frame and with VMAF.

Every ``2 x gap``-th frame of the segment is kept (``gap``: the smallest of the test split) and each method
predicts the frames between (t = k / (2 gap)), as ``python -m pipeline.interpolate`` would on a video at half
(or a quarter of) the rate: across a scene cut (the two kept frames' change score above
``extract.cut_threshold``) the in-between frames repeat the nearer kept frame, for every method but
``ffmpeg_mci``, which runs as FFmpeg users run it, over the whole sequence with its own scene detection.

The segments are read from the source footage, decoded as ``extract`` decoded it (so the frames ``extract``
stored are the same pixels: checked once per segment), because ``data/triplets`` stores only frames that kept
triplets use, and a segment also holds static and cut windows. A rebuilt interval that is also a kept test
triplet (same frames, same t) is predicted once: its triplet scores are the rebuilt frame's scores, so no model
runs twice over one pair. Everything streams: one batch of intervals is held at a time.
"""

from __future__ import annotations

import logging
import math
import time
from collections import deque
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np
import pandas as pd
from tqdm import tqdm

from pipeline.core.errors import UserError
from pipeline.core.params import Params
from pipeline.core.paths import TRIPLETS_DIR
from pipeline.footage.sources import Clip, discover
from pipeline.footage.triplets import split_spans
from pipeline.footage.video import change_score, nearer_frames, probe, read_image, thumbnail
from pipeline.models import ARCHITECTURES, check_timesteps
from pipeline.scoring.batches import MAX_BATCH_PIXELS, Predictor
from pipeline.scoring.ffmpeg import MinterpolateStream, VmafStream
from pipeline.scoring.metrics import METRICS, prediction_to_255
from pipeline.scoring.watch import ClipMovie

log = logging.getLogger("pipeline.scoring.segments")
# Intervals held back before their frames are taken from minterpolate: the filter gives out interval i only
# once kept frame i + 2 (one frame in 2) or i + 3 (one in 4) has gone in, so an interval waits until the first
# kept frame of the third interval after it has been pushed (fewer deadlock on the pipe).
MCI_LOOKAHEAD = 3

IMAGE_RATE = Fraction(25)  # frames per second assumed for a folder of numbered images (it states none)
SEQUENCE_METHOD = "ffmpeg_mci"  # the method that interpolates a whole sequence at once, not pair by pair
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
            for k, t in enumerate(self.timesteps, 1):
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
    for index, (bgr, _) in enumerate(seg.clip.iter_frames()):
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


def batched(items: Iterator, size: int) -> Iterator[list]:
    batch: list = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


@dataclass
class Interval:
    img0: np.ndarray
    truths: list[np.ndarray]
    img1: np.ndarray
    cut: bool
    preds: dict[str, list[np.ndarray]]  # method -> float prediction at each timestep


class Rebuilder:
    """Rebuilds segments with every method and collects their scores (see the module's docstring)."""

    def __init__(self, predictors: dict[str, Predictor], params: Params, shared: set[Key],
                 videos: Path | None, previews: Path | None, seconds: dict[str, float]) -> None:
        self.predictors = {n: p for n, p in predictors.items() if n != SEQUENCE_METHOD}
        self.methods = tuple(predictors)
        self.cfg = params.evaluate
        self.threshold = params.extract.cut_threshold
        self.shared, self.videos, self.previews, self.seconds = shared, videos, previews, seconds
        self.frames: list[dict] = []  # one row per interpolated frame
        self.vmaf: list[dict[str, np.ndarray]] = []  # per segment: method -> VMAF of every frame
        self.triplet_scores: dict[Key, dict[str, float]] = {}
        self.cuts = 0

    def run(self, segments: list[Segment]) -> None:
        total = sum(s.pairs * (s.step - 1) for s in segments)
        with tqdm(total=total, desc="segments", unit="frame") as bar:
            for seg in segments:
                self.rebuild(seg, bar)

    def rebuild(self, seg: Segment, bar: tqdm) -> None:
        height, width = seg.size
        vmaf = {m: VmafStream(width, height) for m in self.methods}
        mci = MinterpolateStream(width, height, seg.step) if SEQUENCE_METHOD in self.methods else None
        movie = ClipMovie(seg, self.cfg.videos, self.videos, self.previews) if seg.video_pairs else None
        streams = [*vmaf.values(), *([mci] if mci else []), *([movie] if movie else [])]
        try:
            self._stream(seg, vmaf, mci, movie, bar)
            self.vmaf.append({m: stream.close() for m, stream in vmaf.items()})
            if mci:
                mci.finish()
            if movie:
                movie.close()
        except BaseException:
            for stream in streams:
                stream.kill()
            raise

    def _stream(self, seg: Segment, vmaf: dict, mci: MinterpolateStream | None, movie, bar: tqdm) -> None:
        per_batch = max(1, min(self.cfg.batch_size, MAX_BATCH_PIXELS // (seg.size[0] * seg.size[1])))
        position = 0
        pending: deque[Interval] = deque()  # held back: minterpolate needs the next kept frames first
        last = None
        for batch in batched(interval_frames(seg), per_batch):
            for interval in self._predict(seg, batch):
                if mci:
                    mci.push(interval.img0)
                pending.append(interval)
                last = interval
                while len(pending) > MCI_LOOKAHEAD:
                    position = self._emit(seg, pending.popleft(), position, vmaf, mci, movie, bar)
        if mci:
            mci.push(last.img1)
            mci.close()
        while pending:
            position = self._emit(seg, pending.popleft(), position, vmaf, mci, movie, bar)
        self._emit_kept(last.img1, position, seg, vmaf, mci, movie)

    def _predict(self, seg: Segment, batch: list[tuple]) -> list[Interval]:
        intervals = []
        for img0, truths, img1 in batch:
            cut = change_score(thumbnail(img0), thumbnail(img1)) > self.threshold
            self.cuts += cut
            intervals.append(Interval(img0, truths, img1, cut, {}))
        moving = [i for i in intervals if not i.cut]
        for name, predict in self.predictors.items():
            began = time.perf_counter()
            for t in seg.timesteps:
                preds = predict(np.stack([i.img0 for i in moving]), np.stack([i.img1 for i in moving]), t) \
                    if moving else []
                for interval, pred in zip(moving, preds):
                    interval.preds.setdefault(name, []).append(pred)
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - began
        for interval in intervals:
            if interval.cut:
                held = nearer_frames(interval.img0, interval.img1, seg.step)
                interval.preds = {n: [f.astype(np.float32) / 255.0 for f in held] for n in self.predictors}
        return intervals

    def _emit_kept(self, frame: np.ndarray, position: int, seg: Segment, vmaf: dict, mci, movie) -> None:
        for name, stream in vmaf.items():
            stream.write(mci.pop() if name == SEQUENCE_METHOD else frame, frame)
        if movie and position <= seg.video_pairs * seg.step:
            movie.frame(seg.first + position, frame, {"pretrained": frame, "finetuned": frame}, interpolated=False)

    def _emit(self, seg: Segment, interval: Interval, position: int, vmaf: dict, mci, movie, bar: tqdm) -> int:
        self._emit_kept(interval.img0, position, seg, vmaf, mci, movie)
        frame0 = seg.first + position
        for k, truth in enumerate(interval.truths):
            index, t = frame0 + k + 1, seg.timesteps[k]
            outputs = {n: interval.preds[n][k] for n in self.predictors}
            if mci:
                outputs[SEQUENCE_METHOD] = mci.pop().astype(np.float32) / 255.0
            row = {"position": len(self.frames), "clip": seg.clip.name, "frame": index,
                   "seconds": round(index / float(seg.rate), 4), "cut": interval.cut, "segment": len(self.vmaf),
                   "offset": position + k + 1}
            shown = {}
            for name in self.methods:
                scored = prediction_to_255(outputs[name], self.cfg.round_prediction)
                row.update({f"{name}_{m}": METRICS[m](scored, truth) for m in self.cfg.metrics})
                shown[name] = prediction_to_255(outputs[name], True)
                vmaf[name].write(shown[name], truth)
            key = (seg.clip.name, frame0, frame0 + seg.step, round(t, 6))
            if key in self.shared:
                self.triplet_scores[key] = {f"{n}_{m}": row[f"{n}_{m}"] for n in self.predictors
                                            for m in self.cfg.metrics}
            self.frames.append(row)
            if movie and position + k + 1 <= seg.video_pairs * seg.step:
                movie.frame(index, truth, shown, interpolated=True)
            bar.update(1)
        return position + seg.step

