"""Writing video through FFmpeg (PyAV): the codec settings, and a writer that takes RGB frames with timestamps.

The pipeline's one video writer (``interpolate``, and ``evaluate``'s side-by-side videos). Frames go in as RGB
uint8 with presentation timestamps in a rational time base, so the output keeps exact rates (30000/1001 in gives
60000/1001 at ``--multi 2``) and the timing of variable-frame-rate input. The input's audio packets can be copied
into the output unchanged. The same frames always give the same bytes (bit-exact muxing).

Each codec has one setting per quality: ``delivery`` (8-bit 4:2:0 H.264 High by default, what browsers, phones
and QuickTime play; MP4 files carry their index first, so playback starts before the whole file has arrived)
and ``master`` (lossless coding, for editors and FFmpeg). YUV streams state their colour tags (matrix,
primaries, transfer, range), copied from the input where it states them, else BT.709 limited range, and the
frames are converted from RGB with that matrix, so players convert them back to the same colours.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from pipeline.core.errors import UserError
from pipeline.footage.video import RANGE_UNSPECIFIED, UNSPECIFIED, Colour

log = logging.getLogger("pipeline.footage.encoder")

DELIVERY, MASTER = "delivery", "master"
QUALITIES = (DELIVERY, MASTER)
MP4_LIKE = (".mp4", ".mov", ".m4v")  # ISO media files: the index (moov) goes first (faststart)
BT709_MATRIX, LIMITED = 1, 1  # FFmpeg's AVCOL_SPC_BT709 (also AVCOL_PRI_BT709, AVCOL_TRC_BT709), AVCOL_RANGE_MPEG
BT709 = Colour(BT709_MATRIX, BT709_MATRIX, BT709_MATRIX, LIMITED)
# FFmpeg's YUV matrices (AVColorSpace) that swscale converts with, to swscale's numbers for them (SWS_CS_*):
# BT.709, FCC, BT.470BG and SMPTE 170M (both BT.601), SMPTE 240M, BT.2020 non-constant luminance.
SWS_MATRIX = {1: 1, 4: 4, 5: 5, 6: 5, 7: 7, 9: 9}


@dataclass(frozen=True)
class Codec:
    """An FFmpeg encoder with the pixel format and quality we use it at."""

    encoder: str
    pix_fmt: str
    default_crf: int | None  # None: lossless, no quality setting
    crf_range: tuple[int, int] | None
    containers: tuple[str, ...]
    options: tuple[tuple[str, str], ...] = ()
    mp4_tag: str | None = None  # the codec tag in MP4-like files, when FFmpeg's default is not what players want


# delivery: 4:2:0, what every browser and phone decodes, halves the colour resolution; CRF 16 is a little finer
# than x264's usual "visually lossless" 18, so the coding adds little to that loss (how much of the fine-tune's
# gain survives: tests/benchmarks/bench_delivery.py). master: lossless coding; 10-bit 4:4:4 YUV has room for
# every 8-bit RGB colour, so frames read back as written (exactly, in limited range; FFV1 stores the RGB itself).
CODECS: dict[str, dict[str, Codec]] = {
    "h264": {
        # CRF 0 is x264's lossless mode, which the High profile (what players decode) does not allow
        DELIVERY: Codec("libx264", "yuv420p", 16, (1, 51), (*MP4_LIKE, ".mkv"),
                        (("preset", "medium"), ("profile", "high"))),
        MASTER: Codec("libx264", "yuv444p10le", None, None, (*MP4_LIKE, ".mkv"), (("preset", "medium"), ("qp", "0"))),
    },
    "h265": {  # hvc1: the tag QuickTime and Safari require of HEVC in MP4
        DELIVERY: Codec("libx265", "yuv420p", 18, (0, 51), (*MP4_LIKE, ".mkv"),
                        (("preset", "medium"), ("x265-params", "log-level=error")), "hvc1"),
        MASTER: Codec("libx265", "yuv444p10le", None, None, (*MP4_LIKE, ".mkv"),
                      (("preset", "medium"), ("x265-params", "lossless=1:log-level=error")), "hvc1"),
    },
    "av1": {DELIVERY: Codec("libsvtav1", "yuv420p10le", 20, (1, 63), (".mp4", ".mkv"), (("preset", "8"),))},
    "ffv1": {MASTER: Codec("ffv1", "bgr0", None, None, (".mkv",), (("level", "3"), ("slicecrc", "1")))},
}
DEFAULT_CODEC = "h264"
CONTAINERS = sorted({suffix for settings in CODECS.values() for codec in settings.values()
                     for suffix in codec.containers})
WHY_NOT = {("av1", MASTER): "SVT-AV1 codes 4:2:0 only", ("ffv1", DELIVERY): "FFV1 is lossless, for editors"}


def check_codec(name: str, quality: str | None, crf: int | None, target: Path) -> Codec:
    """The codec called ``name`` at ``quality`` (None: delivery where the codec has it), after checking ``crf`` and
    that ``target``'s container can hold it."""
    if name not in CODECS:
        raise UserError(f"--codec {name}: unknown codec; use one of {', '.join(CODECS)}")
    settings = CODECS[name]
    quality = quality or next(iter(settings))
    if quality not in settings:
        others = [other for other, qualities in CODECS.items() if quality in qualities]
        raise UserError(f"--quality {quality}: {name} has no {quality} setting ({WHY_NOT[name, quality]}); "
                        f"use --codec {' or '.join(others)}")
    codec = settings[quality]
    suffix = target.suffix.lower()
    if suffix not in CONTAINERS:
        raise UserError(f"{target}: cannot write {target.suffix} videos; use one of {', '.join(CONTAINERS)} "
                        "or a folder (no suffix) for PNG frames")
    if suffix not in codec.containers:
        raise UserError(f"{target}: {name} cannot go in a {suffix} file; use {' or '.join(codec.containers)}")
    if crf is not None:
        if codec.crf_range is None:
            raise UserError(f"--crf {crf}: {name} is lossless at --quality {quality} and takes no --crf")
        low, high = codec.crf_range
        if not low <= crf <= high:
            lossless = f"; lossless: --quality {MASTER}" if crf < low and MASTER in CODECS[name] else ""
            raise UserError(f"--crf {crf}: out of range for {name} ({low} to {high}; lower is better quality"
                            f"{lossless})")
    return codec


def output_colour(stated: Colour) -> Colour:
    """The colour tags to write for an input that states ``stated``: each one it states, else BT.709's, and
    limited range; a matrix swscale cannot convert with (or none) becomes BT.709."""
    return Colour(matrix=stated.matrix if stated.matrix in SWS_MATRIX else BT709.matrix,
                  primaries=BT709.primaries if stated.primaries == UNSPECIFIED else stated.primaries,
                  transfer=BT709.transfer if stated.transfer == UNSPECIFIED else stated.transfer,
                  range=LIMITED if stated.range == RANGE_UNSPECIFIED else stated.range)


class VideoWriter:
    """Encodes (height, width) RGB frames to ``path`` with ``codec``.

    ``time_base`` is the unit of the ``pts`` given to :meth:`write`; ``rate`` the nominal frame rate the
    container states. ``audio`` (streams of the input) are copied: pass their packets to :meth:`copy`.
    ``colour``: the tags a YUV stream states and the matrix and range its frames are converted with.
    """

    def __init__(self, path: Path, codec: Codec, crf: int | None, size: tuple[int, int], rate: Fraction,
                 time_base: Fraction, audio: tuple[av.audio.stream.AudioStream, ...] = (),
                 colour: Colour = BT709) -> None:
        self.path, self.codec, self.rate, self.time_base = path, codec, rate, time_base
        self.crf = codec.default_crf if crf is None else crf
        self.deep = max(c.bits for c in av.VideoFormat(codec.pix_fmt).components) > 8
        self.colour = None if av.VideoFormat(codec.pix_fmt).is_rgb else colour
        self.count = 0
        # bit-exact muxing: no random file id and no date in the header, so the same frames give the same bytes
        # (DVC caches evaluate's videos by their content); faststart: the index before the data
        options = {"fflags": "+bitexact"}
        if path.suffix.lower() in MP4_LIKE:
            options["movflags"] = "+faststart"
        try:
            self.container = av.open(str(path), "w", container_options=options)
        except (av.FFmpegError, OSError) as err:
            raise UserError(f"{path}: cannot be written ({getattr(err, 'strerror', None) or err})") from None
        self.video = self._add_video(size[1], size[0])
        self.audio = {}
        try:
            for stream in audio:
                self.audio[stream.index] = self.container.add_stream_from_template(stream)
        except (av.FFmpegError, ValueError) as err:
            self.container.close()
            raise UserError(f"{path}: the input's audio ({audio[0].codec_context.name}) cannot be copied into "
                            f"a {path.suffix} file ({err}); use .mkv") from None

    def _add_video(self, width: int, height: int) -> av.video.stream.VideoStream:
        stream = self.container.add_stream(self.codec.encoder, rate=self.rate)
        stream.width, stream.height, stream.pix_fmt = width, height, self.codec.pix_fmt
        stream.time_base = self.time_base
        stream.codec_context.time_base = self.time_base
        options = dict(self.codec.options)
        if self.crf is not None:
            options["crf"] = str(self.crf)
        stream.options = options
        if self.codec.mp4_tag and self.path.suffix.lower() in MP4_LIKE:
            stream.codec_context.codec_tag = self.codec.mp4_tag
        if self.colour is not None:
            context = stream.codec_context
            context.colorspace, context.color_primaries = self.colour.matrix, self.colour.primaries
            context.color_trc, context.color_range = self.colour.transfer, self.colour.range
        return stream

    def write(self, rgb: np.ndarray, pts: int) -> None:
        """Encode one (H, W, 3) uint8 RGB frame shown at ``pts`` (in ``time_base`` units)."""
        if self.deep:  # through 16-bit RGB, the exact inverse of how the decoder reads more than 8 bits
            frame = av.VideoFrame.from_ndarray(rgb.astype(np.uint16) * 257, format="rgb48le")
        else:
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
        if self.colour is not None:
            frame = self._to_yuv(frame)
        frame.pts, frame.time_base = pts, self.time_base
        self._mux(self.video.encode(frame))
        self.count += 1

    def _to_yuv(self, frame: av.VideoFrame) -> av.VideoFrame:
        """``frame`` in the codec's YUV format, converted with the stated matrix and range, and so tagged."""
        colour = self.colour
        yuv = frame.reformat(format=self.codec.pix_fmt, dst_colorspace=SWS_MATRIX[colour.matrix],
                             dst_color_range=colour.range)
        yuv.colorspace, yuv.color_primaries, yuv.color_trc = colour.matrix, colour.primaries, colour.transfer
        return yuv

    def copy(self, packet: av.Packet) -> None:
        """Copy one packet of an input audio stream unchanged."""
        stream = self.audio.get(packet.stream.index)
        if stream is not None:
            packet.stream = stream
            self._mux([packet])

    def _mux(self, packets: list[av.Packet]) -> None:
        try:
            self.container.mux(packets)
        except av.FFmpegError as err:
            raise UserError(f"{self.path}: writing failed ({err.strerror or err})") from None

    def abort(self) -> None:
        """Close the file without flushing the encoder (after a failure; the caller removes the file)."""
        try:
            self.container.close()
        except av.FFmpegError:
            pass

    def close(self) -> None:
        """Flush the encoder and finish the file."""
        try:
            self._mux(self.video.encode(None))
        finally:
            self.container.close()
