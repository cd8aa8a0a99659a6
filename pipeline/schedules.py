"""Learning-rate schedules by name, each a pure function of the optimizer step.

A schedule returns a factor of the base rate ``lr``; torch's ``LambdaLR`` applies it to every parameter
group, so the ratios between groups are kept. Factors are callable objects (not lambdas) so that the
scheduler's state saves and resumes.
"""

from __future__ import annotations

from typing import Callable

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR

from pipeline.errors import UserError
from pipeline.params import Train


class Constant:
    """``lr`` at every step."""

    def __call__(self, step: int) -> float:
        return 1.0


class WarmupConstant:
    """Linear warmup over the first ``warmup_steps`` steps, reaching ``lr`` at step ``warmup_steps - 1``, then hold."""

    def __init__(self, warmup_steps: int) -> None:
        self.warmup_steps = warmup_steps

    def __call__(self, step: int) -> float:
        if step >= self.warmup_steps:
            return 1.0
        return (step + 1) / self.warmup_steps


SCHEDULES: dict[str, Callable[[Train], Callable[[int], float]]] = {
    "constant": lambda cfg: Constant(),
    "warmup_constant": lambda cfg: WarmupConstant(cfg.warmup_steps),
}


def lr_factor(cfg: Train) -> Callable[[int], float]:
    """The factor of ``lr`` in force at each optimizer step for the schedule ``cfg.schedule``."""
    try:
        return SCHEDULES[cfg.schedule](cfg)
    except KeyError:
        raise UserError(f"train.schedule = {cfg.schedule!r}: expected one of: {', '.join(SCHEDULES)}") from None


def build_scheduler(optimizer: Optimizer, cfg: Train) -> LambdaLR:
    """A scheduler to step once after every optimizer step."""
    return LambdaLR(optimizer, lr_factor(cfg))
