"""What every flow network of the registry shares: its training output, padding, inference and bisection."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

MIDDLE = 0.5


@dataclass
class IFNetOutput:
    """Everything a training loss may need; ``prediction`` is the final frame."""

    prediction: torch.Tensor
    merged: list[torch.Tensor] = field(default_factory=list)  # prediction after each block, coarse to fine
    flows: list[torch.Tensor] = field(default_factory=list)  # accumulated flow after each block
    masks: list[torch.Tensor] = field(default_factory=list)  # sigmoid mask after each block
    teacher_prediction: torch.Tensor | None = None  # only for networks with a teacher, when given the target
    teacher_flow: torch.Tensor | None = None


def to_batch(frames: np.ndarray, device: torch.device | str = "cpu") -> torch.Tensor:
    """(B,H,W,3) uint8 frames to a (B,3,H,W) float tensor in [0, 1] on ``device``: the networks' input."""
    return torch.from_numpy(frames).to(device).permute(0, 3, 1, 2).float().div_(255.0)


def from_batch(tensor: torch.Tensor) -> np.ndarray:
    """(B,3,H,W) float tensor to (B,H,W,3) float32 frames."""
    return tensor.permute(0, 2, 3, 1).float().cpu().numpy()


def resize(x: torch.Tensor, factor: float) -> torch.Tensor:
    """Bilinear resize by ``factor`` (half-pixel centres, as RIFE's blocks do)."""
    if factor == 1.0:
        return x
    return F.interpolate(x, scale_factor=factor, mode="bilinear", align_corners=False,
                         recompute_scale_factor=False)


def timestep_map(timestep: float | torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """A (B,1,H,W) map of the timestep, from one float, one value per sample, or a (B,1,H,W) plane itself
    (the exported ONNX graph's input carries the timestep as a plane)."""
    batch, _, height, width = like.shape
    t = torch.as_tensor(timestep, dtype=like.dtype, device=like.device)
    if t.dim() == 4:
        return t
    t = t.reshape(-1, 1, 1, 1)
    return t.expand(batch, 1, height, width)


def swap_flow(flow: torch.Tensor) -> torch.Tensor:
    """Exchange the I0 and I1 halves of a 4-channel flow."""
    return torch.cat((flow[:, 2:4], flow[:, 0:2]), 1)


class FlowNet(nn.Module):
    """Base of every architecture. Subclasses set the class attributes and implement ``forward``:

    ``forward(img0, img1, gt=None, timestep=0.5, scale=1.0) -> IFNetOutput`` on (B,3,H,W) RGB in [0, 1]
    whose sides are multiples of ``pad_multiple / min(scale, 1)``.
    """

    arch: ClassVar[str]
    pad_multiple: ClassVar[int]  # input sides must be multiples of this at scale 1
    supports_timestep: ClassVar[bool]  # False: predicts the middle frame only
    param_groups: ClassVar[dict[str, str]]  # group name -> key prefix (differential rates, freezing)
    blocks_fine_to_coarse: ClassVar[tuple[str, ...]]
    has_teacher: ClassVar[bool] = False
    # Tensors the official files of this version carry for training only, that mark it apart from a
    # version of the same layout (see pipeline.models.identify).
    marker_prefixes: ClassVar[tuple[str, ...]] = ()

    def multiple(self, scale: float = 1.0) -> int:
        return int(self.pad_multiple / min(scale, 1.0))

    @torch.no_grad()
    def interpolate(self, img0: torch.Tensor, img1: torch.Tensor, timestep: float | torch.Tensor = MIDDLE,
                    scale: float = 1.0) -> torch.Tensor:
        """The frame at ``timestep`` between (B,3,H,W) RGB frames in [0, 1] of any H and W: zero-padded
        right and bottom to the architecture's multiple, as the official inference does, then cropped back.
        ``scale`` < 1 estimates flow at lower resolution (RIFE's advice: 0.5 for 4K)."""
        if not self.supports_timestep and not bool(torch.all(torch.as_tensor(timestep) == MIDDLE)):
            raise ValueError(f"RIFE {self.arch} predicts only the middle frame (timestep 0.5), got {timestep}")
        height, width = img0.shape[2:]
        multiple = self.multiple(scale)
        pad = (0, (multiple - width % multiple) % multiple, 0, (multiple - height % multiple) % multiple)
        img0, img1 = (F.pad(x, pad).contiguous(memory_format=self.memory_format()) for x in (img0, img1))
        prediction = self(img0, img1, timestep=timestep, scale=scale).prediction  # float32 under autocast too
        return prediction[:, :, :height, :width].float().contiguous()

    def memory_format(self) -> torch.memory_format:
        """``channels_last`` once the network was moved to it (faster convolutions on CPU: see
        tests/benchmarks/bench_models.py), else the default layout; inputs follow the weights."""
        first = next(self.parameters())
        return torch.channels_last if first.dim() == 4 and not first.is_contiguous() and first.is_contiguous(
            memory_format=torch.channels_last) else torch.contiguous_format

    def for_inference(self, device: torch.device | str = "cpu") -> FlowNet:
        """This network on ``device`` in eval mode, weights in ``channels_last``: the layout every inference
        path of the pipeline uses (outputs differ from the default layout by float rounding, < 1e-4)."""
        return self.to(device).eval().to(memory_format=torch.channels_last)

    @torch.no_grad()
    def in_between(self, img0: torch.Tensor, img1: torch.Tensor, count: int, scale: float = 1.0) -> list[torch.Tensor]:
        """``count`` evenly spaced frames strictly between ``img0`` and ``img1`` (time k / (count + 1)).

        Networks with a timestep input predict each directly. Middle-only networks (HDv3) bisect
        recursively, so ``count + 1`` must be a power of two.
        """
        return in_between(self, img0, img1, count, scale)


def in_between(net, img0: torch.Tensor, img1: torch.Tensor, count: int, scale: float = 1.0) -> list[torch.Tensor]:
    """:meth:`FlowNet.in_between` for anything with ``interpolate``, ``supports_timestep`` and ``arch`` (a
    network, or an exported graph run by onnxruntime)."""
    if net.supports_timestep:
        return [net.interpolate(img0, img1, (k + 1) / (count + 1), scale) for k in range(count)]
    if (count + 1) & count:
        raise ValueError(f"RIFE {net.arch} predicts only middle frames: the frame multiplier must be a "
                         f"power of two, got {count + 1}")
    if count == 0:
        return []
    middle = net.interpolate(img0, img1, MIDDLE, scale)
    half = count // 2
    return in_between(net, img0, middle, half, scale) + [middle] + in_between(net, middle, img1, half, scale)
