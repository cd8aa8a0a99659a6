"""RIFE HD v3.x IFNet: three IFBlocks of width 90 at scales 4/2/1, plus the ``block_tea`` teacher.

Written from the published architecture description; parameter names follow the official
``flownet.pkl`` (``block0.conv0.0.0.weight`` ...) so official weights load with ``strict=True``
and the weights we save load back into the official implementation.
"""

from __future__ import annotations

import torch
from torch import nn

from pipeline.models.base import MIDDLE, FlowNet, IFNetOutput, resize, swap_flow
from pipeline.models.warp import backward_warp

WIDTH = 90  # channels of every HDv3 IFBlock
STUDENT_IN = 3 + 3 + 1 + 4  # warped I0, warped I1, mask logit, flow (two 2-channel fields)
TEACHER_IN = STUDENT_IN + 3  # the teacher also sees the ground-truth middle frame
SCALES = (4.0, 2.0, 1.0)  # coarse-to-fine downsampling factor of each student block
PAD_MULTIPLE = 32  # input sides must be multiples of this (coarsest block works at 1/16)


def _conv(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=True), nn.PReLU(cout))


class IFBlock(nn.Module):
    """Estimates a flow update (4 channels: to I0 and to I1) and a mask logit update at ``1/scale``."""

    def __init__(self, in_channels: int, width: int = WIDTH) -> None:
        super().__init__()
        self.conv0 = nn.Sequential(_conv(in_channels, width // 2, 2), _conv(width // 2, width, 2))
        for i in range(4):
            self.add_module(f"convblock{i}", nn.Sequential(_conv(width, width), _conv(width, width)))
        self.conv1 = self._head(width, 4)
        self.conv2 = self._head(width, 1)

    @staticmethod
    def _head(width: int, out_channels: int) -> nn.Sequential:
        return nn.Sequential(nn.ConvTranspose2d(width, width // 2, 4, 2, 1), nn.PReLU(width // 2),
                             nn.ConvTranspose2d(width // 2, out_channels, 4, 2, 1))

    def forward(self, x: torch.Tensor, flow: torch.Tensor, scale: float) -> tuple[torch.Tensor, torch.Tensor]:
        x = resize(x, 1.0 / scale)
        flow = resize(flow, 1.0 / scale) * (1.0 / scale)
        feat = self.conv0(torch.cat((x, flow), 1))
        for block in (self.convblock0, self.convblock1, self.convblock2, self.convblock3):
            feat = block(feat) + feat
        flow = resize(self.conv1(feat), scale) * scale
        mask = resize(self.conv2(feat), scale)
        return flow, mask


class IFNetHDv3(FlowNet):
    """RIFE HDv3 flow network. ``forward`` takes RGB frames in [0, 1] whose sides are multiples of 32;
    it predicts the middle frame only (the data stages check that the targets are middle frames)."""

    arch = "hdv3"
    pad_multiple = PAD_MULTIPLE
    supports_timestep = False
    # Named parameter groups (for differential rates and freezing): key prefix of each; blocks finest first.
    param_groups = {"block0": "block0.", "block1": "block1.", "block2": "block2.", "teacher": "block_tea."}
    blocks_fine_to_coarse = ("block2", "block1", "block0")
    has_teacher = True

    def __init__(self) -> None:
        super().__init__()
        self.block0 = IFBlock(STUDENT_IN)
        self.block1 = IFBlock(STUDENT_IN)
        self.block2 = IFBlock(STUDENT_IN)
        self.block_tea = IFBlock(TEACHER_IN)

    def forward(self, img0: torch.Tensor, img1: torch.Tensor, gt: torch.Tensor | None = None,
                timestep: float | torch.Tensor = MIDDLE, scale: float = 1.0) -> IFNetOutput:
        flow = img0.new_zeros(img0.shape[0], 4, img0.shape[2], img0.shape[3])
        mask = img0.new_zeros(img0.shape[0], 1, img0.shape[2], img0.shape[3])
        warped0, warped1 = img0, img1
        out = IFNetOutput(prediction=img0)
        for block, block_scale in zip((self.block0, self.block1, self.block2), SCALES, strict=True):
            # HDv3 runs every block in both directions and averages, which keeps it symmetric.
            f0, m0 = block(torch.cat((warped0, warped1, mask), 1), flow, block_scale / scale)
            f1, m1 = block(torch.cat((warped1, warped0, -mask), 1), swap_flow(flow), block_scale / scale)
            flow = flow + (f0 + swap_flow(f1)) / 2
            mask = mask + (m0 - m1) / 2
            warped0 = backward_warp(img0, flow[:, :2])
            warped1 = backward_warp(img1, flow[:, 2:4])
            weight = torch.sigmoid(mask)
            out.flows.append(flow)
            out.masks.append(weight)
            out.merged.append(warped0 * weight + warped1 * (1 - weight))
        out.prediction = out.merged[-1]
        if gt is not None:
            self._teach(out, img0, img1, gt, warped0, warped1, mask)
        return out

    def _teach(self, out: IFNetOutput, img0: torch.Tensor, img1: torch.Tensor, gt: torch.Tensor,
               warped0: torch.Tensor, warped1: torch.Tensor, mask: torch.Tensor) -> None:
        flow = out.flows[-1]
        fd, md = self.block_tea(torch.cat((warped0, warped1, mask, gt), 1), flow, 1.0)
        out.teacher_flow = flow + fd
        weight = torch.sigmoid(mask + md)
        out.teacher_prediction = (backward_warp(img0, out.teacher_flow[:, :2]) * weight
                                  + backward_warp(img1, out.teacher_flow[:, 2:4]) * (1 - weight))
