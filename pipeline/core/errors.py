"""User-facing errors: one line, no traceback, non-zero exit."""

from __future__ import annotations

import functools
import logging
import sys
from typing import Callable, TypeVar

T = TypeVar("T")

EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130  # the shell's code for SIGINT
QUIET_LOGGERS = ("accelerate", "dvclive", "matplotlib", "PIL")  # their INFO lines drown our progress


class UserError(Exception):
    """A mistake in the user's input (params, files, checkpoint) explained in one line."""


def user_facing(main: Callable[..., T]) -> Callable[..., T]:
    """Wrap a stage's ``main``: a :class:`UserError` prints ``error: <message>`` and exits with code 2."""

    @functools.wraps(main)
    def wrapper(*args, **kwargs):
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")
        for noisy in QUIET_LOGGERS:
            logging.getLogger(noisy).setLevel(logging.WARNING)
        try:
            return main(*args, **kwargs)
        except UserError as err:
            print(f"error: {err}", file=sys.stderr)
            sys.exit(EXIT_USER_ERROR)
        except KeyboardInterrupt:
            print("interrupted; outputs were left as they were (training resumes from its last checkpoint)",
                  file=sys.stderr)
            sys.exit(EXIT_INTERRUPTED)

    return wrapper
