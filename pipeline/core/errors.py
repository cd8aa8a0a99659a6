"""The error a user can fix, explained in one line, and the exit codes a stage ends with."""

from __future__ import annotations

EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130  # the shell's code for SIGINT (Ctrl-C)
EXIT_TERMINATED = 143  # the shell's code for SIGTERM (what a cluster scheduler sends before it kills a job)


class UserError(Exception):
    """A mistake in the user's input (params, files, checkpoint) explained in one line."""


class Terminated(KeyboardInterrupt):
    """SIGTERM, handled as Ctrl-C is: the stage stops where it is and a training run resumes later."""
