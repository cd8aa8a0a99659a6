"""The relaunch of the train stage under ``accelerate launch``: the user's flags kept, Accelerate's defaults spelled
out where no flag or config sets them, so the launcher prints no warning about defaults."""

from __future__ import annotations

import signal
import subprocess
import sys

import pytest
from accelerate.commands import config
from accelerate.commands.launch import launch_command_parser

from pipeline.core.errors import UserError
from pipeline.training import launch
from pipeline.training.launch import launch_flags
from tests.helpers import ENV, ROOT

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
    handler = signal.getsignal(signal.SIGTERM)
    try:
        with pytest.raises(UserError) as caught:
            launch.launch("m", [], "bf16")
    finally:
        signal.signal(signal.SIGTERM, handler)
    assert str(caught.value) == ("mixed precision bf16 (train.mixed_precision or --mixed_precision): bf16 mixed "
                                 "precision requires PyTorch >= 1.10 and a supported device; use no")
