"""Optimizers by name, over the architecture's named parameter groups."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from torch.optim import Optimizer

from pipeline.core.params import Train
from pipeline.training.groups import decays, frozen_at, multipliers, split_parameters

SGD_MOMENTUM = 0.9

OPTIMIZERS: dict[str, Callable[[list[dict]], Optimizer]] = {
    "adamw": lambda groups: torch.optim.AdamW(groups),
    "adam": lambda groups: torch.optim.Adam(groups),
    "sgd": lambda groups: torch.optim.SGD(groups, momentum=SGD_MOMENTUM),
}


def param_groups(model: nn.Module, lr: float, cfg: Train) -> list[dict]:
    """One optimizer group per named group and weight-decay kind, each at its own multiple of ``lr``.
    Frozen groups are included from the start (adding groups later breaks schedulers)."""
    rates = multipliers(cfg)
    groups = []
    for name, members in split_parameters(model, cfg.arch).items():
        decayed = [decays(key, p) or not cfg.groups.no_decay_bias for key, p in members]
        with_decay = [p for (_, p), d in zip(members, decayed, strict=True) if d]
        without = [p for (_, p), d in zip(members, decayed, strict=True) if not d]
        for params, decay in ((with_decay, cfg.weight_decay), (without, 0.0)):
            if params:
                groups.append({"name": name, "params": params, "lr": lr * rates[name], "weight_decay": decay})
    return groups


def build_optimizer(model: nn.Module, lr: float, cfg: Train) -> Optimizer:
    return OPTIMIZERS[cfg.optimizer](param_groups(model, lr, cfg))


def drop_frozen_gradients(optimizer: Optimizer, frozen: set[str]) -> None:
    """Remove the gradients of frozen groups so that the step leaves them exactly as they are."""
    if frozen:
        for group in optimizer.param_groups:
            if group["name"] in frozen:
                for param in group["params"]:
                    param.grad = None


class PullToPretrained:
    """L2-SP in its decoupled form: after each optimizer step, every trained weight moves back towards its
    pretrained value by its group's current rate x ``strength`` x its distance from it, as AdamW's weight decay
    moves it towards zero. It keeps the pretrained behaviour where the footage gives little signal (Li et al.,
    "Explicit inductive bias for transfer learning with convolutional networks", ICML 2018, add the same pull as a
    loss term; decoupled, Adam's scaling does not weaken it). At a rate of 1e-4, strength 100 halves a weight's
    distance from its pretrained value in about 70 steps when nothing else moves it.

    The anchors are copies taken before training starts, from the pretrained weights (a resumed run takes them
    again from the pretrained checkpoint, so they are never saved)."""

    def __init__(self, optimizer: Optimizer, strength: float) -> None:
        self.optimizer, self.strength = optimizer, strength
        self.anchors = {p: p.detach().clone() for group in optimizer.param_groups for p in group["params"]}

    @torch.no_grad()
    def step(self, frozen: set[str] = frozenset()) -> None:
        for group in self.optimizer.param_groups:
            if group["name"] in frozen:
                continue
            for param in group["params"]:
                param.sub_(param - self.anchors[param], alpha=group["lr"] * self.strength)


def pull_to_pretrained(optimizer: Optimizer, cfg: Train) -> PullToPretrained | None:
    """The L2-SP pull of ``train.l2sp`` (None when it is 0). Build it before the optimizer holds other weights."""
    return PullToPretrained(optimizer, cfg.l2sp) if cfg.l2sp > 0 else None


def group_lrs(optimizer: Optimizer, frozen: set[str] = frozenset()) -> dict[str, float]:
    """The learning rate in force now, by group name (0 for a frozen group)."""
    return {group["name"]: 0.0 if group["name"] in frozen else group["lr"] for group in optimizer.param_groups}


__all__ = ["OPTIMIZERS", "PullToPretrained", "build_optimizer", "drop_frozen_gradients", "frozen_at", "group_lrs",
           "param_groups", "pull_to_pretrained"]
