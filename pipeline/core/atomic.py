"""Atomic writes: outputs appear complete or not at all, and a failure leaves the old ones in place.

Temporary names carry the writing process's id (``.<name>.<pid>.<random>.tmp``), so the next write to the same
path removes what a killed run left behind (a process that is gone cannot clean up after itself)."""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from pipeline.core.errors import UserError
from pipeline.core.system import has_proc, started_at


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
            if tmp.is_dir() and not tmp.is_symlink():
                shutil.rmtree(tmp, ignore_errors=True)
            else:
                tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_path(path: str | Path, keep_suffix: bool = False) -> Iterator[Path]:
    """Yield a temporary file path next to ``path``; rename it onto ``path`` only if the block succeeds.
    ``keep_suffix``: the temporary name ends like ``path`` (for writers that choose a format by the suffix)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_leftovers(path)
    suffix = f".tmp{path.suffix}" if keep_suffix else ".tmp"
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}.", suffix=suffix, dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp creates 0600; give the file ordinary permissions
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


@contextlib.contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """Yield an empty temporary directory next to ``path``; it replaces ``path`` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_leftovers(path)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp", dir=path.parent))
    try:
        yield tmp
        os.chmod(tmp, 0o777 & ~_umask())
        old = path.with_name(f".{path.name}.old")
        if old.exists():
            shutil.rmtree(old)
        if path.exists():
            os.replace(path, old)
        os.replace(tmp, path)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


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
