"""Metrics against known values and scikit-image; the paired bootstrap."""

from __future__ import annotations

import math

import numpy as np
import pytest
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from pipeline.evaluate import paired_difference
from pipeline.metrics import prediction_to_255, psnr, ssim


def test_psnr_of_a_known_error():
    target = np.full((8, 8, 3), 100, np.uint8)
    pred = target + np.uint8(10)  # every pixel off by 10/255
    assert psnr(pred, target) == pytest.approx(-10 * math.log10((10 / 255) ** 2))
    assert psnr(target, target) == math.inf


def test_metrics_agree_with_scikit_image():
    rng = np.random.default_rng(0)
    target = rng.integers(0, 256, (40, 50, 3), dtype=np.uint8)
    pred = np.clip(target.astype(int) + rng.integers(-20, 21, target.shape), 0, 255).astype(np.uint8)
    assert psnr(pred, target) == pytest.approx(peak_signal_noise_ratio(target, pred, data_range=255))
    expected = structural_similarity(target, pred, channel_axis=2, data_range=255, gaussian_weights=True,
                                     sigma=1.5, use_sample_covariance=False)
    assert ssim(pred, target) == pytest.approx(expected)
    assert ssim(target, target) == pytest.approx(1.0)


def test_prediction_rounding():
    image = np.array([[[0.5 / 255, 1.4 / 255, 1.0]]])
    assert prediction_to_255(image, True).tolist() == [[[0, 1, 255]]]  # numpy rounds half to even
    assert prediction_to_255(image, False).dtype == np.float32


def test_bootstrap_interval_brackets_the_mean_and_is_seeded():
    rng = np.random.default_rng(1)
    a = rng.normal(30.5, 1.0, 200)
    b = a - rng.normal(0.5, 0.2, 200)
    first = paired_difference(a, b, 1000, seed=7)
    assert first == paired_difference(a, b, 1000, seed=7)
    assert first["ci95_low"] < first["mean"] < first["ci95_high"]
    assert 0.4 < first["ci95_low"] and first["ci95_high"] < 0.6
