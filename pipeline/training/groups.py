"""Named parameter groups of each architecture: their rates relative to ``lr``, and when each is frozen.

Every architecture names its groups (``param_groups``: group -> key prefix) and lists its flow blocks from
the finest to the coarsest (``blocks_fine_to_coarse``). A group's rate is ``lr x lr_mult[group] x
layer_decay ** rank``, rank 0 for the finest block; the schedule multiplies every group alike, so these
ratios hold at every step. A frozen group gets no update at all: its gradients are dropped before clipping
and the optimizer step, so neither the gradient nor weight decay touches it (torch's optimizers skip a
parameter without a gradient), and the schedule keeps running for it while it waits.
"""

from __future__ import annotations

from torch import nn

from pipeline.core.errors import UserError
from pipeline.core.params import Train, to_steps
from pipeline.models import ARCHITECTURES


def group_names(arch: str) -> tuple[str, ...]:
    return tuple(ARCHITECTURES[arch].param_groups)


def check_group_names(cfg: Train) -> None:
    """Stop with one line when params name a group the architecture does not have."""
    known = group_names(cfg.arch)
    for key, names in (("train.groups.lr_mult", cfg.groups.lr_mult), ("train.freeze.groups", cfg.freeze.groups)):
        for name in names:
            if name not in known:
                raise UserError(f"params: {key} names group {name!r}; train.arch = {cfg.arch} has: "
                                f"{', '.join(known)}")


def multipliers(cfg: Train) -> dict[str, float]:
    """Each group's rate as a multiple of ``lr``."""
    cls = ARCHITECTURES[cfg.arch]
    rank = {name: i for i, name in enumerate(cls.blocks_fine_to_coarse)}
    return {name: cfg.groups.lr_mult.get(name, 1.0) * cfg.groups.layer_decay ** rank.get(name, 0)
            for name in cls.param_groups}


def unfreeze_steps(cfg: Train) -> dict[str, int]:
    """The step at which each frozen group starts training (groups absent are never frozen)."""
    if cfg.freeze.preset == "freeze_then_all":
        finest = ARCHITECTURES[cfg.arch].blocks_fine_to_coarse[0]
        until = to_steps(cfg.freeze.until, cfg.steps)
        return {name: until for name in group_names(cfg.arch) if name != finest}
    return {name: to_steps(at, cfg.steps) for name, at in cfg.freeze.groups.items()}


def frozen_at(unfreeze: dict[str, int], step: int) -> set[str]:
    return {name for name, at in unfreeze.items() if step < at}


def split_parameters(model: nn.Module, arch: str) -> dict[str, list[tuple[str, nn.Parameter]]]:
    """(name, parameter) pairs of each group; every parameter belongs to exactly one group."""
    prefixes = ARCHITECTURES[arch].param_groups
    groups: dict[str, list[tuple[str, nn.Parameter]]] = {name: [] for name in prefixes}
    for key, param in model.named_parameters():
        owners = [name for name, prefix in prefixes.items() if key.startswith(prefix)]
        if len(owners) != 1:
            raise RuntimeError(f"{arch}: parameter {key} belongs to {len(owners)} groups")
        groups[owners[0]].append((key, param))
    return groups


def decays(key: str, param: nn.Parameter) -> bool:
    """Whether weight decay applies: not to biases, PReLU slopes or per-channel scales (1-D tensors)."""
    return param.ndim > 1 and not key.endswith(".beta")
