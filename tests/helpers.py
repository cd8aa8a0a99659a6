"""Helpers for tests that run stages the way dvc.yaml does, and for the end-to-end tests that run dvc itself
in a temporary git repository."""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import pandas as pd
import pytest
import yaml

from pipeline.core.errors import EXIT_USER_ERROR
from pipeline.footage.encoder import SWS_MATRIX
from pipeline.footage.video import Colour

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
ENV = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
       "GIT_AUTHOR_NAME": "test", "GIT_AUTHOR_EMAIL": "test@example.invalid",
       "GIT_COMMITTER_NAME": "test", "GIT_COMMITTER_EMAIL": "test@example.invalid"}
TINY = {
    "lr": 3.0e-5,
    "extract": {"max_per_clip": 2},
    "augment": {"crop": 64, "views_per_triplet": 2},
    "train": {"steps": 3, "batch_size": 2, "schedule": "warmup_constant", "warmup_steps": 1, "val_every": 3,
              "val_max_triplets": 1, "checkpoint_every": 2,
              "val_scale": 0.25,  # as evaluate's below: a validation of the 720p val triplet in 0.4 s, not 2-3 s
              # batches made in the training process: a loader process imports torch again, 3.8 s of a 14 s run;
              # the tests that stop a run set the default (1) again, where a loader process must stop with it
              "num_workers": 0,
              # one thread per run (train, evaluate and lr_find read it): two test workers, or the two clones of
              # the sharing tests, then never run more threads than the 2-core machine has
              "threads": 1},
    "evaluate": {"max_triplets": 2, "bootstrap_samples": 200,
                 # the flow at a quarter of the 720p frames' size (a tiny evaluate took 52.6 s at 1.0, 33.7 s at 0.5)
                 "scale": 0.25,
                 # two intervals of each clip's test segment, the first of them in a video
                 "segments": {"seconds": 0.16, "block_frames": 2},
                 "videos": {"seconds": 0.08, "max_clips": 1, "codec": "ffv1", "panel_width": 320, "preview_size": 32,
                            "preview_zoom": 2}},
    "lr_find": {"steps": 10},
}


def sh(cwd: Path, *cmd: str) -> subprocess.CompletedProcess:
    done = subprocess.run(cmd, cwd=cwd, env=ENV, capture_output=True, text=True)
    assert done.returncode == 0, f"{' '.join(cmd)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


def stop_when(cwd: Path, cmd: list[str], ready: Callable[[str], bool], sig: int = signal.SIGINT, *,
              group: bool = True, env: dict | None = None, wait_s: float = 300) -> tuple[int, str]:
    """Run ``cmd`` in ``cwd`` as from a terminal and stop it with ``sig`` once ``ready(its output so far)`` holds
    (it fails if the command ends or ``wait_s`` passes first): the signal goes to its whole process group, as
    Ctrl-C in a terminal or a scheduler's kill of a job sends it, or with ``group=False`` to the started process
    alone.

    It starts in a session of its own with SIGINT at its default (a suite started in the background, ``make test
    &``, passes on an ignored SIGINT, and Python then never raises KeyboardInterrupt). Returns its exit code and its
    output (stdout and stderr together) once every process of the group has closed it."""
    proc = subprocess.Popen(cmd, cwd=cwd, env=ENV if env is None else env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    lines: list[str] = []

    def read() -> None:
        for line in proc.stdout:
            lines.append(line)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    deadline = time.monotonic() + wait_s
    while not (was_ready := ready("".join(lines))) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    if not was_ready:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=120)
        raise AssertionError(f"{' '.join(cmd)} ended or ran {wait_s} s before it was ready to stop:\n"
                             f"{''.join(lines)[-3000:]}")
    with contextlib.suppress(ProcessLookupError):  # the started process may have ended, the rest of its group not
        if group:
            os.killpg(proc.pid, sig)
        else:
            proc.send_signal(sig)
    proc.wait(timeout=120)
    reader.join(timeout=120)
    assert not reader.is_alive(), "a process of the group still holds the output open 120 s after the signal"
    return proc.returncode, "".join(lines)


def free_port() -> int:
    """A TCP port no one listens on now, for a multi-process training run (tests may run in parallel)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_queue(root: Path, jobs: int = 1) -> None:
    """``dvc queue start -j jobs`` in ``root``, as from a terminal: it returns once the queue's worker is started.
    (The worker, a daemon, keeps the output it was started with open until it has been idle a while: under
    :func:`sh`, which reads the output to its end, the call would last until the queue is done and the worker gone,
    and a second clone's queue could not start beside the first.)"""
    log = root.parent / f"{root.name}-queue-start.log"  # a file: the worker may hold it as long as it likes
    with open(log, "w") as out:
        done = subprocess.run(["dvc", "queue", "start", "-j", str(jobs)], cwd=root, env=ENV, stdin=subprocess.DEVNULL,
                              stdout=out, stderr=subprocess.STDOUT)
    assert done.returncode == 0, f"dvc queue start in {root} failed:\n{log.read_text()[-3000:]}"


def queue_tasks(status: str) -> dict[str, str]:
    """The named tasks of a ``dvc queue status`` listing, each with its status (Queued, Running, Success, Failed)."""
    lines = status.splitlines()
    tasks = {}
    for line in lines[1:] if lines and lines[0].startswith("Task") else []:
        if not line.strip():
            break
        parts = line.split()
        tasks[parts[1]] = parts[-1]
    return tasks


def wait_for_queue(root: Path, names: list[str], timeout_s: float = 600) -> str:
    """Wait until each of the experiments ``names`` of ``root``'s DVC queue has ended (Success or Failed); the last
    ``dvc queue status``. (Waiting for no task to be Queued or Running is not enough: while the worker moves on to
    the next task, that task is listed as neither, or not at all.)"""
    deadline = time.monotonic() + timeout_s
    while True:
        status = sh(root, "dvc", "queue", "status").stdout
        tasks = queue_tasks(status)
        if all(tasks.get(name) in ("Success", "Failed") for name in names):
            return status
        assert time.monotonic() < deadline, status
        time.sleep(2)


def tiny_params(root: Path) -> None:
    params = yaml.safe_load((root / "params.yaml").read_text())
    for section, values in TINY.items():
        if isinstance(values, dict):
            params[section].update(values)
        else:
            params[section] = values
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def logged_curve(root: Path, chart: str, series: str) -> pd.DataFrame:
    """One series of a published chart of several (``results/train/plots/<chart>.tsv``, long form): its steps and
    values, the values in a column named after the series."""
    curve = pd.read_csv(root / f"results/train/plots/{chart}.tsv", sep="\t")
    picked = curve[curve["series"] == series].reset_index(drop=True)
    return pd.DataFrame({"step": picked["step"], series: picked[chart]})


def lr_curve(root: Path, group: str = "block2") -> pd.DataFrame:
    return logged_curve(root, "lr", group)


def loss_curve(root: Path, term: str = "total") -> pd.DataFrame:
    return logged_curve(root, "loss", term)


def run_module(module: str, cwd: Path, *args: str) -> subprocess.CompletedProcess:
    """Run ``python -m module`` the way dvc.yaml does, in ``cwd``."""
    return subprocess.run([sys.executable, "-m", module, *args], cwd=cwd, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})


def copy_project(dest: Path) -> None:
    """The tracked project files a user's clone has (no data, no results)."""
    for name in ("pipeline", "checkpoints", "dvc.yaml", "params.yaml", ".dvcignore"):
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, dest / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(src, dest / name)


def write_params(workdir: Path, params: dict) -> None:
    (workdir / "params.yaml").write_text(yaml.safe_dump(params))


def make_clip(path: Path, frames: list[np.ndarray], fps: float | Fraction = 25.0, codec: str = "ffv1",
              pix_fmt: str | None = None, pts: list[int] | None = None, time_base: Fraction | None = None,
              rotation: int = 0, audio_seconds: float = 0.0, colour: Colour | None = None,
              options: dict[str, str] | None = None) -> None:
    """A video of RGB ``frames`` written with PyAV: lossless FFV1 by default (any container FFmpeg knows).

    ``pts`` (in ``time_base``) gives each frame its own time (variable frame rate); ``rotation`` puts a display
    matrix on the stream (degrees counter-clockwise); ``audio_seconds`` adds an AAC tone of that length;
    ``colour`` (a YUV ``pix_fmt``): the tags the stream states, and the matrix and range its frames are made with;
    ``options`` go to the muxer (e.g. ``{"movflags": "faststart"}``: an MP4 with its index first)."""
    rate = Fraction(fps).limit_denominator(1001) if not isinstance(fps, Fraction) else fps
    time_base = time_base or 1 / rate
    height, width = frames[0].shape[:2]
    with av.open(str(path), "w", options=options or {}) as container:
        stream = container.add_stream(codec, rate=rate)
        stream.width, stream.height = width, height
        stream.pix_fmt = pix_fmt or ("bgr0" if codec == "ffv1" else "yuv420p")
        stream.time_base = stream.codec_context.time_base = time_base
        if rotation:
            stream.set_display_rotation(rotation)
        if colour is not None:
            context = stream.codec_context
            context.colorspace, context.color_primaries = colour.matrix, colour.primaries
            context.color_trc, context.color_range = colour.transfer, colour.range
        sound = container.add_stream("aac", rate=48000) if audio_seconds else None
        for i, image in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
            if colour is not None:
                frame = frame.reformat(format=stream.pix_fmt, dst_colorspace=SWS_MATRIX[colour.matrix],
                                       dst_color_range=colour.range)
            frame.pts, frame.time_base = (pts[i] if pts else i), time_base
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
        if sound is not None:
            for packet in tone_packets(sound, audio_seconds):
                container.mux(packet)


def packet_positions(path: Path) -> list[int]:
    """Where each video packet of ``path`` starts in the file, in decode order."""
    with av.open(str(path)) as container:
        return [packet.pos for packet in container.demux(video=0) if packet.size]


def decode_order_stamps(source: Path, dest: Path, period: int) -> None:
    """``source``'s video packets remuxed into ``dest`` with each one stamped by its place in decode order
    (pts = dts = n * ``period``, in ``source``'s time base), as some cameras write them: a decoder shows the
    pictures of a stream with B-frames in order, but their stamps come out shuffled."""
    with av.open(str(source)) as src, av.open(str(dest), "w") as out:
        stream = out.add_stream_from_template(src.streams.video[0])
        for n, packet in enumerate(p for p in src.demux(video=0) if p.size):
            packet.stream = stream
            packet.pts = packet.dts = n * period
            out.mux(packet)


def tone_packets(stream, seconds: float) -> list:
    """Encoded packets of a 440 Hz tone of ``seconds`` on an audio ``stream``."""
    packets, samples, chunk = [], int(seconds * stream.rate), 1024
    for start in range(0, samples, chunk):
        t = (np.arange(start, min(start + chunk, samples)) / stream.rate).astype(np.float32)
        frame = av.AudioFrame.from_ndarray((0.3 * np.sin(2 * np.pi * 440 * t))[None], format="flt", layout="mono")
        frame.sample_rate, frame.pts = stream.rate, start
        packets += stream.encode(frame)
    return packets + stream.encode(None)


def moving_texture(count: int, height: int = 96, width: int = 128, speed: int = 3, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    texture = cv2.GaussianBlur(rng.random((height, width + speed * count, 3)).astype(np.float32), (0, 0), 3)
    texture = ((texture - texture.min()) / (texture.max() - texture.min()) * 255).astype(np.uint8)
    return [np.ascontiguousarray(texture[:, i * speed:i * speed + width]) for i in range(count)]


def run_main(main: Callable, *args: str) -> subprocess.CompletedProcess:
    """Call a command's ``main(argv)`` in this process (no new interpreter: fast), as ``run_module`` would run it:
    its exit code and what it wrote to stderr. The signal handlers ``main`` installs are put back afterwards."""
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    stderr, code = io.StringIO(), 0
    try:
        with contextlib.redirect_stderr(stderr):
            main(list(args))
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else 1
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
    return subprocess.CompletedProcess(["main", *args], code, "", stderr.getvalue())


def run_stage_main(cwd: Path, main: Callable[[], None]) -> subprocess.CompletedProcess:
    """A stage's ``main()`` in this process with ``cwd`` as the current folder (put back afterwards), as
    ``run_module`` runs the stage there (see :func:`run_main`): for a stage's many error cases, where a new
    interpreter would cost more than the case itself."""
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(cwd)
        return run_main(lambda _argv: main())


def assert_user_error(done, *fragments: str) -> None:
    assert done.returncode == EXIT_USER_ERROR, done.stderr
    assert "Traceback" not in done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ")
    for fragment in fragments:
        assert fragment in last


def tree_digest(folder: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(path.relative_to(folder).as_posix().encode() + path.read_bytes())
    return digest.hexdigest()


def new_project(root: Path, params: dict | None = None, commit: bool = True, tiny: bool = True) -> Path:
    """A user's fresh clone in ``root``: the project files with the tiny settings (:data:`TINY`, unless ``tiny``
    is False: the defaults), then ``params`` on top, section by section, in a new git repository with DVC
    initialised; committed unless ``commit`` is False (for a test that adds files of its own first)."""
    root.mkdir(parents=True, exist_ok=True)
    copy_project(root)
    if tiny:
        tiny_params(root)
    if params:
        merged = yaml.safe_load((root / "params.yaml").read_text())
        for section, values in params.items():
            if isinstance(values, dict):
                merged[section].update(values)
            else:
                merged[section] = values
        (root / "params.yaml").write_text(yaml.safe_dump(merged, sort_keys=False))
    for cmd in (("git", "init", "-q", "-b", "main"), ("dvc", "init", "-q"),
                ("dvc", "config", "core.analytics", "false")):
        sh(root, *cmd)
    shutil.copytree(ROOT / ".dvc/plots", root / ".dvc/plots")  # the project's plot template, as a clone has it
    if commit:
        sh(root, "git", "add", "-A")
        sh(root, "git", "commit", "-qm", "project")
    return root


def copy_reproduced(baseline: tuple[Path, str], dest: Path) -> tuple[Path, str]:
    """A copy of the session's reproduced tiny project (the ``reproduced`` fixture: git and DVC cache included)
    in ``dest``, for a test module to change as it likes; and the log of the ``dvc repro`` that made it."""
    shutil.copytree(baseline[0], dest, symlinks=True, dirs_exist_ok=True)
    return dest, baseline[1]


def file_md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def train_params(root: Path, lr: float | None = None, **changes) -> dict:
    """Write the committed tiny params with ``train`` changes (each test starts from the same baseline, without
    the checkpoint an earlier test's interrupted run may have left)."""
    shutil.rmtree(root / "state/train", ignore_errors=True)
    params = yaml.safe_load(sh(root, "git", "show", "HEAD:params.yaml").stdout)
    params["train"].update(changes)
    if lr is not None:
        params["lr"] = lr
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return params
