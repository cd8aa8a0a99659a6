"""Scoring interpolation methods on full-resolution triplets: batches of one frame size and timestep, the
model's flow scale, and the metrics of every prediction (used by evaluate, and by train for validation)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence

import numpy as np
import pandas as pd
import torch
from torch import nn
from tqdm import tqdm

from pipeline.footage.triplets import read_triplet
from pipeline.models import from_batch, to_batch
from pipeline.models.precision import FLOAT32, autocast
from pipeline.scoring.metrics import METRICS, prediction_to_255

# (I0, I1) as (B,H,W,3) uint8 RGB, and t -> the frames at time t as (B,H,W,3) float in [0, 1]
Predictor = Callable[[np.ndarray, np.ndarray, float], np.ndarray]

# scale: auto runs frames up to 1080p (1920x1080 = 2.07 Mpixel) at the model's full scale 1.0 and larger ones at
# 0.5, which RIFE's authors advise for 4K: the flow is estimated at half resolution, so large motions stay within
# reach of the coarsest block, and memory grows with the pixels of the frame, not with 4x its pixels.
FULL_SCALE_MAX_PIXELS = 2_100_000
LARGE_FRAME_SCALE = 0.5
# A model call gets at most the pixels of one 4K frame (several smaller frames, or one larger frame), so memory
# stays near that of one 4K triplet whatever the batch size (about 3 GB on CPU at scale 0.5, see the benchmark).
MAX_BATCH_PIXELS = 3840 * 2160


def model_scale(setting: str | float, height: int, width: int) -> float:
    """The ``scale`` passed to ``model.interpolate`` for frames of this size (``evaluate.scale``)."""
    if setting != "auto":
        return float(setting)
    return 1.0 if height * width <= FULL_SCALE_MAX_PIXELS else LARGE_FRAME_SCALE


def model_predictor(model: nn.Module, device: torch.device, scale: str | float = 1.0,
                    precision: str = FLOAT32) -> Predictor:
    """A :data:`Predictor` running ``model.interpolate`` on ``device`` (padding is the model's own), under autocast
    at ``precision`` (``evaluate.mixed_precision``; the prediction comes back as float32)."""
    autocast(precision, device, "evaluate.mixed_precision")  # one line now where the device cannot run it

    @torch.inference_mode()
    def predict(img0: np.ndarray, img1: np.ndarray, timestep: float) -> np.ndarray:
        with autocast(precision, device, "evaluate.mixed_precision"):
            pred = model.interpolate(to_batch(img0, device), to_batch(img1, device), timestep=timestep,
                                     scale=model_scale(scale, *img0.shape[1:3]))
        return from_batch(pred)

    return predict


def same_size_chunks(rows: pd.DataFrame, batch_size: int) -> Iterator[pd.DataFrame]:
    """Consecutive runs of rows with the same frame size and timestep: at most ``batch_size`` rows, and at most
    MAX_BATCH_PIXELS pixels per frame stack (but at least one row)."""
    keys = list(zip(rows["height"], rows["width"], rows["timestep"], strict=True))
    start = 0
    for end in range(1, len(rows) + 1):
        height, width, _ = keys[start]
        limit = max(1, min(batch_size, MAX_BATCH_PIXELS // (height * width)))
        if end == len(rows) or end - start == limit or keys[end] != keys[start]:
            yield rows.iloc[start:end]
            start = end


def read_chunk(chunk: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(I0, It, I1) of every row of ``chunk``, each stacked as (B,H,W,3) uint8."""
    triplets = [read_triplet(row) for _, row in chunk.iterrows()]
    return tuple(np.stack([t[i] for t in triplets]) for i in range(3))


def score_triplets(rows: pd.DataFrame, predictors: dict[str, Predictor], metrics: Sequence[str],
                   round_prediction: bool, batch_size: int = 1, progress: bool = False,
                   seconds: dict[str, float] | None = None) -> pd.DataFrame:
    """One row per triplet of ``rows`` (same index) and one column ``<method>_<metric>`` per predictor and metric.

    Frames are read once per batch and shared by every predictor; ``seconds`` (if given) collects each
    predictor's running time."""
    scores: dict[str, list[float]] = {f"{m}_{k}": [] for m in predictors for k in metrics}
    with tqdm(total=len(rows), desc="evaluate", unit="triplet", disable=not progress) as bar:
        for chunk in same_size_chunks(rows, batch_size):
            img0, target, img1 = read_chunk(chunk)
            for name, predict in predictors.items():
                began = time.perf_counter()
                preds = predict(img0, img1, float(chunk["timestep"].iloc[0]))
                if seconds is not None:
                    seconds[name] = seconds.get(name, 0.0) + time.perf_counter() - began
                for pred, truth in zip(preds, target, strict=True):
                    pred = prediction_to_255(pred, round_prediction)
                    for key in metrics:
                        scores[f"{name}_{key}"].append(METRICS[key](pred, truth))
            bar.update(len(chunk))
    return pd.DataFrame(scores, index=rows.index)


def predicted_frames(model: nn.Module, rows: pd.DataFrame, device: torch.device, batch_size: int = 1,
                     scale: str | float = 1.0) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(the model's prediction at flow ``scale`` rounded to uint8, the ground truth) of each manifest row in order,
    HxWx3 RGB."""
    predict = model_predictor(model, device, scale)
    for chunk in same_size_chunks(rows, batch_size):
        img0, target, img1 = read_chunk(chunk)
        preds = predict(img0, img1, float(chunk["timestep"].iloc[0]))
        for pred, truth in zip(preds, target, strict=True):
            yield prediction_to_255(pred, round_prediction=True), truth


def score_rows(model: nn.Module, rows: pd.DataFrame, device: torch.device, round_prediction: bool,
               batch_size: int = 1, scale: str | float = 1.0) -> list[tuple[float, float]]:
    """(PSNR, SSIM) of the model's prediction (at flow ``scale``) against the ground truth for each manifest row,
    on whole frames, ``batch_size`` triplets of the same size at a time (train's validation)."""
    table = score_triplets(rows, {"model": model_predictor(model, device, scale)}, ("psnr", "ssim"),
                           round_prediction, batch_size)
    return list(zip(table["model_psnr"], table["model_ssim"], strict=True))
