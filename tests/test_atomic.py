"""Atomic writes clean up what a killed writer left, and only that."""

from __future__ import annotations

import os
import subprocess
import sys

from pipeline.core.atomic import atomic_dir


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
