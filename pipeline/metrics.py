"""Image quality metrics on HxWx3 arrays on the 0-255 scale (uint8, or float for unrounded predictions)."""

from __future__ import annotations

import math

import numpy as np
from skimage.metrics import structural_similarity

SSIM_SIGMA = 1.5  # Gaussian window of Wang et al. (2004)


def psnr(pred: np.ndarray, target: np.ndarray) -> float:
    """PSNR in dB over all channels, ``-10 log10(mean((target - pred)^2))`` on [0, 1]; inf if identical."""
    err = np.mean((pred.astype(np.float64) - target.astype(np.float64)) ** 2) / 255.0**2
    return math.inf if err == 0 else -10.0 * math.log10(err)


def ssim(pred: np.ndarray, target: np.ndarray) -> float:
    """Mean SSIM over the three channels with a Gaussian window (sigma 1.5), as scikit-image computes it."""
    return float(structural_similarity(target, pred, channel_axis=2, data_range=255, gaussian_weights=True,
                                       sigma=SSIM_SIGMA, use_sample_covariance=False))


def prediction_to_255(image: np.ndarray, round_prediction: bool = True) -> np.ndarray:
    """A float prediction in [0, 1] on the 0-255 scale: rounded to uint8 (RIFE's benchmark scripts) or kept
    as float32 (the convention of IFRNet, AMT and EMA-VFI)."""
    scaled = np.clip(image, 0.0, 1.0) * 255.0
    return np.round(scaled).astype(np.uint8) if round_prediction else scaled.astype(np.float32)
