"""Each clip's test segment rebuilt the way a user would use a method, and scored frame by frame and with VMAF.

Every ``2 x gap``-th frame of the segment is kept (``gap``: the smallest of the test split) and each method
predicts the frames between (t = k / (2 gap)), as ``python -m pipeline.interpolate`` would on a video at half
(or a quarter of) the rate: across a scene cut (the two kept frames' change score above
``extract.cut_threshold``) the in-between frames repeat the nearer kept frame, for every method but
``ffmpeg_mci``, which runs as FFmpeg users run it, over the whole sequence with its own scene detection.

Which segments, and their frames: :mod:`pipeline.scoring.segment_plan`. A rebuilt interval that is also a kept test
triplet (same frames, same t) is predicted once: its triplet scores are the rebuilt frame's scores, so no model
runs twice over one pair. Everything streams: one batch of intervals is held at a time.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from pipeline.core.params import Params
from pipeline.footage.video import change_score, nearer_frames, thumbnail
from pipeline.scoring.batches import MAX_BATCH_PIXELS, Predictor
from pipeline.scoring.ffmpeg import MinterpolateStream, VmafStream
from pipeline.scoring.metrics import METRICS, prediction_to_255
from pipeline.scoring.segment_plan import Key, Segment, interval_frames
from pipeline.scoring.watch import ClipMovie

# Intervals held back before their frames are taken from minterpolate: the filter gives out interval i only
# once kept frame i + 2 (one frame in 2) or i + 3 (one in 4) has gone in, so an interval waits until the first
# kept frame of the third interval after it has been pushed (fewer deadlock on the pipe).
MCI_LOOKAHEAD = 3

SEQUENCE_METHOD = "ffmpeg_mci"  # the method that interpolates a whole sequence at once, not pair by pair


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


@dataclass
class Rebuilt:
    """What rebuilding the segments gives: one row per interpolated frame (where it is, each method's metrics),
    each segment's VMAF per method for every frame (kept frames included), the scores of the kept test triplets
    that were rebuilt intervals, and the number of intervals across a scene cut."""

    methods: tuple[str, ...]
    frames: list[dict] = field(default_factory=list)
    vmaf: list[dict[str, np.ndarray]] = field(default_factory=list)
    triplet_scores: dict[Key, dict[str, float]] = field(default_factory=dict)
    cuts: int = 0


@dataclass
class Streams:
    """The outputs one segment's frames go to, in order: a VMAF stream per method, minterpolate (when
    ``ffmpeg_mci`` is compared), the side-by-side movie (when the segment has one) and the progress bar."""

    seg: Segment
    vmaf: dict[str, VmafStream]
    mci: MinterpolateStream | None
    movie: ClipMovie | None
    bar: tqdm

    def kill(self) -> None:
        for stream in [*self.vmaf.values(), *([self.mci] if self.mci else []), *([self.movie] if self.movie else [])]:
            stream.kill()

    def close(self) -> dict[str, np.ndarray]:
        """Finish every stream; each method's VMAF of every frame."""
        scores = {m: stream.close() for m, stream in self.vmaf.items()}
        if self.mci:
            self.mci.finish()
        if self.movie:
            self.movie.close()
        return scores


class Rebuilder:
    """Rebuilds segments with every method and collects their scores (see the module's docstring)."""

    def __init__(self, predictors: dict[str, Predictor], params: Params, shared: set[Key],
                 videos: Path | None, previews: Path | None, seconds: dict[str, float]) -> None:
        self.predictors = {n: p for n, p in predictors.items() if n != SEQUENCE_METHOD}
        self.methods = tuple(predictors)
        self.cfg = params.evaluate
        self.threshold = params.extract.cut_threshold
        self.shared, self.videos, self.previews, self.seconds = shared, videos, previews, seconds

    def run(self, segments: list[Segment]) -> Rebuilt:
        result = Rebuilt(self.methods)
        total = sum(s.pairs * (s.step - 1) for s in segments)
        with tqdm(total=total, desc="segments", unit="frame") as bar:
            for seg in segments:
                self.rebuild(seg, bar, result)
        return result

    def rebuild(self, seg: Segment, bar: tqdm, result: Rebuilt) -> None:
        height, width = seg.size
        streams = Streams(seg, {m: VmafStream(width, height) for m in self.methods},
                          MinterpolateStream(width, height, seg.step) if SEQUENCE_METHOD in self.methods else None,
                          ClipMovie(seg, self.cfg.videos, self.videos, self.previews) if seg.video_pairs else None,
                          bar)
        try:
            self._stream(streams, result)
            result.vmaf.append(streams.close())
        except BaseException:
            streams.kill()
            raise

    def _stream(self, streams: Streams, result: Rebuilt) -> None:
        seg, mci = streams.seg, streams.mci
        per_batch = max(1, min(self.cfg.batch_size, MAX_BATCH_PIXELS // (seg.size[0] * seg.size[1])))
        position = 0
        pending: deque[Interval] = deque()  # held back: minterpolate needs the next kept frames first
        last = None
        for batch in batched(interval_frames(seg), per_batch):
            for interval in self._predict(seg, batch, result):
                if mci:
                    mci.push(interval.img0)
                pending.append(interval)
                last = interval
                while len(pending) > MCI_LOOKAHEAD:
                    position = self._emit(streams, pending.popleft(), position, result)
        if mci:
            mci.push(last.img1)
            mci.close()
        while pending:
            position = self._emit(streams, pending.popleft(), position, result)
        self._emit_kept(streams, last.img1, position)

    def _predict(self, seg: Segment, batch: list[tuple], result: Rebuilt) -> list[Interval]:
        intervals = []
        for img0, truths, img1 in batch:
            cut = change_score(thumbnail(img0), thumbnail(img1)) > self.threshold
            result.cuts += cut
            intervals.append(Interval(img0, truths, img1, cut, {}))
        moving = [i for i in intervals if not i.cut]
        for name, predict in self.predictors.items():
            began = time.perf_counter()
            for t in seg.timesteps:
                preds = predict(np.stack([i.img0 for i in moving]), np.stack([i.img1 for i in moving]), t) \
                    if moving else []
                for interval, pred in zip(moving, preds, strict=True):
                    interval.preds.setdefault(name, []).append(pred)
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - began
        for interval in intervals:
            if interval.cut:
                held = nearer_frames(interval.img0, interval.img1, seg.step)
                interval.preds = {n: [f.astype(np.float32) / 255.0 for f in held] for n in self.predictors}
        return intervals

    def _emit_kept(self, streams: Streams, frame: np.ndarray, position: int) -> None:
        for name, stream in streams.vmaf.items():
            stream.write(streams.mci.pop() if name == SEQUENCE_METHOD else frame, frame)
        if streams.movie and position <= streams.seg.video_pairs * streams.seg.step:
            streams.movie.frame(streams.seg.first + position, frame, {"pretrained": frame, "finetuned": frame},
                                interpolated=False)

    def _emit(self, streams: Streams, interval: Interval, position: int, result: Rebuilt) -> int:
        """Score and write out one interval (its kept first frame, then the frames between); the position of
        the next interval's first frame in the segment."""
        seg = streams.seg
        self._emit_kept(streams, interval.img0, position)
        frame0 = seg.first + position
        for k, truth in enumerate(interval.truths):
            index, t = frame0 + k + 1, seg.timesteps[k]
            outputs = {n: interval.preds[n][k] for n in self.predictors}
            if streams.mci:
                outputs[SEQUENCE_METHOD] = streams.mci.pop().astype(np.float32) / 255.0
            row = {"position": len(result.frames), "clip": seg.clip.name, "frame": index,
                   "seconds": round(index / float(seg.rate), 4), "cut": interval.cut, "segment": len(result.vmaf),
                   "offset": position + k + 1}
            shown = {}
            for name in self.methods:
                scored = prediction_to_255(outputs[name], self.cfg.round_prediction)
                row.update({f"{name}_{m}": METRICS[m](scored, truth) for m in self.cfg.metrics})
                shown[name] = prediction_to_255(outputs[name], True)
                streams.vmaf[name].write(shown[name], truth)
            key = (seg.clip.name, frame0, frame0 + seg.step, round(t, 6))
            if key in self.shared:
                result.triplet_scores[key] = {f"{n}_{m}": row[f"{n}_{m}"] for n in self.predictors
                                              for m in self.cfg.metrics}
            result.frames.append(row)
            if streams.movie and position + k + 1 <= seg.video_pairs * seg.step:
                streams.movie.frame(index, truth, shown, interpolated=True)
            streams.bar.update(1)
        return position + seg.step
