"""``pipeline.study`` parsing of ``dvc exp show --json`` (the real sweep is in test_study_e2e.py)."""

from __future__ import annotations

import pytest

from pipeline.core.errors import UserError
from pipeline.study import Row, markdown, parse, rank_by_validation, spearman, strategy_label, validation_verdict


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
