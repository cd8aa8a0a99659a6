"""Keeping the best weights on validation, early stopping, and the moving average of the weights."""

from __future__ import annotations

from dataclasses import replace

import torch

from pipeline.core.params import Train, build
from pipeline.training.weights import BestOnValidation, moving_average


def test_best_on_validation_tracks_the_best_and_counts_patience():
    model = torch.nn.Linear(2, 1)
    best = BestOnValidation(patience=2, min_delta=0.1, keep_weights=True)
    assert best.update(30.0, 0, model)
    kept = best.weights["weight"].clone()
    with torch.no_grad():
        model.weight.add_(1.0)
    assert not best.update(30.05, 10, model)  # not better by min_delta
    assert not best.should_stop()
    assert not best.update(29.0, 20, model)
    assert best.should_stop()
    assert best.best_step == 0 and torch.equal(best.weights["weight"], kept)  # a copy, not a view
    again = BestOnValidation(2, 0.1, True)
    again.load_state_dict(best.state_dict())
    assert again.best_psnr == 30.0 and again.bad == 2 and again.should_stop()
    assert best.update(31.0, 30, model) and not best.should_stop()


def test_patience_zero_never_stops():
    best = BestOnValidation(patience=0, min_delta=0.0, keep_weights=False)
    model = torch.nn.Linear(2, 1)
    for step in range(5):
        best.update(30.0 - step, step, model)
    assert not best.should_stop() and best.weights is None


def test_moving_average_follows_torchs_ema(params_dict):
    cfg = build(Train, params_dict["train"], "train.")
    assert moving_average(torch.nn.Linear(2, 1), cfg) is None
    model = torch.nn.Linear(2, 1)
    ema = moving_average(model, replace(cfg, ema_decay=0.75))
    start = model.weight.detach().clone()
    ema.update_parameters(model)  # the first update copies
    with torch.no_grad():
        model.weight.add_(4.0)
    ema.update_parameters(model)
    assert torch.allclose(ema.module.weight, start + 0.25 * 4.0)
