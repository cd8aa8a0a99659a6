"""``pipeline.study`` parsing of ``dvc exp show --json`` and choosing the runs a machine queues (the real sweep
is in test_study_e2e.py, the study shared over two clones in test_sharing_e2e.py)."""

from __future__ import annotations

import json

import pytest

from pipeline.core.errors import UserError
from pipeline.study import (LR_FIND_METRICS, STUDY, Row, markdown, parse, parse_shard, rank_by_validation,
                            select_runs, spearman, strategy_label, study_runs, validation_verdict)
from tests.helpers import assert_user_error, run_module


def test_no_commit_is_a_clear_error():
    with pytest.raises(UserError, match="commit the project first"):
        parse([{"rev": "workspace", "data": {}}])


def test_strategy_label_names_what_differs():
    assert strategy_label({"train": {"schedule": "warmup_cosine"}}) == "warmup_cosine"
    label = strategy_label({"train": {"schedule": "warmup_constant", "groups": {"lr_mult": {}, "layer_decay": 0.3},
                                      "freeze": {"preset": "freeze_then_all", "until": 0.25}}})
    assert label == "warmup_constant; layer_decay 0.3; freeze_then_all until 0.25"


def ran(name: str, val: float | None, test: float | None) -> Row:
    return Row(name=name, state="success", strategy="constant", lr=1e-5, steps=10, gain=test, gain_low=test,
               gain_high=test, val_gain=val, val_gain_low=val, val_gain_high=val)


def test_runs_are_ranked_by_val_gain_and_the_first_is_chosen():
    rows = rank_by_validation([ran("a", 0.1, 0.3), ran("failed", None, None), ran("b", 0.3, 0.2), ran("c", 0.2, 0.1)])
    assert [r.name for r in rows] == ["b", "c", "a", "failed"]
    assert [r.chosen for r in rows] == [True, False, False, False]
    table = markdown(rows)
    assert "| **b** (chosen) |" in table and "+0.300 (+0.300 .. +0.300)" in table
    verdict = validation_verdict(rows)
    assert "validation chooses b (val gain +0.300 dB); its test gain: +0.200 dB" in verdict
    assert "the best test gain was a (+0.300 dB)" in verdict
    assert "Spearman rank correlation of val and test gains over 3 runs: -0.50" in verdict
    assert "does not rank runs as the test does" in verdict


def test_spearman_is_the_rank_correlation():
    assert spearman([1, 2, 3, 4], [10, 20, 30, 400]) == 1.0
    assert spearman([1, 2, 3], [3, 2, 1]) == -1.0
    assert spearman([1, 2], [1, 2]) is None and spearman([1, 1, 1], [1, 2, 3]) is None


def test_without_val_gains_nothing_is_chosen():
    rows = rank_by_validation([ran("a", None, 0.2)])
    assert not rows[0].chosen and "nothing to choose by validation" in validation_verdict(rows)


@pytest.fixture(params=[False, True], ids=["without-lr-find", "with-lr-find"])
def whole_study(request, tmp_path) -> dict:
    if request.param:
        (tmp_path / LR_FIND_METRICS).parent.mkdir(parents=True)
        (tmp_path / LR_FIND_METRICS).write_text(json.dumps({"suggested": {"valley": 1.5e-4}}))
    return study_runs(tmp_path)


@pytest.mark.parametrize("machines", range(1, 10))
def test_shards_are_disjoint_and_together_the_whole_study(whole_study, machines):
    shards = [select_runs(whole_study, shard=(k, machines)) for k in range(1, machines + 1)]
    names = [name for shard in shards for name in shard]
    assert len(names) == len(set(names))  # no run is queued on two machines
    assert set(names) == set(whole_study)  # and none is left out
    assert all(shard[name] == whole_study[name] for shard in shards for name in shard)
    assert max(map(len, shards)) - min(map(len, shards)) <= 1


def test_the_lr_find_run_comes_last_so_it_moves_no_other_run(tmp_path):
    without = study_runs(tmp_path)
    (tmp_path / LR_FIND_METRICS).parent.mkdir(parents=True)
    (tmp_path / LR_FIND_METRICS).write_text(json.dumps({"suggested": {"valley": 1.5e-4}}))
    with_it = study_runs(tmp_path)
    assert list(with_it) == [*STUDY, "lr-find-valley"] and with_it["lr-find-valley"]["lr"] == "0.00015"
    for k in (1, 2, 3):
        assert set(select_runs(without, shard=(k, 3))) <= set(select_runs(with_it, shard=(k, 3)))


def test_only_picks_runs_in_the_study_order_before_sharding(tmp_path):
    runs = study_runs(tmp_path)
    only = ["one-cycle-1e-4", "author-1e-5", "constant-1e-4"]
    assert list(select_runs(runs, only)) == ["author-1e-5", "constant-1e-4", "one-cycle-1e-4"]
    assert list(select_runs(runs, only, shard=(1, 2))) == ["author-1e-5", "one-cycle-1e-4"]
    assert list(select_runs(runs, only, shard=(2, 2))) == ["constant-1e-4"]
    with pytest.raises(UserError, match="--only nope: not a run of the study; its runs are author-1e-5, "):
        select_runs(runs, ["nope", "author-1e-5"])


@pytest.mark.parametrize("spec", ["1/3", "3/3", " 2 / 3"])
def test_a_shard_is_k_of_n(spec):
    k, n = parse_shard(spec)
    assert n == 3 and k in (1, 2, 3)


@pytest.mark.parametrize("spec", ["0/3", "4/3", "1/0", "3", "1/3/2", "a/b", "-1/3", "", "1.5/3"])
def test_a_bad_shard_is_one_line_naming_the_flag(spec, tmp_path):
    with pytest.raises(UserError, match=f"--shard {spec}: expected k/n"):
        parse_shard(spec)


@pytest.mark.parametrize("args, fragment", [(["--queue", "--shard", "2/1"], "--shard 2/1: expected k/n"),
                                            (["--shard", "1/2"], "use them with --queue"),
                                            (["--queue", "--only", ","], "--only names no run")])
def test_bad_flags_stop_before_anything_is_queued(args, fragment, tmp_path):
    done = run_module("pipeline.study", tmp_path, *args)  # no git repository: queueing anything would fail
    assert_user_error(done, fragment)
