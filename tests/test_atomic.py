"""Atomic writes clean up what a killed writer left, and only that."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from pipeline.core.atomic import atomic_dir, atomic_path, output_set, write_text


def test_leftovers_of_an_ended_writer_go_and_a_running_writers_stay(tmp_path):
    ended = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = tmp_path / f".out.{int(ended.stdout)}.abc.tmp"  # its writer has ended (killed, say)
    (stale / "frames").mkdir(parents=True)
    running = tmp_path / f".out.{os.getpid()}.def.tmp"  # written by this process, which still runs
    running.mkdir()
    with atomic_dir(tmp_path / "out") as tmp:
        (tmp / "result").write_text("done")
    assert not stale.exists() and running.exists()
    assert (tmp_path / "out/result").read_text() == "done"


# ---------------------------------------------------------------- output sets

def test_an_output_set_publishes_every_file_and_folder_together(tmp_path):
    (tmp_path / "a.txt").write_text("old")
    with output_set():
        write_text(tmp_path / "a.txt", "new")
        with atomic_dir(tmp_path / "d") as tmp:
            (tmp / "x").write_text("new")
        assert (tmp_path / "a.txt").read_text() == "old" and not (tmp_path / "d").exists()  # held back
    assert (tmp_path / "a.txt").read_text() == "new" and (tmp_path / "d/x").read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt", "d"]  # no temporaries left


def test_a_failure_inside_an_output_set_keeps_every_old_output_and_no_temporary(tmp_path):
    (tmp_path / "a.txt").write_text("old")
    with pytest.raises(KeyboardInterrupt), output_set():
        write_text(tmp_path / "a.txt", "new")
        with atomic_path(tmp_path / "b.txt") as tmp:
            tmp.write_text("new")
        raise KeyboardInterrupt
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt"]
    assert (tmp_path / "a.txt").read_text() == "old"


@pytest.fixture
def ctrl_c_raises():
    """Ctrl-C's own handler for the test, also where the suite was started with SIGINT ignored (`make test &`)."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def test_a_stop_signal_during_publishing_waits_until_the_set_is_complete(tmp_path, monkeypatch, ctrl_c_raises):
    replace = os.replace
    calls = []

    def replace_then_signal(src, dst):
        replace(src, dst)
        calls.append(dst)
        if len(calls) == 1:
            os.kill(os.getpid(), signal.SIGINT)  # arrives between the first rename and the second

    monkeypatch.setattr(os, "replace", replace_then_signal)
    with pytest.raises(KeyboardInterrupt), output_set():
        write_text(tmp_path / "a.txt", "new")
        write_text(tmp_path / "b.txt", "new")
    assert (tmp_path / "a.txt").read_text() == (tmp_path / "b.txt").read_text() == "new"


def test_a_stop_signal_while_a_folder_is_replaced_leaves_no_old_copy(tmp_path, monkeypatch, ctrl_c_raises):
    """A folder replaced on its own (as training's live preview is): a Ctrl-C between its two renames is handled
    once the new folder is in place and the previous one deleted (it was left as ``.d.old``)."""
    (tmp_path / "d").mkdir()
    (tmp_path / "d/x").write_text("old")
    replace = os.replace

    def replace_then_signal(src, dst):
        replace(src, dst)
        if str(dst).endswith(".old"):
            os.kill(os.getpid(), signal.SIGINT)  # arrives after the previous folder moved aside

    monkeypatch.setattr(os, "replace", replace_then_signal)
    with pytest.raises(KeyboardInterrupt), atomic_dir(tmp_path / "d") as tmp:
        (tmp / "x").write_text("new")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d"]
    assert (tmp_path / "d/x").read_text() == "new"


WRITER = """
import sys, time
from pathlib import Path
from pipeline.core.atomic import output_set, write_text
from pipeline.core.runner import user_facing

@user_facing  # the stages' handling of Ctrl-C and SIGTERM
def main():
    out = Path(sys.argv[1])
    print("ready", flush=True)
    with output_set():
        for i in range(40):
            write_text(out / f"part{i % 8}.txt", sys.argv[2])
            time.sleep(0.005)

main()
"""


def test_interrupted_at_any_point_the_outputs_are_all_old_or_all_new(tmp_path):
    """A writer replacing 8 files is stopped by SIGINT or SIGTERM at 12 points from its start to past its end."""
    out = tmp_path / "out"
    out.mkdir()
    for i in range(8):
        (out / f"part{i}.txt").write_text("old")

    def start(value: str) -> tuple[subprocess.Popen, float]:
        proc = subprocess.Popen([sys.executable, "-c", WRITER, str(out), value], stdout=subprocess.PIPE,
                                stderr=subprocess.DEVNULL, text=True,  # SIGINT as in a terminal, even under `&`
                                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        proc.stdout.readline()
        return proc, time.monotonic()

    proc, began = start("old")
    proc.wait(timeout=60)
    span = (time.monotonic() - began) * 1.3  # how long one uninterrupted write takes here, and some more
    seen = set()
    for point in range(12):
        proc, began = start(f"new{point}")
        time.sleep(span * point / 11)
        proc.send_signal(signal.SIGINT if point % 2 else signal.SIGTERM)
        proc.wait(timeout=60)
        contents = {(out / f"part{i}.txt").read_text() for i in range(8)}
        assert len(contents) == 1, (point, contents)  # never a mix
        seen.add(contents.pop() == f"new{point}")
        assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == [f"part{i}.txt" for i in range(8)]
    assert seen == {True, False}  # the points covered both outcomes
    start("done")[0].wait(timeout=60)
    assert sorted(p.name for p in out.iterdir()) == [f"part{i}.txt" for i in range(8)]  # leftovers removed
