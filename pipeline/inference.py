"""Running a flow network on full frames and scoring its predictions."""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from torch import nn

from pipeline.data import from_batch, read_triplet, to_batch
from pipeline.metrics import prediction_to_255, psnr, ssim


@torch.inference_mode()
def interpolate_frames(model: nn.Module, img0: np.ndarray, img1: np.ndarray, device: torch.device) -> np.ndarray:
    """Middle frame of two HxWx3 uint8 frames, as an HxWx3 float array in [0, 1]."""
    return from_batch(model.interpolate(to_batch(img0, device), to_batch(img1, device)))


def score_rows(model: nn.Module, rows: pd.DataFrame, device: torch.device,
               round_prediction: bool) -> list[tuple[float, float]]:
    """(PSNR, SSIM) of the model's middle frame against the ground truth for each manifest row."""
    scores = []
    for _, row in rows.iterrows():
        img0, target, img1 = read_triplet(row)
        pred = prediction_to_255(interpolate_frames(model, img0, img1, device), round_prediction)
        scores.append((psnr(pred, target), ssim(pred, target)))
    return scores
