"""The relaunch of the train stage under ``accelerate launch``: the user's flags kept, Accelerate's defaults spelled
out where no flag or config sets them, so the launcher prints no warning about defaults."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest
from accelerate.commands import config
from accelerate.commands.launch import launch_command_parser
from torch.distributed.elastic.multiprocessing.api import SignalException
from torch.distributed.elastic.multiprocessing.errors import ChildFailedError, ProcessFailure

from pipeline.core.errors import Terminated, UserError
from pipeline.training import launch
from pipeline.training.launch import exit_code, launch_flags, stop_of
from tests.helpers import ENV, ROOT, stop_when

DEFAULTS = ["--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no"]


@pytest.fixture()
def no_config(tmp_path, monkeypatch):
    """No ``accelerate config`` on this machine, and no GPU."""
    monkeypatch.setattr(config, "default_config_file", str(tmp_path / "default_config.yaml"))
    monkeypatch.setattr(launch, "device_count", lambda: 0)
    return tmp_path / "default_config.yaml"


def test_without_flags_or_config_every_default_is_passed(no_config):
    assert launch_flags([], "pipeline.train") == ["--num_processes", "1", *DEFAULTS, "-m", "pipeline.train"]


def test_the_users_flags_are_kept_and_not_repeated(no_config):
    user = ["--multi_gpu", "--num_processes", "2", "--mixed_precision=bf16"]
    flags = launch_flags(user, "pipeline.train")
    assert flags == [*user, "--num_machines", "1", "--dynamo_backend", "no", "-m", "pipeline.train"]
    args = launch_command_parser().parse_args(flags)
    assert (args.num_processes, args.mixed_precision, args.multi_gpu, args.module) == (2, "bf16", True, True)


def test_several_gpus_get_a_process_each_as_accelerate_would_choose(no_config, monkeypatch):
    monkeypatch.setattr(launch, "device_count", lambda: 4)
    assert launch_flags([], "m")[:3] == ["--num_processes", "4", "--multi_gpu"]
    assert launch_flags(["--use_fsdp"], "m")[:3] == ["--use_fsdp", "--num_processes", "4"]  # one launcher kind only
    assert launch_flags(["--cpu"], "m")[:3] == ["--cpu", "--num_processes", "1"]


def test_an_accelerate_config_decides_what_the_flags_leave_open(no_config):
    no_config.write_text("compute_environment: LOCAL_MACHINE\n")
    precision = ["--mixed_precision", "no"]  # train.mixed_precision, over the config's
    assert launch_flags(["--num_processes", "2"], "m") == ["--num_processes", "2", *precision, "-m", "m"]
    assert launch_flags(["--config_file", "mine.yaml"], "m") == ["--config_file", "mine.yaml", *precision, "-m", "m"]
    # --cpu makes the launcher ignore the default config file (not one named by --config_file)
    assert launch_flags(["--cpu"], "m") == ["--cpu", "--num_processes", "1", *DEFAULTS, "-m", "m"]


@pytest.mark.slow  # starts Accelerate's launcher and a Python process (about 6 s)
def test_the_launcher_prints_no_warning_about_defaults(tmp_path):
    code = "from pipeline.training.launch import launch; launch('platform', [])"  # a module that prints one line
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env={**ENV, "HF_HOME": str(tmp_path)},
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() and "not passed to `accelerate launch`" not in done.stdout + done.stderr


def test_the_launch_carries_train_mixed_precision_unless_the_users_flag_sets_one(no_config):
    flags = launch_flags([], "pipeline.train", "bf16")
    assert flags == ["--num_processes", "1", "--num_machines", "1", "--mixed_precision", "bf16", "--dynamo_backend",
                     "no", "-m", "pipeline.train"]
    assert launch_command_parser().parse_args(flags).mixed_precision == "bf16"
    assert launch_flags(["--mixed_precision", "fp16"], "m", "bf16").count("--mixed_precision") == 1
    no_config.write_text("compute_environment: LOCAL_MACHINE\nmixed_precision: 'no'\n")  # `accelerate config`'s
    assert launch_command_parser().parse_args(launch_flags([], "m", "bf16")).mixed_precision == "bf16"


def test_a_precision_the_launcher_refuses_is_one_line(no_config, monkeypatch):
    import accelerate.commands.launch as accelerate_launch

    def refuse(args):
        raise ValueError("bf16 mixed precision requires PyTorch >= 1.10 and a supported device.")

    monkeypatch.setattr(accelerate_launch, "launch_command", refuse)
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        with pytest.raises(UserError) as caught:
            launch.launch("m", [], "bf16")
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
    assert str(caught.value) == ("mixed precision bf16 (train.mixed_precision or --mixed_precision): bf16 mixed "
                                 "precision requires PyTorch >= 1.10 and a supported device; use no")


# A worker that takes 7 s to unwind after Ctrl-C, longer than the 5 s Accelerate's own launcher allows its workers
SLOW_TO_STOP = """
import os, pathlib, signal, sys, time
def stop(signum, frame):
    time.sleep(7)
    print("worker: stopped cleanly", file=sys.stderr, flush=True)
    sys.exit(130)
signal.signal(signal.SIGINT, stop)
pathlib.Path(os.environ["READY_FILE"]).write_text("ready")
time.sleep(120)
"""


@pytest.mark.slow  # starts Accelerate's launcher and a worker that takes 7 s to stop (about 15 s)
def test_ctrl_c_waits_for_the_worker_to_stop_and_say_so(tmp_path):
    (tmp_path / "slow_to_stop.py").write_text(SLOW_TO_STOP)
    ready = tmp_path / "ready"
    script = ("from pipeline.core.runner import user_facing; from pipeline.training.launch import launch; "
              "user_facing(lambda: launch('slow_to_stop', []))()")
    env = {**ENV, "HF_HOME": str(tmp_path), "READY_FILE": str(ready), "PYTHONPATH": f"{tmp_path}{os.pathsep}{ROOT}"}
    # Ctrl-C as in a terminal: the launcher and its worker get it
    code, err = stop_when(ROOT, [sys.executable, "-c", script], lambda _: ready.exists(), env=env, wait_s=120)
    assert "worker: stopped cleanly" in err, err[-2000:]
    assert code == 130 and "Traceback" not in err, err[-2000:]
    assert err.count("interrupted; the previous outputs are kept") == 1, err[-2000:]  # said by the launcher


@pytest.mark.parametrize("ended, stop", [
    (subprocess.CalledProcessError(130, "worker"), KeyboardInterrupt),  # the worker stopped on Ctrl-C, silently
    (subprocess.CalledProcessError(143, "worker"), Terminated),
    (SystemExit(143), Terminated),  # Accelerate's own SIGTERM handler, after it ended the worker
    (SignalException("got SIGINT", sigval=signal.SIGINT), KeyboardInterrupt),  # torchrun's, several processes
    (ChildFailedError("train", {1: ProcessFailure(1, 99, 143, "")}), Terminated),
])
def test_a_launch_ended_by_ctrl_c_or_sigterm_ends_as_that_stop(ended, stop):
    assert type(stop_of(ended)) is stop


@pytest.mark.parametrize("ended", [subprocess.CalledProcessError(1, "worker"), SystemExit(2), ValueError("x"),
                                   subprocess.CalledProcessError(-9, "worker"),
                                   ChildFailedError("train", {0: ProcessFailure(0, 99, 1, "")})])
def test_other_failures_of_a_launch_are_no_stop(ended):
    assert stop_of(ended) is None


def test_a_worker_ended_by_a_signal_exits_as_a_shell_reports_it_with_a_line(capsys):
    assert exit_code(0) == 0 and exit_code(130) == 130
    assert exit_code(-signal.SIGKILL) == 137
    assert "ended by SIGKILL" in capsys.readouterr().err
