"""Writing video through FFmpeg (PyAV): the codec table, and a writer that takes RGB frames with timestamps.

The pipeline's one video writer (``interpolate``, and ``evaluate``'s side-by-side videos). Frames go in as RGB
uint8 with presentation timestamps in a rational time base, so the output keeps exact rates (30000/1001 in gives
60000/1001 at ``--multi 2``) and the timing of variable-frame-rate input. The input's audio packets can be copied
into the output unchanged. The same frames always give the same bytes (bit-exact muxing).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from pipeline.core.errors import UserError

log = logging.getLogger("pipeline.footage.encoder")


@dataclass(frozen=True)
class Codec:
    """An FFmpeg encoder with the pixel format and quality we use it at."""

    encoder: str
    pix_fmt: str
    default_crf: int | None  # None: lossless, no quality setting
    crf_range: tuple[int, int] | None
    containers: tuple[str, ...]
    options: tuple[tuple[str, str], ...] = ()


# Defaults measured on the demo clips (tests/benchmarks/bench_video.py, docs/models-and-interpolation.md): the
# default h264 reads back at >= 45 dB PSNR against the frames handed to it. 4:4:4 chroma is what makes that
# possible: 4:2:0 loses more than that in chroma subsampling alone, even losslessly coded.
CODECS = {
    "h264": Codec("libx264", "yuv444p10le", 10, (0, 51), (".mp4", ".mkv", ".mov", ".m4v"), (("preset", "medium"),)),
    "h265": Codec("libx265", "yuv444p10le", 10, (0, 51), (".mp4", ".mkv", ".mov", ".m4v"),
                  (("preset", "medium"), ("x265-params", "log-level=error"))),
    "av1": Codec("libsvtav1", "yuv420p10le", 20, (1, 63), (".mp4", ".mkv"), (("preset", "8"),)),
    "ffv1": Codec("ffv1", "bgr0", None, None, (".mkv",), (("level", "3"), ("slicecrc", "1"))),
}
DEFAULT_CODEC = "h264"
CONTAINERS = sorted({suffix for codec in CODECS.values() for suffix in codec.containers})


def check_codec(name: str, crf: int | None, target: Path) -> Codec:
    """The codec called ``name``, after checking ``crf`` and that ``target``'s container can hold it."""
    if name not in CODECS:
        raise UserError(f"--codec {name}: unknown codec; use one of {', '.join(CODECS)}")
    codec = CODECS[name]
    suffix = target.suffix.lower()
    if suffix not in CONTAINERS:
        raise UserError(f"{target}: cannot write {target.suffix} videos; use one of {', '.join(CONTAINERS)} "
                        "or a folder (no suffix) for PNG frames")
    if suffix not in codec.containers:
        raise UserError(f"{target}: {name} cannot go in a {suffix} file; use {' or '.join(codec.containers)}")
    if crf is not None:
        if codec.crf_range is None:
            raise UserError(f"--crf {crf}: {name} is lossless and takes no --crf")
        low, high = codec.crf_range
        if not low <= crf <= high:
            raise UserError(f"--crf {crf}: out of range for {name} ({low} to {high}; lower is better quality)")
    return codec


class VideoWriter:
    """Encodes (height, width) RGB frames to ``path`` with ``codec``.

    ``time_base`` is the unit of the ``pts`` given to :meth:`write`; ``rate`` the nominal frame rate the
    container states. ``audio`` (streams of the input) are copied: pass their packets to :meth:`copy`.
    """

    def __init__(self, path: Path, codec: Codec, crf: int | None, size: tuple[int, int], rate: Fraction,
                 time_base: Fraction, audio: tuple[av.audio.stream.AudioStream, ...] = ()) -> None:
        self.path, self.codec, self.rate, self.time_base = path, codec, rate, time_base
        self.crf = codec.default_crf if crf is None else crf
        self.deep = max(c.bits for c in av.VideoFormat(codec.pix_fmt).components) > 8
        self.count = 0
        try:
            # bit-exact muxing: no random file id and no date in the header, so the same frames give the same bytes
            # (DVC caches evaluate's videos by their content)
            self.container = av.open(str(path), "w", container_options={"fflags": "+bitexact"})
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
        if self.codec.pix_fmt.startswith("yuv"):
            # The frames are converted from RGB with BT.601 coefficients in limited range; say so in the
            # stream, so players convert back with the same matrix.
            stream.codec_context.colorspace = av.video.reformatter.Colorspace.ITU601
            stream.codec_context.color_range = av.video.reformatter.ColorRange.MPEG
        return stream

    def write(self, rgb: np.ndarray, pts: int) -> None:
        """Encode one (H, W, 3) uint8 RGB frame shown at ``pts`` (in ``time_base`` units)."""
        if self.deep:  # through 16-bit RGB, the exact inverse of how the decoder reads more than 8 bits
            frame = av.VideoFrame.from_ndarray(rgb.astype(np.uint16) * 257, format="rgb48le")
        else:
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
        frame.pts, frame.time_base = pts, self.time_base
        self._mux(self.video.encode(frame))
        self.count += 1

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
