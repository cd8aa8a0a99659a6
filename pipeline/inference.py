"""Running a flow network on full frames and scoring its predictions."""

from __future__ import annotations

from typing import Iterator

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


def same_size_chunks(rows: pd.DataFrame, batch_size: int) -> Iterator[pd.DataFrame]:
    """Consecutive runs of at most ``batch_size`` rows whose frames have the same size."""
    start = 0
    for end in range(1, len(rows) + 1):
        full = end - start == batch_size
        if end == len(rows) or full or tuple(rows.iloc[end][["height", "width"]]) != tuple(
                rows.iloc[start][["height", "width"]]):
            yield rows.iloc[start:end]
            start = end


@torch.inference_mode()
def score_rows(model: nn.Module, rows: pd.DataFrame, device: torch.device, round_prediction: bool,
               batch_size: int = 1) -> list[tuple[float, float]]:
    """(PSNR, SSIM) of the model's middle frame against the ground truth for each manifest row, at full
    frame size, ``batch_size`` triplets of the same size at a time."""
    scores = []
    for chunk in same_size_chunks(rows, batch_size):
        triplets = [read_triplet(row) for _, row in chunk.iterrows()]
        img0 = torch.cat([to_batch(t[0], device) for t in triplets])
        img1 = torch.cat([to_batch(t[2], device) for t in triplets])
        preds = model.interpolate(img0, img1)
        for i, (_, target, _) in enumerate(triplets):
            pred = prediction_to_255(from_batch(preds[i:i + 1]), round_prediction)
            scores.append((psnr(pred, target), ssim(pred, target)))
    return scores
