"""Atomic writes: outputs appear complete or not at all, and a failure leaves the old ones in place.

Inside :func:`output_set`, those renames wait until the whole block has succeeded and then happen together with
Ctrl-C and SIGTERM held back: a stage's outputs are then all new or all old, whenever it is interrupted.

Temporary names carry the writing process's id (``.<name>.<pid>.<random>.tmp``), so the next write to the same
path removes what a killed run left behind (a process that is gone cannot clean up after itself)."""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import signal
import tempfile
from collections.abc import Iterator
from pathlib import Path

from pipeline.core.errors import UserError
from pipeline.core.system import has_proc, started_at

# (temporary, final) pairs that output_set publishes when its block succeeds; None outside an output_set
_held: list[tuple[Path, Path]] | None = None
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _writer_alive(pid: int, written: float) -> bool:
    """Whether the process that wrote a temporary at time ``written`` still runs (not a later one with its pid)."""
    if has_proc():
        started = started_at(pid)
        return started is not None and started <= written + 1.0
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def remove_leftovers(path: Path) -> None:
    """Delete temporaries of ``path`` whose writing process no longer runs (a killed earlier run's)."""
    for tmp in path.parent.glob(f".{glob.escape(path.name)}.*.tmp*"):
        pid = tmp.name[len(path.name) + 2:].split(".", 1)[0]
        if pid.isdigit() and not _writer_alive(int(pid), tmp.lstat().st_mtime):
            _discard(tmp)


@contextlib.contextmanager
def atomic_path(path: str | Path, keep_suffix: bool = False) -> Iterator[Path]:
    """Yield a temporary file path next to ``path``; rename it onto ``path`` only if the block succeeds.
    ``keep_suffix``: the temporary name ends like ``path`` (for writers that choose a format by the suffix)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_leftovers(path)
    suffix = f".tmp{path.suffix}" if keep_suffix else ".tmp"
    tmp, held = "", False
    try:  # a stop signal that lands between mkstemp and here leaves a temporary: the next write removes it
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}.", suffix=suffix, dir=path.parent)
        os.close(fd)
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp creates 0600; give the file ordinary permissions
        if _held is not None:
            _held.append((Path(tmp), path))
            held = True
            return
        os.replace(tmp, path)
    finally:
        if tmp and not held and os.path.exists(tmp):
            os.unlink(tmp)


@contextlib.contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """Yield an empty temporary directory next to ``path``; it replaces ``path`` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_leftovers(path)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp", dir=path.parent))
    held = False
    try:
        yield tmp
        os.chmod(tmp, 0o777 & ~_umask())
        if _held is not None:
            _held.append((tmp, path))
            held = True
            return
        _replace_dir(tmp, path)
    finally:
        if not held and tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _replace_dir(tmp: Path, path: Path) -> None:
    """``tmp`` in place of ``path`` by two renames (the previous folder goes to ``.<name>.old`` and is deleted),
    with Ctrl-C and SIGTERM deferred to the end: a stop between the renames or during the deletion left the
    previous folder, or part of it, beside the new one (a SIGTERM to a training run that was rewriting its preview
    left ``results/train/.plots.old``). A SIGKILL can still leave it; the next replace deletes it first."""
    old = path.with_name(f".{path.name}.old")
    with _stops_deferred():
        if old.exists():
            shutil.rmtree(old)
        if path.exists():
            os.replace(path, old)
        os.replace(tmp, path)
        shutil.rmtree(old, ignore_errors=True)


def _discard(tmp: Path) -> None:
    if tmp.is_dir() and not tmp.is_symlink():
        shutil.rmtree(tmp, ignore_errors=True)
    else:
        tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def output_set() -> Iterator[None]:
    """Publish every :func:`atomic_path` and :func:`atomic_dir` write of the block together, once it succeeds.

    Until then the new files wait under their temporary names; an exception or a Ctrl-C anywhere in the block
    deletes them all and leaves every previous output as it was. The renames themselves run with Ctrl-C and
    SIGTERM deferred (a signal that arrives then is handled right after), so no interruption leaves a mix of
    this run's outputs and the last one's. Output sets do not nest."""
    global _held
    if _held is not None:
        raise RuntimeError("output_set does not nest")
    _held = held = []
    try:
        yield
    except BaseException:
        _held = None
        for tmp, _ in held:
            _discard(tmp)
        raise
    _held = None
    with _stops_deferred():
        try:
            for tmp, path in held:
                if tmp.is_dir() and not tmp.is_symlink():
                    _replace_dir(tmp, path)
                else:
                    os.replace(tmp, path)
        finally:
            for tmp, _ in held:
                if tmp.exists():
                    _discard(tmp)


@contextlib.contextmanager
def _stops_deferred() -> Iterator[None]:
    """Ctrl-C and SIGTERM that arrive in the block are handled, by the handlers in place before it, at its end.

    The Python-level handlers are swapped (not the signal mask, which is per thread: torch's worker threads
    would still take the signal and the main thread would run the handler at once). Off the main thread, where
    handlers cannot be set, nothing is deferred."""
    caught: list[int] = []
    try:
        previous = {sig: signal.signal(sig, lambda signum, frame: caught.append(signum)) for sig in STOP_SIGNALS}
    except ValueError:  # not the main thread
        yield
        return
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if caught:
            handler = previous[caught[0]]
            if callable(handler):
                handler(caught[0], None)
            elif handler == signal.SIG_DFL:
                os.kill(os.getpid(), caught[0])


def check_creatable(start: Path, label: str) -> None:
    """Fail with one line (``<label>: cannot be written, …``) unless the nearest existing folder at or above
    ``start`` is a folder this process may write in."""
    parent = start.absolute()
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise UserError(f"{label}: cannot be written, {parent} is a file, not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise UserError(f"{label}: cannot be written, no permission to write in {parent}")


def write_text(path: str | Path, text: str) -> None:
    """Atomically write ``text`` to ``path``."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)
