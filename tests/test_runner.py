"""How every stage ends: a user's mistake as one ``error:`` line (exit 2), Ctrl-C and SIGTERM as one line each
(exit 130 and 143) that speaks of resuming only for a stage that resumes."""

from __future__ import annotations

import os

import pytest

from pipeline.core.errors import EXIT_INTERRUPTED, EXIT_TERMINATED, EXIT_USER_ERROR, Terminated, UserError
from pipeline.core.restore import RESTORER
from pipeline.core.runner import user_facing
from tests.helpers import run_main


def stopping(exception: BaseException, **options):
    @user_facing(**options)
    def main(argv: list[str]) -> None:
        raise exception

    return main


@pytest.mark.parametrize("exception, code, line", [
    (KeyboardInterrupt(), EXIT_INTERRUPTED, "interrupted; the previous outputs are kept"),
    (Terminated(), EXIT_TERMINATED, "stopped by SIGTERM; the previous outputs are kept"),
    (UserError("params.yaml: lr = 0: expected a number > 0"), EXIT_USER_ERROR,
     "error: params.yaml: lr = 0: expected a number > 0"),
])
def test_a_stage_ends_with_one_line_that_does_not_speak_of_training(exception, code, line):
    done = run_main(stopping(exception))
    assert done.returncode == code and done.stderr.strip().splitlines() == [line]


@pytest.mark.parametrize("exception, code, how", [(KeyboardInterrupt(), EXIT_INTERRUPTED, "interrupted"),
                                                  (Terminated(), EXIT_TERMINATED, "stopped by SIGTERM")])
def test_only_a_stage_that_resumes_says_so(exception, code, how):
    done = run_main(stopping(exception, resumes=True))
    assert done.returncode == code
    assert done.stderr.strip().splitlines() == [f"{how}; the previous outputs are kept, and the run resumes from its "
                                                "last checkpoint when the stage runs again"]


@pytest.mark.parametrize("exception, code", [(KeyboardInterrupt(), EXIT_INTERRUPTED), (Terminated(), EXIT_TERMINATED)])
def test_a_worker_of_our_launcher_stops_without_a_word(exception, code, monkeypatch):
    """The launcher that started a training worker says how the run ended, once, after the worker is gone."""
    monkeypatch.setenv(RESTORER, str(os.getpid() + 1))  # another process started this one and speaks for it
    done = run_main(stopping(exception, resumes=True))
    assert done.returncode == code and done.stderr.strip() == ""
