"""``pipeline.study`` parsing of ``dvc exp show --json`` (the real sweep is in test_study_e2e.py)."""

from __future__ import annotations

import pytest

from pipeline.core.errors import UserError
from pipeline.study import parse, strategy_label


def test_no_commit_is_a_clear_error():
    with pytest.raises(UserError, match="commit the project first"):
        parse([{"rev": "workspace", "data": {}}])


def test_strategy_label_names_what_differs():
    assert strategy_label({"train": {"schedule": "warmup_cosine"}}) == "warmup_cosine"
    label = strategy_label({"train": {"schedule": "warmup_constant", "groups": {"lr_mult": {}, "layer_decay": 0.3},
                                      "freeze": {"preset": "freeze_then_all", "until": 0.25}}})
    assert label == "warmup_constant; layer_decay 0.3; freeze_then_all until 0.25"
