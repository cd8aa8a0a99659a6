"""Image quality metrics on HxWx3 RGB arrays on the 0-255 scale (uint8, or float for unrounded predictions).

``psnr`` and ``ssim`` are the headline numbers of metrics.json (they agree with scikit-image's). ``psnr_y`` and
``ssim_matlab`` are optional extras for comparing with numbers published elsewhere; each is reported under
its own name, never in place of the first two. ``sharpness`` is no similarity: it compares the fine detail of the
prediction with the truth's (1 = as much, below 1 = softer), NaN where the truth is flat.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

import cv2
import numpy as np

PEAK = 255.0
MAX_PSNR = 100.0  # dB; a pixel-exact prediction (infinite PSNR) counts as this in means
SSIM_SIGMA = 1.5  # Gaussian window of Wang et al. (2004)
SSIM_RADIUS = 5  # 11 taps: scikit-image's window (truncate 3.5 x sigma 1.5) and RIFE's ssim_matlab (11x11x11)
SSIM_K1, SSIM_K2 = 0.01, 0.03  # Wang et al.'s stabilising constants, times the peak value
# ITU-R BT.601 luma weights, full range (Y = 0.299 R + 0.587 G + 0.114 B, peak 255). MATLAB's rgb2ycbcr, used by
# super-resolution papers, maps Y to 16..235 instead: its PSNR is 20 log10(255 / 219) = 1.32 dB higher.
BT601_LUMA = np.array([0.299, 0.587, 0.114])
# Laplacian energy (mean squared response, 0-255 luma) below which a ground truth counts as flat: one pixel of an
# 8K frame off by one step of blue (luma 0.114) already gives about 8e-9, so only a truly flat frame is below it
FLAT_ENERGY = 1e-10

Metric = Callable[[np.ndarray, np.ndarray], float]


def _psnr_of(pred: np.ndarray, target: np.ndarray) -> float:
    err = np.mean((pred.astype(np.float64) - target.astype(np.float64)) ** 2) / PEAK**2
    return math.inf if err == 0 else -10.0 * math.log10(err)


def psnr(pred: np.ndarray, target: np.ndarray) -> float:
    """PSNR in dB over all channels, ``-10 log10(mean((target - pred)^2))`` on [0, 1]; inf if identical."""
    return _psnr_of(pred, target)


def luma(image: np.ndarray) -> np.ndarray:
    """BT.601 luma (full range, 0-255 scale) of an HxWx3 RGB image, as float64."""
    return image.astype(np.float64) @ BT601_LUMA


def psnr_y(pred: np.ndarray, target: np.ndarray) -> float:
    """PSNR in dB of the BT.601 luma channel (full range, not rounded); inf if identical."""
    return _psnr_of(luma(pred), luma(target))


@functools.lru_cache(maxsize=1)
def _gaussian_taps() -> np.ndarray:
    offsets = np.arange(-SSIM_RADIUS, SSIM_RADIUS + 1)
    taps = np.exp(-(offsets**2) / (2.0 * SSIM_SIGMA**2))
    return taps / taps.sum()


def _spatial_blur(image: np.ndarray, border: int) -> np.ndarray:
    """Each channel filtered by the 11x11 Gaussian window (separable), in float64."""
    taps = _gaussian_taps()
    return cv2.sepFilter2D(image, cv2.CV_64F, taps, taps, borderType=border)


@functools.lru_cache(maxsize=4)
def _replicate_filter_matrix(length: int) -> np.ndarray:
    """The Gaussian window along an axis of ``length`` samples with replicate padding, as a matrix:
    ``out[i] = sum_j m[i, j] x[j]`` (a tap falling off either end reads the edge sample)."""
    m = np.zeros((length, length))
    for i in range(length):
        for offset, weight in zip(range(-SSIM_RADIUS, SSIM_RADIUS + 1), _gaussian_taps(), strict=True):
            m[i, min(max(i + offset, 0), length - 1)] += weight
    return m


def _volume_blur(image: np.ndarray) -> np.ndarray:
    """The 11x11x11 Gaussian window over rows, columns and the colour channels (one volume), replicate padding."""
    spatial = _spatial_blur(image, cv2.BORDER_REPLICATE)
    return spatial @ _replicate_filter_matrix(image.shape[2]).T


def _ssim_map(x: np.ndarray, y: np.ndarray, blur: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """Wang et al.'s SSIM at every sample, with local statistics weighted by ``blur`` (population covariance)."""
    x, y = x.astype(np.float64), y.astype(np.float64)
    c1, c2 = (SSIM_K1 * PEAK) ** 2, (SSIM_K2 * PEAK) ** 2
    mx, my = blur(x), blur(y)
    vx, vy, vxy = blur(x * x) - mx * mx, blur(y * y) - my * my, blur(x * y) - mx * my
    return ((2 * mx * my + c1) * (2 * vxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))


def ssim(pred: np.ndarray, target: np.ndarray) -> float:
    """Mean SSIM over the three channels, each with its own Gaussian window (sigma 1.5), leaving out a border
    of the window's radius: scikit-image's ``structural_similarity(gaussian_weights=True, sigma=1.5,
    use_sample_covariance=False, data_range=255)``, computed with OpenCV's separable filter (several times faster)."""
    ssim_map = _ssim_map(pred, target, lambda image: _spatial_blur(image, cv2.BORDER_REFLECT))
    r = SSIM_RADIUS
    return float(ssim_map[r:-r, r:-r].mean())


def ssim_matlab(pred: np.ndarray, target: np.ndarray) -> float:
    """SSIM as RIFE's benchmark scripts compute it (``ssim_matlab``): an 11x11x11 Gaussian window (sigma 1.5)
    over rows, columns and the three colour channels treated as one volume, replicate padding, mean over
    every sample. (RIFE shrinks the window for frames under 11 pixels on a side; this never does.)"""
    return float(_ssim_map(pred, target, _volume_blur).mean())


def laplacian_energy(image: np.ndarray) -> float:
    """Mean squared response of the 3x3 Laplacian (4-neighbour: the four neighbours minus 4 x the centre) on the
    BT.601 luma of ``image``, over the pixels whose neighbours are all inside the frame (no padding)."""
    y = luma(image)
    response = y[:-2, 1:-1] + y[2:, 1:-1] + y[1:-1, :-2] + y[1:-1, 2:] - 4.0 * y[1:-1, 1:-1]
    return float(np.mean(response**2))


def sharpness(pred: np.ndarray, target: np.ndarray) -> float:
    """The prediction's Laplacian energy over the truth's: 1.0 = as much fine detail as the truth, below 1 =
    softer (blurred), above 1 = more high-frequency content (noise, ringing, blocking). NaN if the truth is flat
    (energy under :data:`FLAT_ENERGY`); the means skip it."""
    reference = laplacian_energy(target)
    return math.nan if reference < FLAT_ENERGY else laplacian_energy(pred) / reference


METRICS: dict[str, Metric] = {
    "psnr": psnr,
    "ssim": ssim,
    "psnr_y": psnr_y,
    "ssim_matlab": ssim_matlab,
    "sharpness": sharpness,
}


def prediction_to_255(image: np.ndarray, round_prediction: bool = True) -> np.ndarray:
    """A float prediction in [0, 1] on the 0-255 scale: rounded to uint8 (RIFE's benchmark scripts) or kept
    as float32 (the convention of IFRNet, AMT and EMA-VFI)."""
    scaled = np.clip(image, 0.0, 1.0) * 255.0
    return np.round(scaled).astype(np.uint8) if round_prediction else scaled.astype(np.float32)


def paired_difference(a: np.ndarray, b: np.ndarray, samples: int, seed: int) -> dict[str, float]:
    """Mean of ``a - b`` with a percentile bootstrap 95% interval over triplets; pairs with a NaN (a metric
    undefined on that triplet) are left out, and all three numbers are NaN if no pair is left."""
    diff = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    diff = diff[~np.isnan(diff)]
    if not len(diff):
        return {"mean": math.nan, "ci95_low": math.nan, "ci95_high": math.nan}
    rng = np.random.default_rng(seed)
    means = diff[rng.integers(0, len(diff), size=(samples, len(diff)))].mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    return {"mean": float(diff.mean()), "ci95_low": float(low), "ci95_high": float(high)}


def block_bootstrap(series: list[np.ndarray], block: int, samples: int, seed: int) -> dict[str, float]:
    """Mean of the frames of ``series`` (one array of per-frame differences per segment) with a 95% moving-block
    bootstrap interval: each segment is rebuilt from blocks of ``block`` consecutive frames drawn from itself with
    replacement (a segment shorter than a block is one block), so that the correlation of neighbouring frames
    stays inside each draw and the interval is not as narrow as if every frame were an independent sample."""
    rng = np.random.default_rng(seed)
    totals = np.zeros(samples)
    count = 0
    for values in series:
        values = np.asarray(values, dtype=np.float64)
        length = min(block, len(values))
        draws = -(-len(values) // length)
        starts = rng.integers(0, len(values) - length + 1, size=(samples, draws))
        picked = (starts[:, :, None] + np.arange(length)).reshape(samples, -1)[:, :len(values)]
        totals += values[picked].sum(axis=1)
        count += len(values)
    means = totals / count
    low, high = np.percentile(means, [2.5, 97.5])
    mean = float(np.concatenate([np.asarray(v, dtype=np.float64) for v in series]).mean())
    return {"mean": mean, "ci95_low": float(low), "ci95_high": float(high)}


HEADLINE_DECIMALS = 4  # of the numbers in the stages' metrics.json: 0.0001 dB is far below what a run can resolve


def rounded(value):
    """``value`` to :data:`HEADLINE_DECIMALS` places when it is a float, and every float of it when it is a dict
    (so ``dvc exp show`` prints them no wider)."""
    if isinstance(value, dict):
        return {key: rounded(item) for key, item in value.items()}
    return round(value, HEADLINE_DECIMALS) if isinstance(value, float) else value
