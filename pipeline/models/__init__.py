"""Model registry: build RIFE flow networks by architecture name, recognise and load official checkpoints."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from pipeline.core.errors import UserError
from pipeline.models.base import FlowNet, IFNetOutput, from_batch, to_batch
from pipeline.models.checkpoint import (
    Checkpoint,
    describe,
    mismatches,
    read_checkpoint,
    read_state_dict,
    save_checkpoint,
    write_state_dict,
)
from pipeline.models.hdv3 import IFNetHDv3
from pipeline.models.v4 import V4_ARCHITECTURES

if TYPE_CHECKING:
    from pipeline.core.params import Params

ARCHITECTURES: dict[str, type[FlowNet]] = {"hdv3": IFNetHDv3, **V4_ARCHITECTURES}
AUTO = "auto"  # train.arch value: recognise the architecture from the checkpoint's key names and shapes


def create_model(arch: str) -> FlowNet:
    """A freshly initialised network of architecture ``arch`` (one of :data:`ARCHITECTURES`)."""
    try:
        builder = ARCHITECTURES[arch]
    except KeyError:
        raise UserError(f"unknown architecture {arch!r}; known: {', '.join(ARCHITECTURES)}") from None
    return builder()


@functools.cache
def expected_shapes(arch: str) -> dict[str, tuple[int, ...]]:
    """Every tensor name of ``arch`` with its shape (built on the meta device: no memory, no time)."""
    with torch.device("meta"):
        return {k: tuple(v.shape) for k, v in ARCHITECTURES[arch]().state_dict().items()}


def identify(checkpoint: Checkpoint, source: str | Path) -> str:
    """The one architecture whose tensor names and shapes ``checkpoint`` has exactly.

    Two versions with one layout (4.25 and 4.26) are told apart by the training-only tensors that only one
    of them carries; when nothing tells them apart, or nothing fits, one line lists the closest candidates.
    """
    found = {arch: mismatches(checkpoint.state, expected_shapes(arch)) for arch in ARCHITECTURES}
    fits = [arch for arch, keys in found.items() if not any(keys.values())]
    if len(fits) > 1:
        marked = [arch for arch in fits
                  if any(k.startswith(ARCHITECTURES[arch].marker_prefixes) for k in checkpoint.extras)]
        fits = marked if len(marked) == 1 else fits
    if len(fits) == 1:
        return fits[0]
    if fits:
        raise UserError(f"checkpoint {source} fits {' and '.join(fits)} alike (one network layout); "
                        "set train.arch to the version it is")
    closest = sorted(found, key=lambda arch: sum(map(len, found[arch].values())))[:2]
    near = "; ".join(f"{arch}: {describe(found[arch], shown=2)}" for arch in closest)
    raise UserError(f"checkpoint {source} is no known RIFE architecture ({', '.join(ARCHITECTURES)}); "
                    f"closest: {near}")


def resolve_arch(arch: str, checkpoint: str | Path) -> str:
    """``arch`` itself, or for ``auto`` the architecture recognised from ``checkpoint``."""
    if arch != AUTO:
        return arch
    return identify(read_checkpoint(checkpoint), checkpoint)


def with_resolved_arch(params: Params, checkpoint: str | Path) -> Params:
    """``params`` with ``train.arch: auto`` replaced by the architecture of ``checkpoint``."""
    if params.train.arch != AUTO:
        return params
    if not Path(checkpoint).is_file():
        raise UserError(f"train.arch: auto recognises the architecture from {checkpoint}, which is missing; "
                        "run `dvc repro fetch` first or name the architecture in train.arch")
    arch = resolve_arch(AUTO, checkpoint)
    return dataclasses.replace(params, train=dataclasses.replace(params.train, arch=arch))


def fitting_arch(checkpoint: Checkpoint, arch: str, source: str | Path) -> str:
    """``arch`` if ``checkpoint`` has exactly its tensors (for ``auto``, the one it has); otherwise one line."""
    if arch == AUTO:
        return identify(checkpoint, source)
    wrong = describe(mismatches(checkpoint.state, expected_shapes(arch)))
    if wrong:
        raise UserError(f"checkpoint {source} does not fit architecture {arch!r}: {wrong}")
    return arch


def load_checkpoint(path: str | Path, arch: str) -> FlowNet:
    """Build ``arch`` (or the one ``auto`` recognises) and load ``path`` with ``strict=True``; eval mode."""
    checkpoint = read_checkpoint(path)
    model = create_model(fitting_arch(checkpoint, arch, path))
    model.load_state_dict({k: v.float() for k, v in checkpoint.state.items()}, strict=True)
    return model.eval()


def check_timesteps(arch: str, timesteps: Iterable[float], where: str) -> None:
    """Stop with one line when ``where`` holds targets other than the middle frame and ``arch`` (resolved,
    not ``auto``) cannot be told the timestep (HDv3 predicts t = 0.5 only)."""
    if ARCHITECTURES[arch].supports_timestep:
        return
    others = sorted({round(float(t), 4) for t in timesteps} - {0.5})
    if others:
        raise UserError(f"{where} holds targets at t = {', '.join(map(str, others[:4]))} (extract.timesteps: all), "
                        f"but train.arch = {arch} predicts only the middle frame; set extract.timesteps: middle "
                        "or use a model with a timestep input")


__all__ = ["ARCHITECTURES", "AUTO", "Checkpoint", "FlowNet", "IFNetOutput", "check_timesteps", "create_model",
           "expected_shapes", "fitting_arch", "from_batch", "identify", "load_checkpoint",
           "read_checkpoint", "read_state_dict", "resolve_arch", "save_checkpoint", "to_batch", "with_resolved_arch",
           "write_state_dict"]
