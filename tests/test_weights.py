"""Choosing the weights a run keeps (pipeline.training.weights, pipeline.training.fit.Fitted): the best on
validation, early stopping, the moving average, and the val gain of the kept weights over the pretrained ones."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from pipeline.core.params import Train, build
from pipeline.training.fit import Fitted
from pipeline.training.weights import BestOnValidation, ValidationGain, moving_average


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


def test_the_val_gain_is_the_kept_weights_minus_step_zero_with_an_interval():
    last = ValidationGain(keep_best=False)
    last.update([30.0, 31.0, 32.0], 0, is_best=True)  # the pretrained weights
    last.update([30.5, 31.5, 32.5], 80, is_best=True)
    last.update([30.2, 31.2, 32.2], 160, is_best=False)  # keep: last takes the last validation
    summary = last.summary()
    assert summary["gain"] == pytest.approx(0.2) and summary["gain_step"] == 160 and summary["triplets"] == 3
    assert summary["low"] == pytest.approx(0.2) and summary["high"] == pytest.approx(0.2)
    best = ValidationGain(keep_best=True)
    for psnrs, step, is_best in (([30.0, 31.0], 0, True), ([30.5, 31.5], 80, True), ([30.2, 31.2], 160, False)):
        best.update(psnrs, step, is_best)
    assert best.summary()["gain"] == pytest.approx(0.5) and best.summary()["gain_step"] == 80
    again = ValidationGain(keep_best=True)
    again.load_state_dict(best.state_dict())
    assert again.summary() == best.summary()


def test_an_exact_val_triplet_counts_as_100_db_and_no_pretrained_score_means_no_gain():
    gain = ValidationGain(keep_best=False)
    assert gain.summary() == {}
    gain.update([30.0], 0, True)
    gain.update([float("inf")], 10, True)
    assert gain.summary()["gain"] == pytest.approx(70.0)


def test_a_run_keeps_the_last_weights_or_the_best_on_val(params_dict):
    model = torch.nn.Linear(2, 1)
    best = BestOnValidation(patience=0, min_delta=0.0, keep_weights=True)
    best.update(31.0, 40, model)
    at_best = model.weight.detach().clone()
    with torch.no_grad():
        model.weight.add_(1.0)
    fitted = Fitted(model, None, best, state=None)
    net, step = fitted.kept("last")
    assert step is None and torch.equal(net.weight, at_best + 1.0)
    net, step = fitted.kept("best")
    assert step == 40 and torch.equal(net.weight, at_best)
    ema = moving_average(model, replace(build(Train, params_dict["train"], "train."), ema_decay=0.5))
    ema.update_parameters(model)
    assert Fitted(model, ema, BestOnValidation(0, 0.0, False), None).kept("last")[0] is ema.module



# (step, val PSNR, val VMAF) of a run: step 80 has the best PSNR but loses VMAF, step 160 gains both a little
HISTORY = [(0, 30.0, 91.0), (80, 30.4, 90.8), (160, 30.3, 91.05), (240, 30.2, 90.95)]


def kept_step(history: list[tuple[int, float, float | None]], keep_by: str, tolerance: float = 0.0,
              min_delta: float = 0.0) -> int:
    best = BestOnValidation(0, min_delta, False, keep_by, tolerance)
    model = torch.nn.Linear(2, 1)
    for step, psnr, vmaf in history:
        best.update(psnr, step, model, vmaf)
    return best.best_step


@pytest.mark.parametrize("keep_by, tolerance, step", [
    ("psnr", 0.0, 80),
    ("vmaf", 0.0, 160),
    ("psnr_within_vmaf", 0.0, 160),  # step 80's VMAF is 0.2 below the pretrained weights'
    ("psnr_within_vmaf", 0.1, 160),  # still 0.1 too far
    ("psnr_within_vmaf", 0.25, 80),  # within the tolerance: the best PSNR wins
])
def test_keep_by_chooses_by_psnr_by_vmaf_or_by_psnr_within_a_vmaf_tolerance(keep_by, tolerance, step):
    assert kept_step(HISTORY, keep_by, tolerance) == step


def test_when_every_fine_tuned_validation_loses_vmaf_the_pretrained_weights_are_kept():
    history = [(0, 30.0, 91.0), (80, 30.5, 90.5), (160, 30.6, 90.7)]
    assert kept_step(history, "psnr_within_vmaf", tolerance=0.2) == 0
    assert kept_step(history, "psnr_within_vmaf", tolerance=0.35) == 160
    assert kept_step(history, "psnr") == 160


def test_min_delta_is_in_vmaf_points_when_keeping_by_vmaf():
    history = [(0, 30.0, 91.0), (80, 31.0, 91.05), (160, 29.0, 91.3)]
    assert kept_step(history, "vmaf", min_delta=0.1) == 160
    assert kept_step(history, "vmaf", min_delta=0.5) == 0


def test_early_stopping_counts_validations_that_are_not_a_new_best_by_keep_by():
    model = torch.nn.Linear(2, 1)
    best = BestOnValidation(2, 0.0, True, "psnr_within_vmaf", 0.0)
    assert best.update(30.0, 0, model, 91.0)
    assert not best.update(30.5, 80, model, 90.0)  # higher PSNR, but VMAF lost
    again = BestOnValidation(2, 0.0, True, "psnr_within_vmaf", 0.0)
    again.load_state_dict(best.state_dict())  # a resumed run keeps the pretrained VMAF it compares with
    assert not again.update(30.6, 160, model, 90.9) and again.should_stop()
    assert again.best_step == 0 and again.best_vmaf == 91.0 and again.reference_vmaf == 91.0


def test_keeping_by_vmaf_needs_the_vmaf_of_every_validation():
    best = BestOnValidation(0, 0.0, False, "vmaf", 0.0)
    with pytest.raises(ValueError, match="keep_by vmaf needs the VMAF of every validation"):
        best.update(30.0, 0, torch.nn.Linear(2, 1))
    by_psnr = BestOnValidation(0, 0.0, False)
    assert by_psnr.update(30.0, 0, torch.nn.Linear(2, 1)) and by_psnr.best_vmaf is None
