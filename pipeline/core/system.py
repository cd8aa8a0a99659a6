"""What this machine offers the process: the CPU cores it may use, and the other processes as Linux's /proc
shows them (elsewhere the process functions answer as if nothing could be seen)."""

from __future__ import annotations

import os
from pathlib import Path

PROC = Path("/proc")

# What each ``train.cpu_isa`` setting caps, for torch's own CPU kernels (ATen) and for oneDNN's (convolutions). The
# instruction set decides which kernels run and so how their sums are split: the same params gave different
# weights under ATen's plain kernels than under its AVX2 ones, and under oneDNN's SSE4.1 kernels than its AVX2 ones.
# Both settings are read when the first kernel runs, so they must be set before a process computes anything.
CPU_ISA_ENV = {
    "native": {},
    "avx2": {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2"},
}


def available_cores() -> int:
    """The CPU cores this process may run on (its affinity where the OS tells it, else every core)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def cpu_threads(threads: int) -> int:
    """``train.threads`` as a thread count: itself, or every available core for 0."""
    return threads if threads > 0 else available_cores()


def pin_cpu_isa(isa: str) -> None:
    """Cap the instruction set of torch's CPU kernels at ``isa`` (``native``: leave torch to choose), in this
    process and the processes it starts, so that a machine with a larger instruction set runs the same kernels
    (a machine without it is not changed: torch never goes beyond what the CPU has). Call it before any tensor
    work; a setting the user exported already wins."""
    for name, value in CPU_ISA_ENV[isa].items():
        os.environ.setdefault(name, value)


def process_stat(pid: int | str) -> list[str] | None:
    """The fields of ``/proc/<pid>/stat`` after the command name (field 3, the state, comes first); None where
    the process is gone or /proc is not there."""
    try:
        return (PROC / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def started_at(pid: int) -> float | None:
    """When process ``pid`` started (seconds since the epoch); None where it has ended (zombies included) or
    /proc is not there."""
    fields = process_stat(pid)
    try:
        boot = next(float(line.split()[1]) for line in (PROC / "stat").read_text().splitlines()
                    if line.startswith("btime"))
    except (OSError, StopIteration, IndexError, ValueError):
        return None
    if fields is None or fields[0] in ("Z", "X"):  # ended, not yet reaped: it will never clean up
        return None
    return boot + int(fields[19]) / os.sysconf("SC_CLK_TCK")


def child_pids(parent: int | None = None) -> list[int]:
    """The processes that ``parent`` (this process by default) started."""
    parent = os.getpid() if parent is None else parent
    children = []
    for stat in PROC.glob("[0-9]*/stat"):
        fields = process_stat(stat.parent.name)
        if fields is not None and int(fields[1]) == parent:
            children.append(int(stat.parent.name))
    return children


def has_proc() -> bool:
    return (PROC / "self/stat").is_file()
