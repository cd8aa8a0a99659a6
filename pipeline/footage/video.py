"""Reading frames: streaming video decoding through FFmpeg (PyAV), images, and the thumbnails frames are compared on.

Every stage reads footage through :func:`decode` (extract through ``Clip.iter_frames``, interpolate directly),
so a clip reads the same everywhere: phone video with a rotation in its display matrix comes out upright,
10-bit video is converted to 8 bits (through 16-bit RGB, rounded; not clipped), and each frame keeps its timestamp
(variable frame rate footage keeps its timing). Stamps come out in display order even where a muxer wrote them in
decode order, and a truncated or damaged file is an error, never a silently shorter clip
(:mod:`pipeline.footage.integrity`). Frames are uint8 HxWx3; OpenCV's BGR order is kept inside the extract stage (it
never needs RGB); ``read_image`` gives RGB to everything downstream.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import av.logging
import cv2
import numpy as np

from pipeline.core.errors import UserError
from pipeline.footage.integrity import Tally, declared, ffmpeg_errors, in_display_order, reports_of

THUMB_SIDE = 160  # longer side of the thumbnails that motion, cut and duplicate scores are computed on
# Lossless PNG, tuned for speed: zlib level 1 with the "up" filter encodes 1.7x faster than OpenCV's adaptive
# filtering and gives smaller files on video frames (measured on the demo clips: 28 vs 50 ms at 1280x720).
PNG_OPTIONS = [cv2.IMWRITE_PNG_COMPRESSION, 1, cv2.IMWRITE_PNG_FILTER, cv2.IMWRITE_PNG_FILTER_UP]
# File signatures of things people rename to .mp4 by mistake, for a message that says what the file is.
SIGNATURES = ((b"\x89PNG\r\n\x1a\n", "a PNG image"), (b"\xff\xd8\xff", "a JPEG image"), (b"GIF8", "a GIF image"),
              (b"BM", "a BMP image"), (b"II*\x00", "a TIFF image"), (b"MM\x00*", "a TIFF image"),
              (b"%PDF", "a PDF document"), (b"PK\x03\x04", "a zip archive"))
IMAGE_DEMUXERS = {"image2", "gif", "webp_pipe", "apng"}  # plus every "*_pipe" demuxer: one picture, not footage
UNSPECIFIED = 2  # FFmpeg's AVCOL_SPC/PRI/TRC_UNSPECIFIED: the stream does not say
RANGE_UNSPECIFIED = 0  # FFmpeg's AVCOL_RANGE_UNSPECIFIED


@dataclass(frozen=True)
class Colour:
    """How a stream's numbers become colours, as FFmpeg numbers them (``pixfmt.h``): the YUV matrix
    (``AVColorSpace``), primaries, transfer characteristic and range (1: limited, 2: full)."""

    matrix: int = UNSPECIFIED
    primaries: int = UNSPECIFIED
    transfer: int = UNSPECIFIED
    range: int = RANGE_UNSPECIFIED
# Containers recognised from their first bytes when FFmpeg cannot open them: a video cut short or damaged.
VIDEO_SIGNATURES = ((re.compile(rb"^.{4}(ftyp|moov|mdat|free|wide)", re.DOTALL), "an MP4/QuickTime video"),
                    (re.compile(rb"^\x1a\x45\xdf\xa3"), "a Matroska/WebM video"),
                    (re.compile(rb"^RIFF.{4}AVI", re.DOTALL), "an AVI video"))


@dataclass(frozen=True)
class VideoInfo:
    """What a video stream says about itself; ``width`` and ``height`` are as displayed (after rotation)."""

    path: Path
    width: int
    height: int
    rate: Fraction  # average frame rate
    time_base: Fraction
    frames: int  # the container's count, or a count of the packets when it does not say
    rotation: int  # degrees counter-clockwise the picture is turned for display
    pix_fmt: str
    has_audio: bool
    colour: Colour = Colour()  # as the stream states it; RGB-coded streams state no matrix and no range


@dataclass(frozen=True)
class Frame:
    """One decoded picture, upright, with its presentation timestamp in the stream's ``time_base``."""

    image: np.ndarray
    pts: int


def check_file(path: Path) -> None:
    """Fail with one line if ``path`` cannot be read or is empty."""
    if not os.access(path, os.R_OK):
        raise UserError(f"{path}: not readable (check its permissions)")
    if path.stat().st_size == 0:
        raise UserError(f"{path}: empty file (0 bytes)")


def what_it_is(path: Path) -> str:
    """A few words on what a file that is no video holds, from its first bytes."""
    with open(path, "rb") as handle:
        head = handle.read(4096)
    for pattern, name in VIDEO_SIGNATURES:
        if pattern.match(head):
            return name
    for magic, name in SIGNATURES:
        if head.startswith(magic):
            return name
    if b"\x00" not in head:
        try:
            head.decode("utf-8")
            return "a text file"
        except UnicodeDecodeError as err:
            if err.start >= len(head) - 4:  # a multi-byte character cut by the 4 kB window
                return "a text file"
    return "data FFmpeg does not recognise"


def open_video(path: Path) -> av.container.InputContainer:
    """``path`` opened for decoding; one line naming what the file really is when it is not a video."""
    check_file(path)
    try:
        container = av.open(str(path), "r", metadata_errors="replace")  # a damaged tag is no reason to refuse
    except av.FFmpegError:
        kind = what_it_is(path)
        if kind.endswith(" video"):
            raise UserError(f"{path}: truncated or damaged: {kind} FFmpeg cannot open") from None
        raise UserError(f"{path}: not a video: it is {kind}") from None
    demuxer = container.format.name
    if demuxer in IMAGE_DEMUXERS or demuxer.endswith("_pipe"):
        container.close()
        raise UserError(f"{path}: not a video: it is {what_it_is(path)} (one picture; FFmpeg reads it as {demuxer})")
    if not container.streams.video:
        kinds = sorted({stream.type for stream in container.streams}) or ["no streams"]
        container.close()
        raise UserError(f"{path}: the container has no video stream (it holds {', '.join(kinds)})")
    return container


def _rate(stream: av.video.stream.VideoStream) -> Fraction:
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    if not rate or rate <= 0:
        raise UserError(f"{stream.container.name}: the video stream states no frame rate")
    return Fraction(rate)


def probe(path: Path) -> VideoInfo:
    """The first video stream's size, rate, time base, rotation, colour tags and frame count (counted if not
    stated)."""
    container = open_video(path)
    try:
        stream = container.streams.video[0]
        rotation, colour = _first_frame_facts(container)
        frames = stream.frames
        if frames <= 0:
            container.seek(0)
            frames = sum(1 for packet in container.demux(stream) if packet.size)
        width, height = stream.codec_context.width, stream.codec_context.height
        if rotation % 180:
            width, height = height, width
        return VideoInfo(path=path, width=width, height=height, rate=_rate(stream),
                         time_base=Fraction(stream.time_base), frames=frames, rotation=rotation,
                         pix_fmt=stream.codec_context.pix_fmt or "unknown", has_audio=bool(container.streams.audio),
                         colour=colour)
    except av.FFmpegError as err:
        raise UserError(f"{path}: truncated or damaged: FFmpeg cannot read it ({err.strerror or err})") from None
    finally:
        container.close()


def _first_frame_facts(container: av.container.InputContainer) -> tuple[int, Colour]:
    """The rotation and colour tags of the first decoded frame (FFmpeg hands the stream's display matrix and
    colour tags to every frame; :func:`decode` converts each frame to RGB by its own tags)."""
    container.seek(0)
    for frame in container.decode(video=0):
        return _quarter_turns(frame.rotation) * 90, frame_colour(frame)
    return 0, Colour()


def frame_colour(frame: av.VideoFrame) -> Colour:
    """``frame``'s colour tags; a frame coded as RGB has no YUV matrix or range to copy."""
    if frame.format.is_rgb:
        return Colour(primaries=frame.color_primaries, transfer=frame.color_trc)
    return Colour(frame.colorspace, frame.color_primaries, frame.color_trc, frame.color_range)


def _quarter_turns(rotation: float | None) -> int:
    return round((rotation or 0) / 90) % 4


def _pictures(container: av.container.InputContainer, streams: list, passthrough: Callable | None,
              tally: Tally) -> Iterator[tuple[av.VideoFrame, int]]:
    """Every decoded picture with its stamp (from the frame rate where it has none), counting the coded pictures
    read in ``tally``; audio packets go to ``passthrough`` as they are read."""
    count = 0
    for packet in container.demux(*streams):
        if packet.stream.type != "video":
            if packet.dts is not None:
                passthrough(packet)
            continue
        tally.packets += bool(packet.size and not packet.is_discard)
        for frame in packet.decode():
            yield frame, frame.pts if frame.pts is not None else round(count * tally.ticks)
            count += 1


def decode(path: Path, fmt: str = "rgb24",
           passthrough: Callable[[av.Packet], None] | None = None) -> Iterator[Frame]:
    """Decode ``path`` one frame at a time (``fmt``: ``rgb24`` or ``bgr24``), upright, with timestamps in
    display order; memory does not grow with the clip's length. Every audio packet goes to ``passthrough`` (if
    given) as it is read. A frame without a timestamp gets one from the frame rate. A truncated or damaged file
    (see :mod:`pipeline.footage.integrity`) raises :class:`UserError` after the frames that did decode."""
    with ffmpeg_errors() as logs:
        container = open_video(path)
        video = container.streams.video[0]
        try:
            video.thread_type = "AUTO"
            ticks = 1 / (_rate(video) * Fraction(video.time_base))  # time base units per frame
            tally = Tally(path, declared(container, video, ticks), ticks, Fraction(video.time_base))
            streams = [video, *container.streams.audio] if passthrough else [video]
            try:
                for frame, pts in in_display_order(_pictures(container, streams, passthrough, tally),
                                                   video.codec_context):
                    tally.picture(pts, frame.duration or round(ticks))
                    yield Frame(_upright(_pixels(frame, fmt), frame.rotation), pts)
            except av.FFmpegError as err:
                raise UserError(tally.problem(f"FFmpeg: {err.strerror or err}")) from None
            tally.finish(reports_of(logs, container.format.name))
        finally:
            close_decoder(container, video)


def close_decoder(container: av.container.InputContainer, video: av.video.stream.VideoStream) -> None:
    """Close ``container``, which ``video``'s frame-threaded decoder reads, without the hang that PyAV's log
    callback and FFmpeg's decoder threads can cause together.

    While :func:`~pipeline.footage.integrity.ffmpeg_errors` has FFmpeg's logging on, every message goes through a
    callback that takes Python's GIL. Freeing a decoder waits, GIL held, for its threads to finish the pictures in
    flight: a thread that logs meanwhile (a damaged packet, a picture cut short) waits for the GIL, and both wait
    for ever, the main thread in ``avcodec_free_context`` and the decoder thread in PyAV's log callback. A reader
    that stops before the end (evaluate takes a few frames of a clip) frees a decoder with pictures in flight. So
    logging goes off first (FFmpeg's messages then bypass Python), a decoder thread already waiting in the callback
    gets the GIL while this one sleeps, and the decoder is drained (the GIL released) so no thread is at work when
    it is freed."""
    av.logging.set_level(None)
    time.sleep(sys.getswitchinterval())  # a thread waiting for the GIL gets it within this
    with contextlib.suppress(av.FFmpegError):  # the end of the stream, or a damaged picture: nothing to keep
        video.codec_context.decode(None)
    container.close()


def _pixels(frame: av.VideoFrame, fmt: str) -> np.ndarray:
    """``frame`` as uint8 ``fmt`` (rgb24 or bgr24). Frames of more than 8 bits go through 16-bit RGB and are
    rounded here: FFmpeg's direct 10-bit to 8-bit conversion comes out up to 3.6 levels darker."""
    if max(component.bits for component in frame.format.components) <= 8:
        return frame.to_ndarray(format=fmt)
    deep = frame.to_ndarray(format="rgb48le" if fmt == "rgb24" else "bgr48le").astype(np.uint32)
    return ((deep * 255 + 32767) // 65535).astype(np.uint8)


def _upright(image: np.ndarray, rotation: float | None) -> np.ndarray:
    """``image`` turned as the display matrix says (``rotation`` degrees counter-clockwise)."""
    turns = _quarter_turns(rotation)
    return np.ascontiguousarray(np.rot90(image, turns)) if turns else image


def iter_video_bgr(path: Path) -> Iterator[np.ndarray]:
    """Decode ``path`` as BGR frames (OpenCV's order), one at a time; see :func:`decode`."""
    for frame in decode(path, "bgr24"):
        yield frame.image


def read_bgr(path: Path) -> np.ndarray:
    check_file(path)
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise UserError(f"{path}: cannot be read as an image (corrupt or unsupported format)")
    return image


def thumbnail(frame: np.ndarray) -> np.ndarray:
    """A small uint8 copy for cheap frame comparisons (bilinear to twice the size, then area-averaged)."""
    height, width = frame.shape[:2]
    factor = THUMB_SIDE / max(height, width)
    if factor >= 1:
        return frame
    size = (max(1, round(width * factor)), max(1, round(height * factor)))
    if factor < 0.5:
        frame = cv2.resize(frame, (2 * size[0], 2 * size[1]), interpolation=cv2.INTER_LINEAR)
    return cv2.resize(frame, size, interpolation=cv2.INTER_AREA)


def mean_abs_diff(a: np.ndarray, b: np.ndarray) -> float:
    """Mean |a - b| of two uint8 images, in [0, 1]."""
    return cv2.norm(a, b, cv2.NORM_L1) / (a.size * 255.0)


def change_score(thumb0: np.ndarray, thumb1: np.ndarray) -> float:
    """How much two neighbouring frames differ, from their thumbnails (mean |difference|, in [0, 1]).

    Extract's ``cut_score`` is the largest of these inside a window and interpolate scores each pair of
    neighbours with it; above ``extract.cut_threshold`` the two frames belong to different shots."""
    return mean_abs_diff(thumb0, thumb1)


def nearer_frames(rgb0: np.ndarray, rgb1: np.ndarray, multi: int) -> list[np.ndarray]:
    """Across a scene cut: each of the ``multi - 1`` in-between positions repeats the nearer input frame (I0 at
    the middle), as ``interpolate`` does and the rebuilt test segments of ``evaluate`` do."""
    return [rgb0 if 2 * k <= multi else rgb1 for k in range(1, multi)]


def read_image(path: Path) -> np.ndarray:
    """An image file as RGB."""
    return cv2.cvtColor(read_bgr(path), cv2.COLOR_BGR2RGB)


def write_bgr(path: Path, bgr: np.ndarray) -> None:
    """Write ``bgr`` losslessly (PNG)."""
    if not cv2.imwrite(str(path), bgr, PNG_OPTIONS):
        raise OSError(f"could not write {path}")
