"""The same params train the same weights on any number of cores: ``train.threads`` fixes the thread count, so
the CPUs a run may use (its affinity, as a 2-core and a 16-core machine differ) do not change a bit of the result.

The thread count only matters to kernels that split their sums over threads; on this project's AVX2 machines
the default kernels do not, so the runs below cap oneDNN at SSE4.1, whose convolution kernels do (the same
params gave different weights on one and two threads there), to show both that the setting holds and that the
test would see it fail."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.helpers import ENV, copy_reproduced, file_md5, sh

pytestmark = [pytest.mark.slow, pytest.mark.network]  # trains three times (a step each); fetch gets the weights

THREAD_SENSITIVE = {"ONEDNN_MAX_CPU_ISA": "SSE41"}  # kernels whose sums depend on the thread count


def cores() -> list[int]:
    return sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []


needs_two_cores = pytest.mark.skipif(len(cores()) < 2 or shutil.which("taskset") is None,
                                     reason="needs two CPU cores and taskset to run on one and on two")


@pytest.fixture(scope="module")
def project(tmp_path_factory, reproduced):
    """The reproduced tiny project with views and batches of the default size (smaller ones leave oneDNN too
    little to split over threads): only augment runs again."""
    root, _ = copy_reproduced(reproduced, tmp_path_factory.mktemp("threads"))
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["augment"]["crop"] = 224
    params["train"].update(steps=1, warmup_steps=0, val_every=1, batch_size=4)  # a step: its sums differ over threads
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    sh(root, "dvc", "repro", "augment")
    return root


def log_of(root: Path) -> Path:
    return root.with_name(f"{root.name}.train.log")


def start_training(root: Path, cpus: list[int], threads: int) -> subprocess.Popen:
    """Train in ``root`` with ``train.threads`` = ``threads`` on the CPUs ``cpus`` only."""
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["train"]["threads"] = threads
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    with open(log_of(root), "w") as log:  # a file: a full pipe would stall the run
        return subprocess.Popen(["taskset", "-c", ",".join(map(str, cpus)), sys.executable, "-m", "pipeline.train"],
                                cwd=root, env={**ENV, **THREAD_SENSITIVE}, stdout=log, stderr=subprocess.STDOUT)


def trained(root: Path, proc: subprocess.Popen, threads: int, cores: int) -> str:
    """The md5 of the weights a :func:`start_training` run wrote, once it has ended well."""
    proc.wait(timeout=900)
    err = log_of(root).read_text()
    assert proc.returncode == 0, err[-3000:]
    assert f"{threads or cores} CPU thread(s) each" in err
    return file_md5(root / "models/finetuned/flownet.pkl")


@pytest.fixture(scope="module")
def weights(project, tmp_path_factory) -> dict[tuple[int, int], str]:
    """md5 of the weights trained on (cores, threads): 2 threads on one core and on two; 0 (every core) on one.
    The two one-core runs run side by side, each on a core of its own, in two copies of the project."""
    one, other, two = cores()[:1], cores()[1:2], cores()[:2]
    twin = tmp_path_factory.mktemp("threads-twin") / "project"
    shutil.copytree(project, twin, symlinks=True)
    runs = {(1, 2): (project, start_training(project, one, threads=2)),
            (1, 0): (twin, start_training(twin, other, threads=0))}
    found = {key: trained(root, proc, key[1], key[0]) for key, (root, proc) in runs.items()}
    found[2, 2] = trained(project, start_training(project, two, threads=2), 2, 2)
    return found


@needs_two_cores
def test_the_same_params_give_the_same_weights_on_one_core_and_on_two(weights):
    assert weights[1, 2] == weights[2, 2]


@needs_two_cores
def test_without_a_fixed_thread_count_the_cores_change_the_weights(weights):
    """The control: ``threads: 0`` takes every core it may use (one thread on one core), and the weights differ
    from those of two threads, as they would between a 1-core and a 2-core machine."""
    assert weights[1, 0] != weights[2, 2]
