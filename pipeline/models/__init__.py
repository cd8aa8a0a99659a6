"""Model registry: build RIFE flow networks by architecture name and load official checkpoints."""

from __future__ import annotations

from typing import Callable

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


__all__ = ["ARCHITECTURES", "create_model", "load_checkpoint", "read_state_dict", "save_checkpoint"]
