"""What the fine-tuned model is compared with: a registry of ways to predict the frame at time t from I0 and I1.

Each entry builds a :data:`~pipeline.scoring.batches.Predictor` from the params: the two RIFE checkpoints, and four
baselines that need no training (repeat the nearer frame, blend the two, warp both along OpenCV's DIS optical flow,
and FFmpeg's motion-compensated ``minterpolate``, what many video people try before RIFE).
Every method honours the triplet's timestep t.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import torch

from pipeline.core.errors import UserError
from pipeline.core.params import Params
from pipeline.core.paths import FINETUNED, PRETRAINED
from pipeline.models import load_checkpoint
from pipeline.scoring.batches import Predictor, model_predictor
from pipeline.scoring.ffmpeg import ffmpeg_mci

# OpenCV's most accurate DIS preset (MEDIUM: finer patches, more iterations). The baseline should be the best
# classical interpolation a user could get from OpenCV in one call; at 1280x720 it costs about 0.04 s per
# flow field on 2 CPU cores, small next to a RIFE forward pass.
DIS_PRESET = cv2.DISOPTICAL_FLOW_PRESET_MEDIUM

MethodBuilder = Callable[[Params, torch.device], Predictor]


def repeat_nearer(img0: np.ndarray, img1: np.ndarray, timestep: float) -> np.ndarray:
    """The input frame nearer in time (I0 at t = 0.5): what a player shows without interpolation."""
    return (img0 if timestep <= 0.5 else img1).astype(np.float32) / 255.0


def blend(img0: np.ndarray, img1: np.ndarray, timestep: float) -> np.ndarray:
    """``(1 - t) I0 + t I1``: a cross-fade, no motion."""
    return ((1.0 - timestep) * img0.astype(np.float32) + timestep * img1.astype(np.float32)) / 255.0


def backward_warp(image: np.ndarray, flow: np.ndarray) -> np.ndarray:
    """``out(x) = image(x + flow(x))``, bilinear, edges repeated; float32."""
    height, width = flow.shape[:2]
    grid_x, grid_y = np.meshgrid(np.arange(width, dtype=np.float32), np.arange(height, dtype=np.float32))
    return cv2.remap(image.astype(np.float32), grid_x + flow[..., 0], grid_y + flow[..., 1], cv2.INTER_LINEAR,
                     borderMode=cv2.BORDER_REPLICATE)


def dis_flow_pair(img0: np.ndarray, img1: np.ndarray, timestep: float) -> np.ndarray:
    """One frame at time t: DIS flow I0 -> I1 and I1 -> I0 on grayscale, I0 warped by t x (I1 -> I0), I1 by
    (1 - t) x (I0 -> I1) (each flow read at the target pixel, as if motion were locally constant), blended
    with weights (1 - t, t). HxWx3 uint8 in, float32 in [0, 1] out."""
    gray0, gray1 = (cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in (img0, img1))
    dis = cv2.DISOpticalFlow_create(DIS_PRESET)
    flow01, flow10 = dis.calc(gray0, gray1, None), dis.calc(gray1, gray0, None)
    warped0 = backward_warp(img0, timestep * flow10)
    warped1 = backward_warp(img1, (1.0 - timestep) * flow01)
    return np.clip(((1.0 - timestep) * warped0 + timestep * warped1) / 255.0, 0.0, 1.0)


def dis_flow(img0: np.ndarray, img1: np.ndarray, timestep: float) -> np.ndarray:
    """:func:`dis_flow_pair` for each triplet of a (B,H,W,3) batch."""
    return np.stack([dis_flow_pair(a, b, timestep) for a, b in zip(img0, img1, strict=True)])


def checkpoint_method(path: Path) -> MethodBuilder:
    def build(params: Params, device: torch.device) -> Predictor:
        model = load_checkpoint(path, params.train.arch).for_inference(device)
        return model_predictor(model, device, params.evaluate.scale, params.evaluate.mixed_precision)
    return build


METHODS: dict[str, MethodBuilder] = {
    "finetuned": checkpoint_method(FINETUNED),
    "pretrained": checkpoint_method(PRETRAINED),
    "repeat": lambda params, device: repeat_nearer,
    "blend": lambda params, device: blend,
    "dis_flow": lambda params, device: dis_flow,
    "ffmpeg_mci": lambda params, device: ffmpeg_mci,
}


def build_methods(names: tuple[str, ...], params: Params, device: torch.device) -> dict[str, Predictor]:
    """The predictors of ``names``, in that order."""
    unknown = [n for n in names if n not in METHODS]
    if unknown:
        raise UserError(f"unknown evaluation method {unknown[0]!r}; known: {', '.join(METHODS)}")
    return {name: METHODS[name](params, device) for name in names}
