"""A study as users run it: ``python -m pipeline.study --queue``, a queue worker, then ``python -m pipeline.study``.

Queued experiments run in a temporary copy made from git: they must find every file they need there, must not
rerun the data stages (a seed replicate reruns augment, whose views depend on the seed, but never fetch or
extract: every replicate is scored on the same test triplets), and a failed one must be reported as failed, not
with the baseline's metrics. Replicate 1 of the default repeats the baseline's training bit for bit."""

from __future__ import annotations

import json
from io import StringIO

import pandas as pd
import pytest

from tests.helpers import copy_reproduced, run_module, sh, wait_for_queue

pytestmark = [pytest.mark.slow, pytest.mark.network]  # dvc repro in a temporary repo; fetch downloads the demo


@pytest.fixture(scope="module")
def swept(tmp_path_factory, reproduced):
    root, _ = copy_reproduced(reproduced, tmp_path_factory.mktemp("study"))  # the baseline, committed
    for seeds, strategy in (("2", "default"), ("1", "author-1e-5")):  # two seeds of one: the seed noise floor
        queued = run_module("pipeline.study", root, "--queue", "--seeds", seeds, "--only", strategy)
        assert queued.returncode == 0, queued.stderr
    sh(root, "dvc", "exp", "run", "--queue", "-n", "too-high-seed1", "-S", "lr=5.0")  # outside (0, 1]: must fail
    sh(root, "dvc", "queue", "start", "-j", "1")
    return root, wait_for_queue(root, timeout_s=900)


def test_replicates_run_from_git_without_rerunning_fetch_or_extract(swept):
    root, status = swept
    assert status.count("Success") == 3 and status.count("Failed") == 1, status
    for name in ("default-seed1", "default-seed2", "author-1e-5-seed1"):
        log = sh(root, "dvc", "queue", "logs", name).stdout
        assert "Running stage 'evaluate'" in log  # the study's own evaluate params
        for stage in ("check_sources", "fetch", "extract", "lr_find"):  # lr_find is not a target of a study's run
            assert f"Running stage '{stage}'" not in log
        # seed 1 is the baseline's seed: its views are the baseline's, and the default's training is too; seed 2
        # draws new views
        assert ("Running stage 'augment'" in log) == name.endswith("seed2")
        assert ("Running stage 'train'" in log) == (name != "default-seed1")


def test_the_study_reports_every_strategy_over_its_seeds_and_the_failure(swept):
    root, _ = swept
    done = run_module("pipeline.study", root)
    assert done.returncode == 0, done.stderr
    table = pd.read_csv(root / "results/study/summary.csv").set_index("strategy")
    assert set(table.index) == {"default", "author-1e-5", "too-high"}
    seeds = table.loc["default", "seed_gains"].split()
    assert len(seeds) == 2 and seeds[0] != seeds[1]  # each replicate trained on its own views and batches
    assert len(str(table.loc["author-1e-5", "seed_gains"]).split()) == 1
    for name in ("default", "author-1e-5"):
        assert table.loc[name, "gain_ci95_low"] <= table.loc[name, "gain"] <= table.loc[name, "gain_ci95_high"]
    assert table.loc["default", "group"] == "the default"
    assert table.loc["author-1e-5", "group"].endswith("the default")
    assert table.loc["too-high", "runs"] == "1 failed" and pd.isna(table.loc["too-high", "gain"])
    markdown = (root / "results/study/summary.md").read_text()
    assert "## Verdict" in markdown and "Seed noise floor" in markdown and markdown in done.stdout
    assert ": test gain " in markdown and "no evaluate metrics" not in markdown  # the baseline's psnr.gain
    default = next(line for line in markdown.splitlines()  # in bold when it is the best strategy
                   if line.startswith(("| default |", "| **default** |")))
    assert float(default.split("|")[-3]) > 0  # train (min): the end of each run's committed seconds curve
    assert (root / "results/study/summary.png").stat().st_size > 0


def test_replicate_one_of_the_default_repeats_the_baseline_training(swept):
    root, _ = swept
    baseline = next(e for e in json.loads(sh(root, "dvc", "exp", "show", "--json").stdout) if e["rev"] != "workspace")
    revs = {group["name"]: group["revs"][0]["rev"] for group in baseline["experiments"]}

    def finetuned(rev: str) -> pd.Series:
        csv = sh(root, "git", "show", f"{rev}:results/evaluate/per_triplet.csv").stdout
        return pd.read_csv(StringIO(csv))["finetuned_psnr"]

    pd.testing.assert_series_equal(finetuned(revs["default-seed1"]), finetuned("HEAD"))
