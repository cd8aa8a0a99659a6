"""Training losses of RIFE: Laplacian-pyramid L1, teacher reconstruction and flow distillation, computed in
float32 whatever precision the network ran in (a bfloat16 difference of two close frames keeps 2-3 digits)."""

from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F

from pipeline.core.params import Loss
from pipeline.models.base import IFNetOutput

PYRAMID_LEVELS = 5  # as in RIFE's LapLoss
DISTILL_MARGIN = 0.01  # distil only where the student's error exceeds the teacher's by this much
_BINOMIAL = torch.tensor([1.0, 4.0, 6.0, 4.0, 1.0]) / 16.0


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
    """Weighted loss terms and their sum under ``total``, in float32."""
    out, gt = in_float32(out), gt.float()
    terms = {"laplacian": laplacian_l1(out.prediction, gt)}
    if out.teacher_prediction is not None:
        terms["teacher"] = laplacian_l1(out.teacher_prediction, gt)
        terms["distill"] = flow_distillation(out, gt)
    total = sum(getattr(weights, name) * value for name, value in terms.items())
    return {"total": total, **terms}
