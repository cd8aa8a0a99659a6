"""A learning-rate sweep as users run it: queued experiments, a queue worker, then ``python -m pipeline.study``.

Queued experiments run in a temporary copy made from git: they must find every file they need there, must
not rerun the data stages, and a failed one must be reported as failed, not with the baseline's metrics."""

from __future__ import annotations

import pandas as pd
import pytest

from tests.helpers import copy_project, run_module, sh, tiny_params, wait_for_queue

pytestmark = [pytest.mark.slow, pytest.mark.network]  # dvc repro in a temporary repo; fetch downloads the demo


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    root = tmp_path_factory.mktemp("study")
    copy_project(root)
    tiny_params(root)
    for cmd in (("git", "init", "-q"), ("dvc", "init", "-q"), ("dvc", "config", "core.analytics", "false"),
                ("git", "add", "-A"), ("git", "commit", "-qm", "project"), ("dvc", "repro"),
                ("git", "add", "-A"), ("git", "commit", "-qm", "baseline results")):
        sh(root, *cmd)
    sh(root, "dvc", "exp", "run", "--queue", "-S", "lr=1e-5,1e-4", "-S", "train.schedule=constant")
    sh(root, "dvc", "exp", "run", "--queue", "-n", "too-high", "-S", "lr=5.0")  # outside (0, 1]: must fail
    sh(root, "dvc", "queue", "start", "-j", "1")
    return root, wait_for_queue(root)


def test_queued_experiments_run_from_git_without_rerunning_data_stages(swept):
    root, status = swept
    assert status.count("Success") == 2 and status.count("Failed") == 1, status
    names = [line.split()[0] for line in status.splitlines() if "Success" in line]
    for name in names:
        log = sh(root, "dvc", "queue", "logs", name).stdout
        assert "Running stage 'train'" in log and "Running stage 'evaluate'" in log
        for data_stage in ("fetch", "extract", "augment"):
            assert f"Running stage '{data_stage}'" not in log


def test_study_summarises_the_sweep_and_reports_the_failure(swept):
    root, _ = swept
    done = run_module("pipeline.study", root)
    assert done.returncode == 0, done.stderr
    table = pd.read_csv(root / "results/study/summary.csv")
    assert len(table) == 4  # baseline + 3 experiments
    ran = table[table.state == "success"]
    assert sorted(ran.lr) == [1e-5, 3e-5, 1e-4]  # the baseline's 3e-5 and both queued rates
    assert ran.psnr.nunique() == 3  # each experiment's own metrics
    assert ran.psnr.notna().all() and ran.gain.notna().all() and ran.train_minutes.gt(0).all()
    assert set(ran.strategy) == {"warmup_constant", "constant"}
    failed = table[table.state == "failed"]
    assert list(failed.name) == ["too-high"] and failed.psnr.isna().all() and failed.lr.eq(5.0).all()
    markdown = (root / "results/study/summary.md").read_text()
    assert "| too-high | warmup_constant | 5 |" in markdown and "failed" in markdown
    assert (root / "results/study/summary.png").stat().st_size > 0
    assert markdown in done.stdout
