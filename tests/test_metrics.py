"""Metrics against known values, scikit-image and a naive re-computation; the paired bootstrap."""

from __future__ import annotations

import math

import numpy as np
import pytest
from numpy.lib.stride_tricks import sliding_window_view
from skimage.color import rgb2ycbcr
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from pipeline.scoring.metrics import (
    METRICS,
    luma,
    paired_difference,
    prediction_to_255,
    psnr,
    psnr_y,
    ssim,
    ssim_matlab,
)


def noisy_pair(shape: tuple[int, int, int], seed: int, spread: int = 20) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    target = rng.integers(0, 256, shape, dtype=np.uint8)
    pred = np.clip(target.astype(int) + rng.integers(-spread, spread + 1, shape), 0, 255).astype(np.uint8)
    return pred, target


def test_psnr_of_a_known_error():
    target = np.full((8, 8, 3), 100, np.uint8)
    pred = target + np.uint8(10)  # every pixel off by 10/255
    assert psnr(pred, target) == pytest.approx(-10 * math.log10((10 / 255) ** 2))
    assert psnr(target, target) == math.inf


@pytest.mark.parametrize("shape, seed", [((40, 50, 3), 0), ((23, 31, 3), 1), ((64, 11, 3), 2)])
def test_metrics_agree_with_scikit_image(shape, seed):
    pred, target = noisy_pair(shape, seed)
    assert psnr(pred, target) == pytest.approx(peak_signal_noise_ratio(target, pred, data_range=255), rel=1e-12)
    expected = structural_similarity(target, pred, channel_axis=2, data_range=255, gaussian_weights=True,
                                     sigma=1.5, use_sample_covariance=False)
    assert ssim(pred, target) == pytest.approx(expected, rel=1e-10)
    assert ssim(target, target) == pytest.approx(1.0)


def test_ssim_agrees_with_scikit_image_on_unrounded_predictions():
    pred, target = noisy_pair((30, 40, 3), 5)
    pred = pred.astype(np.float32) + 0.3
    expected = structural_similarity(target.astype(np.float64), pred.astype(np.float64), channel_axis=2,
                                     data_range=255, gaussian_weights=True, sigma=1.5, use_sample_covariance=False)
    assert ssim(pred, target) == pytest.approx(expected, rel=1e-10)


def test_luma_is_bt601_as_scikit_image_scales_it():
    image = noisy_pair((9, 7, 3), 3)[0]
    studio = rgb2ycbcr(image)[..., 0]  # 16 + 219 x (0.299 R + 0.587 G + 0.114 B), R, G, B in [0, 1]
    assert luma(image) == pytest.approx((studio - 16.0) * 255.0 / 219.0, abs=1e-9)


def test_psnr_y_known_errors():
    target = np.full((8, 8, 3), 100, np.uint8)
    grey_error = target + np.uint8(10)  # the same error in all channels is the same error in luma
    assert psnr_y(grey_error, target) == pytest.approx(psnr(grey_error, target))
    red_error = target.copy()
    red_error[..., 0] += 10  # luma moves by 0.299 x 10
    assert psnr_y(red_error, target) == pytest.approx(-10 * math.log10((2.99 / 255) ** 2))
    assert psnr_y(target, target) == math.inf


def naive_ssim_matlab(pred: np.ndarray, target: np.ndarray) -> float:
    """RIFE's ssim_matlab written out directly: [0, 1] values, an explicit 11x11x11 window over (channel, row,
    column) of the edge-padded volume, and SSIM at every sample."""
    offsets = np.arange(-5, 6)
    g = np.exp(-(offsets**2) / (2 * 1.5**2))
    window = g[:, None, None] * g[None, :, None] * g[None, None, :]
    window /= window.sum()

    def local_mean(volume: np.ndarray) -> np.ndarray:
        padded = np.pad(volume, 5, mode="edge")
        return np.einsum("cyxijk,ijk->cyx", sliding_window_view(padded, (11, 11, 11)), window)

    x = target.transpose(2, 0, 1).astype(np.float64) / 255
    y = pred.transpose(2, 0, 1).astype(np.float64) / 255
    c1, c2 = 0.01**2, 0.03**2
    mx, my = local_mean(x), local_mean(y)
    vx, vy, vxy = local_mean(x * x) - mx**2, local_mean(y * y) - my**2, local_mean(x * y) - mx * my
    return float((((2 * mx * my + c1) * (2 * vxy + c2)) / ((mx**2 + my**2 + c1) * (vx + vy + c2))).mean())


@pytest.mark.parametrize("shape, seed", [((12, 13, 3), 0), ((16, 11, 3), 1), ((11, 20, 3), 2)])
def test_ssim_matlab_matches_a_naive_computation(shape, seed):
    pred, target = noisy_pair(shape, seed, spread=60)
    assert ssim_matlab(pred, target) == pytest.approx(naive_ssim_matlab(pred, target), rel=1e-10)


def test_ssim_matlab_analytic_values():
    a, b = 60, 200
    target = np.full((15, 17, 3), a, np.uint8)
    pred = np.full((15, 17, 3), b, np.uint8)
    c1 = (0.01 * 255) ** 2  # flat images: no variance, SSIM is the luminance term alone
    assert ssim_matlab(pred, target) == pytest.approx((2 * a * b + c1) / (a * a + b * b + c1))
    noisy, clean = noisy_pair((20, 24, 3), 4)
    assert ssim_matlab(clean, clean) == pytest.approx(1.0)
    assert ssim_matlab(noisy, clean) == pytest.approx(ssim_matlab(clean, noisy))
    assert ssim_matlab(noisy, clean) != pytest.approx(ssim(noisy, clean), abs=1e-4)  # not the same number


def test_ssim_matlab_treats_the_channels_as_one_volume():
    """Flat frames, red off by d: along the channel axis the window sees red with the Gaussian weight w_c of the
    taps that land on it (replicate padding), so channel c has mean a + w_c d and variance w_c (1 - w_c) d^2."""
    a, d = 100.0, 40.0
    target = np.full((12, 12, 3), a, np.uint8)
    pred = target.copy()
    pred[..., 0] += np.uint8(d)
    taps = np.exp(-(np.arange(-5, 6) ** 2) / (2 * 1.5**2))
    taps /= taps.sum()
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    expected = []
    for channel in range(3):
        w = taps[np.arange(-5, 6) + channel <= 0].sum()  # taps reading channel 0 (or beyond, replicated)
        mean, var = a + w * d, w * (1 - w) * d * d
        expected.append((2 * a * mean + c1) / (a * a + mean * mean + c1) * c2 / (var + c2))
    assert ssim_matlab(pred, target) == pytest.approx(np.mean(expected), rel=1e-9)


@pytest.mark.parametrize("name", sorted(METRICS))
def test_every_metric_is_symmetric_and_best_on_identical_frames(name):
    metric = METRICS[name]
    pred, target = noisy_pair((24, 30, 3), 8)
    best = metric(target, target)
    assert best == math.inf if name.startswith("psnr") else best == pytest.approx(1.0)
    assert metric(pred, target) == pytest.approx(metric(target, pred))
    assert metric(pred, target) < best


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
