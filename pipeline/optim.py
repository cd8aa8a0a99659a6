"""Optimizers by name, over named parameter groups."""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn
from torch.optim import Optimizer

from pipeline.params import Train

SGD_MOMENTUM = 0.9

OPTIMIZERS: dict[str, Callable[..., Optimizer]] = {
    "adamw": lambda groups, lr, wd: torch.optim.AdamW(groups, lr=lr, weight_decay=wd),
    "adam": lambda groups, lr, wd: torch.optim.Adam(groups, lr=lr, weight_decay=wd),
    "sgd": lambda groups, lr, wd: torch.optim.SGD(groups, lr=lr, momentum=SGD_MOMENTUM, weight_decay=wd),
}


def param_groups(model: nn.Module, lr: float) -> list[dict]:
    """Named parameter groups; every group's rate is expressed relative to ``lr``."""
    return [{"name": "all", "params": [p for p in model.parameters() if p.requires_grad], "lr": lr}]


def build_optimizer(model: nn.Module, lr: float, cfg: Train) -> Optimizer:
    return OPTIMIZERS[cfg.optimizer](param_groups(model, lr), lr, cfg.weight_decay)


def group_lrs(optimizer: Optimizer) -> dict[str, float]:
    """The learning rate in force now, by group name."""
    return {group.get("name", str(i)): group["lr"] for i, group in enumerate(optimizer.param_groups)}
