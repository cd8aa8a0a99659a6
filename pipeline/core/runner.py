"""How every stage and command runs: logging set up once, a user's mistake as one ``error:`` line with no
traceback, Ctrl-C and SIGTERM as one line, and under ``dvc repro`` the previous outputs put back after a failure."""

from __future__ import annotations

import functools
import logging
import signal
import sys
from collections.abc import Callable
from typing import TypeVar

from pipeline.core.errors import EXIT_INTERRUPTED, EXIT_TERMINATED, EXIT_USER_ERROR, Terminated, UserError
from pipeline.core.restore import reports_here, restore_after_failure

T = TypeVar("T")

QUIET_LOGGERS = ("accelerate", "dvclive", "matplotlib", "PIL")  # their INFO lines drown our progress


def stop(signum: int, frame) -> None:
    """Ctrl-C or SIGTERM: raise once, then ignore both while the run unwinds. A stopped run often gets both
    (``accelerate launch`` and ``dvc`` pass a Ctrl-C on as SIGTERM), and a second exception raised inside the
    first one's clean-up (a progress bar closing, a loader shutting down) prints a traceback instead of one line."""
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)
    raise Terminated() if signum == signal.SIGTERM else KeyboardInterrupt()


def user_facing(main: Callable[..., T] | None = None, *, resumes: bool = False):
    """Wrap a stage's ``main``: a :class:`UserError` prints ``error: <message>`` and exits with code 2; Ctrl-C
    and SIGTERM print one line and exit with 130 and 143 (``resumes``: the line says that the run continues from its
    last checkpoint, as training does). Under ``dvc repro``, a stage that fails or is stopped puts the outputs of its
    last successful run back (dvc deleted them before the command started). Use as ``@user_facing`` or
    ``@user_facing(resumes=True)``."""
    if main is None:
        return functools.partial(user_facing, resumes=resumes)
    then = ", and the run resumes from its last checkpoint when the stage runs again" if resumes else ""

    @functools.wraps(main)
    def wrapper(*args, **kwargs):
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")
        for noisy in QUIET_LOGGERS:
            logging.getLogger(noisy).setLevel(logging.WARNING)
        signal.signal(signal.SIGTERM, stop)
        if signal.getsignal(signal.SIGINT) is signal.default_int_handler:  # left alone where SIGINT is ignored
            signal.signal(signal.SIGINT, stop)
        try:
            return main(*args, **kwargs)
        except UserError as err:
            restore_after_failure()
            print(f"error: {err}", file=sys.stderr)
            sys.exit(EXIT_USER_ERROR)
        except KeyboardInterrupt as err:
            restore_after_failure()
            how, code = ("stopped by SIGTERM", EXIT_TERMINATED) if isinstance(err, Terminated) else \
                ("interrupted", EXIT_INTERRUPTED)
            if reports_here():  # a training worker leaves the line to the launcher that started it
                print(f"{how}; the previous outputs are kept{then}", file=sys.stderr)
            sys.exit(code)
        except SystemExit as err:
            if err.code not in (0, None):
                restore_after_failure()
            raise
        except Exception:
            restore_after_failure()
            raise

    return wrapper
