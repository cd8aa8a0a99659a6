"""Metrics against known values, scikit-image and a naive re-computation; sharpness; the paired bootstrap."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
from numpy.lib.stride_tricks import sliding_window_view
from skimage.color import rgb2ycbcr
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from pipeline.scoring.metrics import (
    METRICS,
    laplacian_energy,
    luma,
    paired_difference,
    prediction_to_255,
    psnr,
    psnr_y,
    sharpness,
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


SIMILARITIES = sorted(set(METRICS) - {"sharpness"})  # sharpness is a ratio of the two frames' detail


def test_similarities_are_every_metric_but_sharpness():
    assert SIMILARITIES == ["psnr", "psnr_y", "ssim", "ssim_matlab"]


@pytest.mark.parametrize("name", SIMILARITIES)
def test_every_similarity_is_symmetric_and_best_on_identical_frames(name):
    metric = METRICS[name]
    pred, target = noisy_pair((24, 30, 3), 8)
    best = metric(target, target)
    assert best == math.inf if name.startswith("psnr") else best == pytest.approx(1.0)
    assert metric(pred, target) == pytest.approx(metric(target, pred))
    assert metric(pred, target) < best


def grey_checkerboard(size: int, low: int, high: int) -> np.ndarray:
    board = np.where(np.indices((size, size)).sum(axis=0) % 2, high, low).astype(np.uint8)
    return np.repeat(board[..., None], 3, axis=2)


def test_laplacian_energy_of_a_checkerboard_and_of_opencv_laplacian():
    assert laplacian_energy(grey_checkerboard(6, 0, 10)) == pytest.approx(40.0**2)  # every response is +-4 x 10
    image = noisy_pair((20, 26, 3), 4)[0]
    response = cv2.Laplacian(luma(image), cv2.CV_64F, ksize=1)[1:-1, 1:-1]  # the 4-neighbour 3x3 kernel
    assert laplacian_energy(image) == pytest.approx(np.mean(response**2), rel=1e-12)


def test_sharpness_of_a_blurred_checkerboard_is_its_squared_contrast():
    truth = grey_checkerboard(12, 0, 10)
    blurred = cv2.blur(truth, (3, 3))  # 50/9 and 40/9, rounded to 6 and 4 as uint8: contrast 2 of 10
    assert np.unique(blurred).tolist() == [4, 6]
    assert sharpness(blurred, truth) == pytest.approx((2 / 10) ** 2)
    assert sharpness(truth, blurred) == pytest.approx(25.0)  # sharper than its truth


def test_sharpness_is_one_on_the_truth_below_one_when_blurred_and_nan_on_a_flat_truth():
    texture = noisy_pair((32, 40, 3), 6)[0]
    assert sharpness(texture, texture) == 1.0
    for sigma in (0.5, 1.0, 2.0):
        assert sharpness(cv2.GaussianBlur(texture, (0, 0), sigma), texture) < 1.0
    assert 0.0 < sharpness(cv2.GaussianBlur(texture, (0, 0), 2.0), texture) < sharpness(
        cv2.GaussianBlur(texture, (0, 0), 0.5), texture)  # more blur, less detail
    flat = np.full((16, 16, 3), 128, np.uint8)
    assert math.isnan(sharpness(texture[:16, :16], flat)) and math.isnan(sharpness(flat, flat))
    assert sharpness(flat, texture[:16, :16]) == 0.0


def test_sharpness_reads_bt601_luma():
    grey = grey_checkerboard(8, 0, 100)
    blue = np.zeros_like(grey)
    blue[..., 2] = grey[..., 2]  # the same pattern in the blue channel only: luma weight 0.114
    assert sharpness(blue, grey) == pytest.approx(0.114**2)


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


def test_bootstrap_leaves_out_pairs_with_a_nan():
    a = np.array([1.0, np.nan, 3.0, 5.0])
    b = np.array([0.0, np.nan, 1.0, 2.0])
    assert paired_difference(a, b, 200, seed=0) == paired_difference(a[[0, 2, 3]], b[[0, 2, 3]], 200, seed=0)
    assert paired_difference(a, b, 200, seed=0)["mean"] == pytest.approx(2.0)
    nothing = paired_difference(np.array([np.nan]), np.array([np.nan]), 200, seed=0)
    assert all(math.isnan(v) for v in nothing.values())
