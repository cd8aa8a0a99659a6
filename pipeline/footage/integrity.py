"""Whether a decoded video is whole, and its stamps in display order.

A video is truncated or damaged, one error line naming the file, when decoding fails, its demuxer reports
damage, its stamps do not increase, or its pictures stop more than half a frame before the end its container
declares while fewer than the declared frames came out. Coded pictures that give no picture are only logged: a
clip cut out of a longer one without re-encoding often starts before its first keyframe, and its first pictures
cannot be decoded; the pictures that do come out keep their own times, so extract drops any triplet across a gap
(``uneven_timing``). Frames an encoder
left out on purpose (variable frame rate; the empty chunks of AVI) are no shortfall: the time they stand for is
covered by the frames around them.
"""

from __future__ import annotations

import heapq
import logging
import re
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import av.logging

from pipeline.core.errors import UserError

log = logging.getLogger(__name__)

# Decoded pictures held back to hand out their stamps in display order: H.264 and HEVC keep at most 16 pictures
# for reordering, so a picture is decoded at most 16 places from where it is shown, and a stamp written in decode
# order lands at most 16 places from its picture.
REORDER_WINDOW = 17
MATROSKA_DURATION = re.compile(r"(\d+):(\d\d):(\d\d(?:\.\d+)?)")  # the DURATION tag, e.g. 00:00:01.600000000


@dataclass(frozen=True)
class Declared:
    """What a container says of its video stream: ``frames`` (0 where it does not say) and ``end``, where the
    stream ends in its time base (None where it does not say)."""

    frames: int
    end: int | None


def declared(container: av.container.InputContainer, stream: av.video.stream.VideoStream,
             ticks: Fraction) -> Declared:
    """The frame count and end the container states, ``ticks`` time base units per frame. MP4 and AVI state a
    duration and a count (AVI's count includes the frames left out on purpose); Matroska and WebM a DURATION
    tag, which is where the stream ends; other containers with nothing else their own duration."""
    time_base = Fraction(stream.time_base)
    start = stream.start_time or 0
    ends = []
    if stream.duration:
        ends.append(start + stream.duration)
    if stream.frames > 0:
        ends.append(start + round(stream.frames * ticks))
    tag = MATROSKA_DURATION.fullmatch(stream.metadata.get("DURATION", ""))
    if tag:
        ends.append(round((int(tag[1]) * 3600 + int(tag[2]) * 60 + Fraction(tag[3])) / time_base))
    elif not ends and len(container.streams) == 1 and container.duration:
        ends.append(round(Fraction(container.duration, av.time_base) / time_base))
    return Declared(max(stream.frames, 0), max(ends) if ends else None)


@dataclass
class Tally:
    """What came out of the video at ``path`` so far, against what its container declares: coded pictures read
    (packets with data), pictures handed out, the last one's stamp and where they end (stream time base)."""

    path: Path
    declared: Declared
    ticks: Fraction  # time base units per frame
    time_base: Fraction
    packets: int = 0
    frames: int = 0
    last: int | None = None
    end: int | None = None

    def picture(self, pts: int, duration: int) -> None:
        """Count a picture handed out at ``pts``; one whose stamp does not follow the last one's is damage."""
        if self.last is not None and pts <= self.last:
            raise UserError(f"{self.path}: damaged: timestamps do not increase (frame {self.frames - 1} at "
                            f"{self.last}, frame {self.frames} at {pts}, in units of {self.time_base})")
        self.frames += 1
        self.last = pts
        self.end = pts + duration if self.end is None else max(self.end, pts + duration)

    def problem(self, why: str = "") -> str | None:
        """The error line when decoding failed or FFmpeg reported damage (``why``) or the pictures stop short of
        the declared end; None when the video is whole."""
        end = self.end if self.end is not None else 0
        short = (self.declared.end is not None and self.declared.end - end > self.ticks / 2
                 and not (self.declared.frames and self.frames >= self.declared.frames))
        lost = self.packets - self.frames
        if not (short or why):
            return None
        details = [f"{lost} coded picture(s) gave none"] if lost > 0 else []
        details.append(f"they end at {float(end * self.time_base):.2f} s")
        if self.declared.end is not None:
            details[-1] += f", the container declares {float(self.declared.end * self.time_base):.2f} s"
        return (f"{self.path}: truncated or damaged: decoded {self.frames}{self._of()} frames "
                f"({'; '.join(details + ([why] if why else []))})")

    def _of(self) -> str:
        if self.declared.frames:
            return f" of {self.declared.frames}"
        if self.declared.end is not None:
            return f" of about {round(self.declared.end / self.ticks)}"
        return f" of {self.packets}" if self.packets > self.frames else ""

    def finish(self, reports: list[str]) -> None:
        """Raise :class:`UserError` unless the whole video came out; ``reports``: the demuxer's error lines."""
        problem = self.problem(f"FFmpeg: {reports[0]}" if reports else "")
        if problem:
            raise UserError(problem)
        if self.frames == 0:
            raise UserError(f"{self.path}: no frame could be decoded (empty or corrupt video)")
        if self.packets > self.frames:
            log.warning("%s: %d of %d coded pictures gave no picture (a clip cut before its first keyframe, or "
                        "damage); the %d that did are used at their own times", self.path,
                        self.packets - self.frames, self.packets, self.frames)


def in_display_order(pictures: Iterator[tuple[av.VideoFrame, int]],
                     context: av.video.codeccontext.VideoCodecContext) -> Iterator[tuple[av.VideoFrame, int]]:
    """The pictures in the decoder's order (display order) with their stamps sorted: where a muxer stamped the
    packets in decode order, a B-frame stream's pictures come out right but their stamps shuffled (0, 3, 2, 4,
    1 periods), which the smallest stamp of the next :data:`REORDER_WINDOW` pictures puts right. Pictures are held
    only while the decoder reorders (a stream with B-frames); elsewhere they pass at once."""
    held: deque[av.VideoFrame] = deque()
    stamps: list[int] = []
    for frame, pts in pictures:
        held.append(frame)
        heapq.heappush(stamps, pts)
        while len(held) > (REORDER_WINDOW if context.has_b_frames else 0):
            yield held.popleft(), heapq.heappop(stamps)
    while held:
        yield held.popleft(), heapq.heappop(stamps)


@contextmanager
def ffmpeg_errors() -> Iterator[list[tuple[int, str, str]]]:
    """FFmpeg's error-level log lines of this thread while the block runs, as (level, source, message); FFmpeg's
    logging is switched on at that level for the while (PyAV leaves it off)."""
    previous = av.logging.get_level()
    av.logging.set_level(av.logging.ERROR if previous is None else max(previous, av.logging.ERROR))
    try:
        with av.logging.Capture(local=True) as logs:
            yield logs
    finally:
        av.logging.set_level(previous)


def reports_of(logs: list[tuple[int, str, str]], source: str) -> list[str]:
    """The error lines of ``logs`` that ``source`` (a demuxer's or decoder's name) wrote."""
    return [message.strip() for level, name, message in logs if name == source and level <= av.logging.ERROR]
