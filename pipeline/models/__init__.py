"""Model registry: build RIFE flow networks by architecture name and load official checkpoints."""

from __future__ import annotations

from typing import Callable, Iterable

from torch import nn

from pipeline.errors import UserError
from pipeline.models.checkpoint import load_checkpoint, read_state_dict, save_checkpoint
from pipeline.models.hdv3 import IFNetHDv3

ARCHITECTURES: dict[str, Callable[[], nn.Module]] = {
    "hdv3": IFNetHDv3,
}


def create_model(arch: str) -> nn.Module:
    """A freshly initialised network of architecture ``arch`` (one of :data:`ARCHITECTURES`)."""
    try:
        builder = ARCHITECTURES[arch]
    except KeyError:
        raise UserError(f"unknown architecture {arch!r}; known: {', '.join(sorted(ARCHITECTURES))}") from None
    return builder()


def check_timesteps(arch: str, timesteps: Iterable[float], where: str) -> None:
    """Stop with one line when ``where`` holds targets other than the middle frame and ``arch`` cannot
    be told the timestep (HDv3 predicts t = 0.5 only)."""
    builder = ARCHITECTURES.get(arch)
    if getattr(builder, "supports_timestep", True):
        return
    others = sorted({round(float(t), 4) for t in timesteps} - {0.5})
    if others:
        raise UserError(f"{where} holds targets at t = {', '.join(map(str, others[:4]))} (extract.timesteps: all), "
                        f"but train.arch = {arch} predicts only the middle frame; set extract.timesteps: middle "
                        "or use a model with a timestep input")


__all__ = ["ARCHITECTURES", "check_timesteps", "create_model", "load_checkpoint", "read_state_dict", "save_checkpoint"]
