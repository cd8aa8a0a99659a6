"""Training losses: RIFE's (Laplacian-pyramid L1, teacher reconstruction, flow distillation) and three that keep
detail (census, gradient L1, Charbonnier), each weighted by its ``train.loss.<name>``, computed in float32 whatever
precision the network ran in (a bfloat16 difference of two close frames keeps 2-3 digits).

A detail term with weight 0 is not computed at all, so with those weights at 0 the loss and its gradients are
exactly RIFE's."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import torch
import torch.nn.functional as F

from pipeline.core.params import Loss
from pipeline.models.base import IFNetOutput

PYRAMID_LEVELS = 5  # as in RIFE's LapLoss
DISTILL_MARGIN = 0.01  # distil only where the student's error exceeds the teacher's by this much
_BINOMIAL = torch.tensor([1.0, 4.0, 6.0, 4.0, 1.0]) / 16.0
CENSUS_PATCH = 7  # neighbourhood side of the census transform, as in RIFE's and IFRNet's Ternary loss
# Their soft sign d / sqrt(0.81 + d^2) and soft Hamming distance h / (0.1 + h), on grey values in [0, 1]
CENSUS_SOFTNESS = 0.81
HAMMING_SOFTNESS = 0.1
GREY = (0.299, 0.587, 0.114)  # BT.601 luma weights of R, G, B
# Charbonnier's epsilon, on values in [0, 1]: below about 1e-3 (a quarter of an 8-bit level) the penalty turns
# quadratic, so the gradient stays finite where the prediction is exact; the common choice in super-resolution
CHARBONNIER_EPS = 1e-3


def _blur(x: torch.Tensor) -> torch.Tensor:
    kernel = torch.outer(_BINOMIAL, _BINOMIAL).to(x)
    kernel = kernel.expand(x.shape[1], 1, 5, 5)
    return F.conv2d(F.pad(x, (2, 2, 2, 2), mode="reflect"), kernel, groups=x.shape[1])


def _upsample(x: torch.Tensor) -> torch.Tensor:
    up = x.new_zeros(x.shape[0], x.shape[1], x.shape[2] * 2, x.shape[3] * 2)
    up[:, :, ::2, ::2] = x * 4  # zero insertion keeps a quarter of the samples; the blur spreads them back
    return _blur(up)


def laplacian_pyramid(x: torch.Tensor, levels: int = PYRAMID_LEVELS) -> list[torch.Tensor]:
    bands = []
    current = x
    for _ in range(levels):
        down = _blur(current)[:, :, ::2, ::2]
        bands.append(current - _upsample(down)[:, :, :current.shape[2], :current.shape[3]])
        current = down
    return bands


def laplacian_l1(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Sum over pyramid levels of the mean absolute difference of the band-pass images."""
    return sum(F.l1_loss(a, b) for a, b in zip(laplacian_pyramid(pred), laplacian_pyramid(target), strict=True))


def flow_distillation(out: IFNetOutput, gt: torch.Tensor) -> torch.Tensor:
    """Pull each student flow towards the teacher's (detached) where the teacher reconstructs better."""
    teacher_err = (out.teacher_prediction - gt).abs().mean(1, keepdim=True)
    total = gt.new_zeros(())
    for merged, flow in zip(out.merged, out.flows, strict=True):
        worse = ((merged - gt).abs().mean(1, keepdim=True) > teacher_err + DISTILL_MARGIN).float().detach()
        distance = ((out.teacher_flow.detach() - flow) ** 2).mean(1, keepdim=True).add(1e-12).sqrt()
        total = total + (distance * worse).mean()
    return total


def _grey(x: torch.Tensor) -> torch.Tensor:
    r, g, b = x[:, 0:1], x[:, 1:2], x[:, 2:3]
    return GREY[0] * r + GREY[1] * g + GREY[2] * b


def census_transform(x: torch.Tensor) -> torch.Tensor:
    """Soft census of the grey image: for every pixel whose whole 7x7 neighbourhood lies in the frame, the soft
    sign of each neighbour minus the centre, (B, 49, H - 6, W - 6). Adding a constant to the image changes none."""
    grey = _grey(x)
    eye = torch.eye(CENSUS_PATCH * CENSUS_PATCH).to(grey).reshape(-1, 1, CENSUS_PATCH, CENSUS_PATCH)
    centre = CENSUS_PATCH // 2
    diff = F.conv2d(grey, eye) - grey[:, :, centre:-centre, centre:-centre]
    return diff / torch.sqrt(CENSUS_SOFTNESS + diff ** 2)


def census_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean soft Hamming distance between the census transforms of prediction and target (the ternary loss of
    the frame-interpolation literature): it compares local structure, not brightness."""
    diff = census_transform(pred) - census_transform(target)
    squared = diff ** 2
    return (squared / (HAMMING_SOFTNESS + squared)).mean()


def image_gradients(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Horizontal and vertical finite differences (next pixel minus this one) of every channel."""
    return x[:, :, :, 1:] - x[:, :, :, :-1], x[:, :, 1:, :] - x[:, :, :-1, :]


def gradient_l1(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean absolute difference of the horizontal finite differences (edges) of prediction and target, plus that
    of the vertical ones, per colour channel; a constant offset between them costs nothing."""
    return sum(F.l1_loss(a, b) for a, b in zip(image_gradients(pred), image_gradients(target), strict=True))


def charbonnier(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean of sqrt(d^2 + eps^2) - eps over pixels: 0 for an exact prediction, |d| - eps (L1) for large errors,
    quadratic (smooth) for errors below eps."""
    return (torch.sqrt((pred - target) ** 2 + CHARBONNIER_EPS ** 2) - CHARBONNIER_EPS).mean()


# The detail terms on the student's prediction, by their key under train.loss
DETAIL_TERMS: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "census": census_loss, "gradient": gradient_l1, "charbonnier": charbonnier}


def needs_teacher(weights: Loss) -> bool:
    return weights.teacher > 0 or weights.distill > 0


def in_float32(out: IFNetOutput) -> IFNetOutput:
    """``out`` with every tensor as float32 (a network under autocast may hand back lower-precision ones)."""
    def cast(value):
        if isinstance(value, list):
            return [v.float() for v in value]
        return value.float() if isinstance(value, torch.Tensor) else value
    return dataclasses.replace(out, **{f.name: cast(getattr(out, f.name)) for f in dataclasses.fields(out)})


def rife_loss(out: IFNetOutput, gt: torch.Tensor, weights: Loss) -> dict[str, torch.Tensor]:
    """The loss terms (each before its weight; a detail term only where its weight is above 0) and their
    weighted sum under ``total``, in float32."""
    out, gt = in_float32(out), gt.float()
    terms = {"laplacian": laplacian_l1(out.prediction, gt)}
    if out.teacher_prediction is not None:
        terms["teacher"] = laplacian_l1(out.teacher_prediction, gt)
        terms["distill"] = flow_distillation(out, gt)
    for name, term in DETAIL_TERMS.items():
        if getattr(weights, name) > 0:
            terms[name] = term(out.prediction, gt)
    total = sum(getattr(weights, name) * value for name, value in terms.items())
    return {"total": total, **terms}
