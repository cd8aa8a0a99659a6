"""Backward warping of an image by a dense optical flow (stateless)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def backward_warp(image: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """Sample ``image`` (B,C,H,W) at ``pixel + flow`` where ``flow`` is (B,2,H,W) in pixels (x, y).

    Bilinear, border padding and ``align_corners=True``, the convention RIFE's weights were trained with.
    The sampling grid is built per call: no global cache keyed on shapes and devices.
    """
    batch, _, height, width = flow.shape
    xs = torch.linspace(-1.0, 1.0, width, device=flow.device, dtype=flow.dtype)
    ys = torch.linspace(-1.0, 1.0, height, device=flow.device, dtype=flow.dtype)
    base_x = xs.view(1, 1, 1, width).expand(batch, 1, height, width)
    base_y = ys.view(1, 1, height, 1).expand(batch, 1, height, width)
    norm_x = flow[:, 0:1] / ((image.shape[3] - 1.0) / 2.0)
    norm_y = flow[:, 1:2] / ((image.shape[2] - 1.0) / 2.0)
    grid = torch.cat([base_x + norm_x, base_y + norm_y], 1).permute(0, 2, 3, 1)
    return F.grid_sample(image, grid, mode="bilinear", padding_mode="border", align_corners=True)
