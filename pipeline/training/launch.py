"""Starting the training stage under ``accelerate launch``, and passing a scheduler's SIGTERM on to its workers.

``python -m pipeline.train`` (what dvc.yaml runs) checks params and the checkpoint in one process, then starts
itself again under Accelerate's launcher with the flags it was given and the user's ``accelerate config``; the
launched processes do the training (:func:`launched` tells which side a process is on). Without a config, what the
flags leave open is passed as Accelerate's own defaults (:func:`launch_flags`), so the launcher does not print its
block of values "not passed to `accelerate launch`" on every run."""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import sys

import torch

from pipeline.core.errors import EXIT_INTERRUPTED, EXIT_TERMINATED, Terminated, UserError
from pipeline.core.restore import RESTORER
from pipeline.core.system import child_pids

LAUNCHED_BY_ACCELERATE = "ACCELERATE_DYNAMO_BACKEND"  # set by `accelerate launch` for every process it starts
LAUNCHED_BY_TORCHRUN = "TORCHELASTIC_RUN_ID"  # set by torchrun (which accelerate's multi-process launch uses too)


def launched() -> bool:
    """Whether this process was started by ``accelerate launch`` or torchrun (a training worker)."""
    return LAUNCHED_BY_ACCELERATE in os.environ or LAUNCHED_BY_TORCHRUN in os.environ


# Accelerate's defaults for a launch without a config, which it announces with a warning when they are not passed:
# one machine, no mixed precision (replaced by train.mixed_precision), no torch.compile backend (one process per
# device is counted in launch_flags)
QUIET_DEFAULTS = {"num_machines": "1", "mixed_precision": "no", "dynamo_backend": "no"}
EXCLUSIVE_LAUNCHERS = ("multi_gpu", "cpu", "tpu", "use_deepspeed", "use_fsdp")  # at most one of these per launch


def device_count() -> int:
    """Accelerator devices (GPUs) torch sees; 0 on a CPU-only machine."""
    if hasattr(torch, "accelerator"):
        return torch.accelerator.device_count()
    return torch.cuda.device_count()  # torch before 2.6


def launch_flags(user_flags: list[str], module: str, mixed_precision: str = "no") -> list[str]:
    """The launcher's arguments for ``python -m <module>``: the user's flags; ``--mixed_precision`` set to
    ``mixed_precision`` (the param) unless they set it, over an accelerate config's; then, where neither they nor
    a config decide, what Accelerate would default to, spelled out: one process per device (one on a CPU), one
    machine, no dynamo backend."""
    from accelerate.commands import config
    from accelerate.commands.launch import launch_command_parser

    given = launch_command_parser().parse_args([*user_flags, "-m", module])
    precision = {"mixed_precision": mixed_precision}
    if given.config_file is not None or (os.path.isfile(config.default_config_file) and not given.cpu):
        # the config fills what the flags leave open, without a warning
        return [*user_flags, *unset_flags(given, precision), "-m", module]
    extra = []
    if given.num_processes is None:
        devices = 0 if given.cpu else device_count()
        extra += ["--num_processes", str(max(devices, 1))]
        if devices > 1 and not any(getattr(given, name) for name in EXCLUSIVE_LAUNCHERS):
            extra.append("--multi_gpu")  # what Accelerate switches on itself when it finds several devices
    extra += unset_flags(given, {**QUIET_DEFAULTS, **precision})
    return [*user_flags, *extra, "-m", module]


def unset_flags(given: argparse.Namespace, values: dict[str, str]) -> list[str]:
    """``--name value`` for each of ``values`` that the parsed launcher flags ``given`` leave unset."""
    return [part for name, value in values.items() if getattr(given, name) is None for part in (f"--{name}", value)]


def forward_to_children(signum: int, frame) -> None:
    for pid in child_pids():
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signum)


def exit_code(returncode: int) -> int:
    """The launcher's exit code for a worker's: a worker ended by signal N (a negative code) gives 128 + N, as a
    shell reports it, and a line says so (such a worker had no chance to say anything itself)."""
    if returncode >= 0:
        return returncode
    name = signal.Signals(-returncode).name if -returncode in signal.valid_signals() else f"signal {-returncode}"
    print(f"error: the worker process was ended by {name} before it could say why (out of memory, or killed)",
          file=sys.stderr)
    return 128 - returncode


STOPS = {EXIT_INTERRUPTED: KeyboardInterrupt, EXIT_TERMINATED: Terminated}


def stop_of(err: BaseException) -> KeyboardInterrupt | None:
    """The Ctrl-C or SIGTERM that ended a launch, as the exception the stage runner turns into its one line, or
    None for any other failure. It shows as the worker's exit code 130 or 143 (a worker stops without a word and
    leaves the line to the launcher), as the exit of Accelerate's own SIGTERM handler (1.16 and later, which ends
    the worker and exits with 143) or as torchrun's ``SignalException`` (a launch of several processes)."""
    if isinstance(err, subprocess.CalledProcessError):
        code = err.returncode
    elif isinstance(err, SystemExit):
        code = err.code
    elif isinstance(getattr(err, "sigval", None), int):
        code = 128 + int(err.sigval)
    elif isinstance(getattr(err, "failures", None), dict):  # torchrun's ChildFailedError: each failed worker's code
        code = next((f.exitcode for f in err.failures.values() if f.exitcode in STOPS), None)
    else:
        return None
    stop = STOPS.get(code)
    return stop() if stop else None


def launch(module: str, launcher_flags: list[str], mixed_precision: str = "no") -> None:
    """Start ``python -m <module>`` under ``accelerate launch`` (with the given launcher flags, the user's
    ``accelerate config`` and ``mixed_precision`` where the flags set none), and pass on its exit code without the
    launcher's own traceback.

    This process waits for the worker's exit code, and is the one that says how a stopped run ended (the workers
    stop without a word) and puts the previous outputs back. A Ctrl-C (which the worker, in the same process group,
    receives too) is passed on to the worker and does not stop this process first: Accelerate's launcher, when
    interrupted, ends its workers within 5 s and kills those still unwinding (a training process closing its
    loader workers under load takes longer). A SIGTERM is passed on by our handler, or, while a recent Accelerate
    (1.16 and later) runs the worker, by Accelerate's own, which allows the worker those 5 s: the worker's last
    line could be lost with it, this process's line is not."""
    from accelerate.commands.launch import launch_command, launch_command_parser

    args = launch_command_parser().parse_args(launch_flags(launcher_flags, module, mixed_precision))
    os.environ[RESTORER] = str(os.getpid())  # a failed run's outputs are put back once, by this process
    for sig in (signal.SIGINT, signal.SIGTERM):  # a handler, not SIG_IGN: the worker must not inherit an ignore
        signal.signal(sig, forward_to_children)
    try:
        launch_command(args)
    except (SystemExit, subprocess.CalledProcessError) as err:
        if (stop := stop_of(err)) is not None:
            raise stop from None
        if isinstance(err, SystemExit):
            raise
        sys.exit(exit_code(err.returncode))
    except Exception as err:  # multi-GPU launches report a failed worker with their own exception types
        if (stop := stop_of(err)) is not None:
            raise stop from None
        if isinstance(err, ValueError) and "mixed precision" in str(err):  # the launcher's check, before any worker
            raise UserError(f"mixed precision {args.mixed_precision} (train.mixed_precision or --mixed_precision): "
                            f"{str(err).rstrip('.')}; use no") from None
        print(f"error: training failed in a worker process ({type(err).__name__}); see its messages above",
              file=sys.stderr)
        sys.exit(1)
