"""Backward warping of an image by a dense optical flow (stateless)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def backward_warp(image: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """Sample ``image`` (B,C,H,W) at ``pixel + flow`` where ``flow`` is (B,2,H,W) in pixels (x, y).

    Bilinear, border padding and ``align_corners=True``, the convention RIFE's weights were trained with.
    The sampling grid is built per call, directly in grid_sample's (B,H,W,2) layout: no global cache keyed
    on shapes and devices, and no copy to reorder the channels. It is computed in float32 whatever the inputs
    (under mixed precision, a bfloat16 grid on a 4K frame would be off by up to 8 pixels), and so is the result.
    """
    image, flow = image.float(), flow.float()
    height, width = flow.shape[2:]
    xs = torch.linspace(-1.0, 1.0, width, device=flow.device, dtype=flow.dtype).view(1, 1, width)
    ys = torch.linspace(-1.0, 1.0, height, device=flow.device, dtype=flow.dtype).view(1, height, 1)
    grid = torch.stack((xs + flow[:, 0] / ((image.shape[3] - 1.0) / 2.0),
                        ys + flow[:, 1] / ((image.shape[2] - 1.0) / 2.0)), dim=-1)
    return F.grid_sample(image, grid, mode="bilinear", padding_mode="border", align_corners=True)
