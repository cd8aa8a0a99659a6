"""Starting the training stage under ``accelerate launch``, and passing a scheduler's SIGTERM on to its workers.

``python -m pipeline.train`` (what dvc.yaml runs) checks params and the checkpoint in one process, then starts
itself again under Accelerate's launcher with the flags it was given and the user's ``accelerate config``; the
launched processes do the training (:func:`launched` tells which side a process is on)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys

from pipeline.core.errors import EXIT_INTERRUPTED
from pipeline.core.system import child_pids

LAUNCHED_BY_ACCELERATE = "ACCELERATE_DYNAMO_BACKEND"  # set by `accelerate launch` for every process it starts
LAUNCHED_BY_TORCHRUN = "TORCHELASTIC_RUN_ID"  # set by torchrun (which accelerate's multi-process launch uses too)


def launched() -> bool:
    """Whether this process was started by ``accelerate launch`` or torchrun (a training worker)."""
    return LAUNCHED_BY_ACCELERATE in os.environ or LAUNCHED_BY_TORCHRUN in os.environ


def forward_to_children(signum: int, frame) -> None:
    for pid in child_pids():
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signum)


def launch(module: str, launcher_flags: list[str]) -> None:
    """Start ``python -m <module>`` under ``accelerate launch`` (with the given launcher flags and the user's
    ``accelerate config``), and pass on its exit code without the launcher's own traceback."""
    from accelerate.commands.launch import launch_command, launch_command_parser

    args = launch_command_parser().parse_args([*launcher_flags, "-m", module])
    # A scheduler's SIGTERM often reaches only this process: pass it on, so the workers stop as after Ctrl-C
    signal.signal(signal.SIGTERM, forward_to_children)
    try:
        launch_command(args)
    except subprocess.CalledProcessError as err:
        sys.exit(err.returncode)
    except KeyboardInterrupt:
        sys.exit(EXIT_INTERRUPTED)  # the worker has said what happened
    except Exception as err:  # multi-GPU launches report a failed worker with their own exception types
        print(f"error: training failed in a worker process ({type(err).__name__}); see its messages above",
              file=sys.stderr)
        sys.exit(1)
