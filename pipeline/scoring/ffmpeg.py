"""FFmpeg's own motion-compensated interpolation (``minterpolate``) and VMAF (``libvmaf``), through the ``ffmpeg``
program of the ``imageio-ffmpeg`` wheel.

That one static build does both jobs, offline: its ``libvmaf`` has the ``vmaf_v0.6.1`` model compiled in (no model
file is read or downloaded) and its ``minterpolate`` is the filter video people reach for before RIFE. (PyAV's
FFmpeg has ``minterpolate`` but no ``libvmaf``.) Frames travel as raw RGB through pipes, never through files, and
every process is streamed: memory does not grow with the length of a sequence.

Both filters work in YUV. Frames are converted to 4:4:4 (no chroma subsampling; an RGB -> YUV -> RGB round trip of
an 8-bit frame alone reads back at about 53 dB PSNR, far above the errors compared here).
"""

from __future__ import annotations

import json
import os
import queue
import subprocess
import tempfile
import threading
from collections.abc import Iterable
from fractions import Fraction
from pathlib import Path

import numpy as np

from pipeline.core.errors import UserError

YUV = "format=yuv444p"
VMAF_MODEL = "version=vmaf_v0.6.1"  # libvmaf's default model, built into the library
MAX_DENOMINATOR = 64  # timesteps are k / (2 gap); the output rate of minterpolate is the denominator
FIXED = ["-hide_banner", "-nostdin", "-loglevel", "error"]
# Frames per second stated for the raw frames in the pipes. Neither filter's result depends on it, but FFmpeg's
# raw-video reader does: at 1 frame per second it cuts a pipe's frames into wrong-sized packets.
PIPE_RATE = 25


def ffmpeg_exe() -> str:
    """Path of the ``ffmpeg`` program shipped in the imageio-ffmpeg wheel."""
    try:
        import imageio_ffmpeg
        return imageio_ffmpeg.get_ffmpeg_exe()
    except (ImportError, RuntimeError) as err:
        raise UserError(f"the ffmpeg program of imageio-ffmpeg is missing ({err}); run `make setup`") from None


def raw_input(width: int, height: int, source: str, rate: int = PIPE_RATE) -> list[str]:
    """Arguments reading raw RGB24 frames of ``width`` x ``height`` from ``source`` (``pipe:N``)."""
    return ["-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{width}x{height}", "-framerate", str(rate), "-i", source]


RAW_OUTPUT = ["-f", "rawvideo", "-pix_fmt", "rgb24", "pipe:1"]


def mci_filter(steps: int) -> str:
    """``minterpolate`` in motion-compensated mode (its defaults otherwise: overlapped-block compensation,
    bilateral motion search, scene-change detection), producing ``steps`` frames per input interval."""
    return f"{YUV},minterpolate=fps={PIPE_RATE * steps}:mi_mode=mci,format=rgb24"


def _failure(what: str, err: bytes | str) -> RuntimeError:
    text = err.decode(errors="replace") if isinstance(err, bytes) else err
    return RuntimeError(f"ffmpeg {what} failed: {text.strip()[-500:] or 'no message'}")


def minterpolate_pair(img0: np.ndarray, img1: np.ndarray, timestep: float) -> np.ndarray:
    """The frame at ``timestep`` between two HxWx3 uint8 RGB frames, by ``minterpolate`` given these two frames
    only (as every method is on a triplet); float32 in [0, 1]. The filter emits an interval once it has seen
    the frame after it, so I1 is sent twice."""
    step = Fraction(timestep).limit_denominator(MAX_DENOMINATOR)
    height, width = img0.shape[:2]
    command = [ffmpeg_exe(), *FIXED, *raw_input(width, height, "pipe:0"), "-vf", mci_filter(step.denominator),
               *RAW_OUTPUT]
    data = b"".join(np.ascontiguousarray(f).tobytes() for f in (img0, img1, img1))
    done = subprocess.run(command, input=data, capture_output=True)
    if done.returncode:
        raise _failure("minterpolate", done.stderr)
    frames = np.frombuffer(done.stdout, np.uint8).reshape(-1, height, width, 3)
    return frames[step.numerator].astype(np.float32) / 255.0


def ffmpeg_mci(img0: np.ndarray, img1: np.ndarray, timestep: float) -> np.ndarray:
    """:func:`minterpolate_pair` for each pair of a (B,H,W,3) batch."""
    return np.stack([minterpolate_pair(a, b, timestep) for a, b in zip(img0, img1, strict=True)])


class _Process:
    """An ffmpeg process whose stderr goes to a temporary file (a full stderr pipe would stall it)."""

    def __init__(self, command: list[str], what: str, **popen) -> None:
        self.what = what
        self.errors = tempfile.TemporaryFile()
        self.process = subprocess.Popen(command, stderr=self.errors, **popen)

    def failure(self) -> RuntimeError:
        self.errors.seek(0)
        return _failure(self.what, self.errors.read())

    def finish(self) -> None:
        if self.process.wait():
            raise self.failure()
        self.errors.close()

    def kill(self) -> None:
        self.process.kill()
        self.process.wait()
        self.errors.close()


class MinterpolateStream:
    """A sequence interpolated as a user would with ``ffmpeg -vf minterpolate``: the kept frames go in one at a
    time (:meth:`push`), every frame of the rebuilt sequence comes out in order (:meth:`pop`), kept positions
    included (the filter passes them through its YUV conversion)."""

    def __init__(self, width: int, height: int, steps: int) -> None:
        self.size, self.steps = (height, width), steps
        self.frame_bytes = width * height * 3
        command = [ffmpeg_exe(), *FIXED, *raw_input(width, height, "pipe:0"), "-vf", mci_filter(steps), *RAW_OUTPUT]
        self.proc = _Process(command, "minterpolate", stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        self.out: queue.Queue = queue.Queue()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        self.last: np.ndarray | None = None

    def _read(self) -> None:
        stdout = self.proc.process.stdout
        while True:
            data = stdout.read(self.frame_bytes)
            if len(data) < self.frame_bytes:
                self.out.put(None)
                return
            self.out.put(np.frombuffer(data, np.uint8).reshape(*self.size, 3))

    def push(self, frame: np.ndarray) -> None:
        try:
            self.proc.process.stdin.write(np.ascontiguousarray(frame).tobytes())
        except BrokenPipeError:
            raise self.proc.failure() from None
        self.last = frame

    def pop(self) -> np.ndarray:
        """The next frame of the rebuilt sequence (blocks until the filter has made it)."""
        frame = self.out.get()
        if frame is None:
            raise self.proc.failure()
        return frame

    def close(self) -> None:
        """Send the last kept frame once more (the filter holds one interval back) and end the process."""
        if self.last is not None:
            self.push(self.last)
        self.proc.process.stdin.close()

    def finish(self) -> None:
        """Wait for the process (the caller has popped every frame it needs; the rest is discarded)."""
        while self.out.get() is not None:
            pass
        self.reader.join()
        self.proc.finish()

    def kill(self) -> None:
        self.proc.kill()


class VmafStream:
    """VMAF of a distorted sequence against its reference with libvmaf (model vmaf_v0.6.1), both streamed
    frame by frame through two pipes (:meth:`write`); :meth:`close` returns the score of every frame."""

    def __init__(self, width: int, height: int) -> None:
        fd, self.log = tempfile.mkstemp(prefix="vmaf.", suffix=".json")
        os.close(fd)
        dist_read, dist_write = os.pipe()
        ref_read, ref_write = os.pipe()
        graph = (f"[0:v]{YUV}[dist];[1:v]{YUV}[ref];[dist][ref]libvmaf=model={VMAF_MODEL}:n_threads=1:"
                 f"log_fmt=json:log_path={self.log}")
        command = [ffmpeg_exe(), *FIXED, *raw_input(width, height, f"pipe:{dist_read}"),
                   *raw_input(width, height, f"pipe:{ref_read}"), "-lavfi", graph, "-f", "null", "-"]
        try:
            self.proc = _Process(command, "libvmaf", pass_fds=(dist_read, ref_read))
        finally:
            os.close(dist_read)
            os.close(ref_read)
        self.dist, self.ref = os.fdopen(dist_write, "wb"), os.fdopen(ref_write, "wb")

    def write(self, distorted: np.ndarray, reference: np.ndarray) -> None:
        try:
            self.dist.write(np.ascontiguousarray(distorted).tobytes())
            self.ref.write(np.ascontiguousarray(reference).tobytes())
        except BrokenPipeError:
            raise self.proc.failure() from None

    def close(self) -> np.ndarray:
        """Per-frame VMAF, in the order written."""
        self.dist.close()
        self.ref.close()
        try:
            self.proc.finish()
            frames = json.loads(Path(self.log).read_text())["frames"]
        finally:
            Path(self.log).unlink(missing_ok=True)
        return np.array([frame["metrics"]["vmaf"] for frame in sorted(frames, key=lambda f: f["frameNum"])])

    def kill(self) -> None:
        for pipe in (self.dist, self.ref):
            try:
                pipe.close()
            except BrokenPipeError:
                pass
        self.proc.kill()
        Path(self.log).unlink(missing_ok=True)


def clip_vmaf(frames: Iterable[tuple[np.ndarray, np.ndarray]]) -> float:
    """Pooled mean VMAF of (distorted, reference) HxWx3 uint8 RGB frames, scored in order as one clip per frame
    size (libvmaf scores a video of one size)."""
    streams: dict[tuple[int, int], VmafStream] = {}
    try:
        for distorted, reference in frames:
            height, width = reference.shape[:2]
            if (height, width) not in streams:
                streams[height, width] = VmafStream(width, height)
            streams[height, width].write(distorted, reference)
        scores = [stream.close() for stream in streams.values()]
    except BaseException:
        for stream in streams.values():
            stream.kill()
        raise
    if not scores:
        raise ValueError("clip_vmaf needs at least one frame")
    return float(np.concatenate(scores).mean())
