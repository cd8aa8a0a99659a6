"""Learning-rate strategies by name: each a factor of the base rate ``lr`` at every optimizer step.

Every strategy is a small callable object, a pure function of the step (``plateau`` also of the validation
scores it has been shown). One ``LambdaLR`` applies the factor to every parameter group's own starting rate,
so the ratios between groups (differential rates, layer-wise decay) hold at every step, floors are relative
to each group's rate, and the state saves and resumes with the scheduler. The formulas are torch's own
(``OneCycleLR``, ``CyclicLR``, ``CosineAnnealingWarmRestarts``, ``PolynomialLR``, ``ReduceLROnPlateau``) with
the traps of composing those classes taken out: shared absolute floors, per-group rates overwritten by a
scalar ``max_lr``, ``SequentialLR`` milestones, and a plateau scheduler that cannot follow a warmup; the
tests check each curve against torch's class or the closed formula.

Warmup (``train.warmup_steps``) is linear from ``1 / warmup`` to 1 and precedes the body of every schedule
except ``constant``, ``cyclic`` and ``one_cycle`` (which has its own). Durations in ``train.schedules`` are
optimizer steps (an integer) or fractions of ``train.steps`` (a number from 0.0 to 1.0). Decays reach their
end value after the last step, as torch's and RIFE's formulas do.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR

from pipeline.core.params import Train, to_steps


class Warmup:
    """Linear warmup over the first ``warmup`` steps, reaching 1 at step ``warmup - 1``, then ``body``."""

    def __init__(self, warmup: int, total: int) -> None:
        self.warmup = warmup
        self.total = total

    def ramp(self, step: int) -> float:
        return min(1.0, (step + 1) / self.warmup) if self.warmup else 1.0

    def progress(self, step: int) -> float:
        """Fraction of the post-warmup part done at ``step``, in [0, 1]."""
        return min(1.0, max(0, step - self.warmup) / max(1, self.total - self.warmup))

    def __call__(self, step: int) -> float:
        return self.ramp(step) * self.body(step)

    def body(self, step: int) -> float:
        return 1.0


class Constant:
    def __call__(self, step: int) -> float:
        return 1.0


class WarmupConstant(Warmup):
    """The RIFE author's advice for fine-tuning 4.x: warm up, then hold ``lr``."""


class WarmupCosine(Warmup):
    """RIFE's own recipe: warmup, then half-cosine from ``lr`` to ``floor x lr`` at the last step."""

    def __init__(self, warmup: int, total: int, floor: float) -> None:
        super().__init__(warmup, total)
        self.floor = floor

    def body(self, step: int) -> float:
        return self.floor + (1 - self.floor) * 0.5 * (1 + math.cos(math.pi * self.progress(step)))


class Linear(Warmup):
    """Warmup, then a straight line from ``lr`` to ``end x lr``."""

    def __init__(self, warmup: int, total: int, end: float) -> None:
        super().__init__(warmup, total)
        self.end = end

    def body(self, step: int) -> float:
        return 1 - (1 - self.end) * self.progress(step)


class Step(Warmup):
    """Warmup, then ``factor`` times lower at each milestone (run steps)."""

    def __init__(self, warmup: int, total: int, milestones: list[int], factor: float) -> None:
        super().__init__(warmup, total)
        self.milestones = sorted(milestones)
        self.factor = factor

    def body(self, step: int) -> float:
        return self.factor ** sum(step >= m for m in self.milestones)


class Exponential(Warmup):
    """Warmup, then ``gamma`` times lower after every step."""

    def __init__(self, warmup: int, total: int, gamma: float) -> None:
        super().__init__(warmup, total)
        self.gamma = gamma

    def body(self, step: int) -> float:
        return self.gamma ** max(0, step - self.warmup)


class Polynomial(Warmup):
    """Warmup, then ``end + (1 - end) (1 - progress) ** power`` (torch's PolynomialLR when end = 0)."""

    def __init__(self, warmup: int, total: int, power: float, end: float) -> None:
        super().__init__(warmup, total)
        self.power, self.end = power, end

    def body(self, step: int) -> float:
        return self.end + (1 - self.end) * (1 - self.progress(step)) ** self.power


class CosineRestarts(Warmup):
    """Warmup, then SGDR: cosine from ``lr`` to ``floor x lr`` over ``period`` steps, restarting, each period
    ``mult`` times the one before (torch's CosineAnnealingWarmRestarts)."""

    def __init__(self, warmup: int, total: int, period: int, mult: int, floor: float) -> None:
        super().__init__(warmup, total)
        self.period, self.mult, self.floor = period, mult, floor

    def body(self, step: int) -> float:
        t, length = max(0, step - self.warmup), self.period
        while t >= length:
            t -= length
            length *= self.mult
        return self.floor + (1 - self.floor) * 0.5 * (1 + math.cos(math.pi * t / length))


class Cyclic:
    """torch's CyclicLR between ``base x lr`` and ``lr``: ``triangular``, ``triangular2`` (amplitude halves
    each cycle) or ``exp_range`` (amplitude times ``gamma ** step``); ``period`` steps up, as many down."""

    def __init__(self, mode: str, base: float, period: int, gamma: float) -> None:
        self.mode, self.base, self.period, self.gamma = mode, base, period, gamma

    def __call__(self, step: int) -> float:
        cycle = math.floor(1 + step / (2 * self.period))
        x = abs(step / self.period - 2 * cycle + 1)
        height = (1 - self.base) * max(0.0, 1 - x)
        if self.mode == "triangular2":
            height /= 2 ** (cycle - 1)
        elif self.mode == "exp_range":
            height *= self.gamma ** step
        return self.base + height


class OneCycle:
    """torch's OneCycleLR (cosine annealing, two phases): from ``lr / div_factor`` up to ``lr`` over
    ``pct_start`` of the run, then down to ``lr / (div_factor x final_div_factor)`` at the last step."""

    def __init__(self, total: int, pct_start: float, div_factor: float, final_div_factor: float) -> None:
        self.total, self.pct_start = total, pct_start
        self.initial = 1 / div_factor
        self.final = self.initial / final_div_factor

    @staticmethod
    def _anneal(start: float, end: float, pct: float) -> float:
        return end + (start - end) / 2 * (math.cos(math.pi * pct) + 1)

    def __call__(self, step: int) -> float:
        peak_step = self.pct_start * self.total - 1
        if step <= peak_step:
            return self._anneal(self.initial, 1.0, step / peak_step)
        return self._anneal(1.0, self.final, (step - peak_step) / (self.total - 1 - peak_step))


class Plateau(Warmup):
    """Warmup, then ``lr`` lowered by ``factor`` whenever validation PSNR has not risen by more than
    ``threshold`` dB for ``patience`` validations, never below ``floor x lr`` (torch's ReduceLROnPlateau,
    mode max, absolute threshold, no cooldown)."""

    def __init__(self, warmup: int, total: int, factor: float, patience: int, threshold: float,
                 floor: float) -> None:
        super().__init__(warmup, total)
        self.factor, self.patience, self.threshold, self.floor = factor, patience, threshold, floor
        self.scale, self.best, self.bad = 1.0, -math.inf, 0

    def observe(self, psnr: float) -> None:
        """Take one validation score (call after each validation)."""
        if psnr > self.best + self.threshold:
            self.best, self.bad = psnr, 0
            return
        self.bad += 1
        if self.bad > self.patience:
            self.scale, self.bad = max(self.floor, self.scale * self.factor), 0

    def body(self, step: int) -> float:
        return self.scale


def schedule_builders(cfg: Train) -> dict[str, Callable[[], Callable[[int], float]]]:
    """The registry: schedule name -> builder of its factor for ``cfg`` (names as in params.SCHEDULES)."""
    total, s = cfg.steps, cfg.schedules
    warmup = to_steps(cfg.warmup_steps, total)
    return {
        "constant": lambda: Constant(),
        "warmup_constant": lambda: WarmupConstant(warmup, total),
        "warmup_cosine": lambda: WarmupCosine(warmup, total, s.warmup_cosine.floor),
        "linear": lambda: Linear(warmup, total, s.linear.end),
        "step": lambda: Step(warmup, total, [to_steps(m, total) for m in s.step.milestones], s.step.factor),
        "exponential": lambda: Exponential(warmup, total, s.exponential.gamma),
        "polynomial": lambda: Polynomial(warmup, total, s.polynomial.power, s.polynomial.end),
        "cosine_restarts": lambda: CosineRestarts(warmup, total, max(1, to_steps(s.cosine_restarts.period, total)),
                                                  s.cosine_restarts.mult, s.cosine_restarts.floor),
        "cyclic": lambda: Cyclic(s.cyclic.mode, s.cyclic.base, max(1, to_steps(s.cyclic.period, total)),
                                 s.cyclic.gamma),
        "one_cycle": lambda: OneCycle(total, s.one_cycle.pct_start, s.one_cycle.div_factor,
                                      s.one_cycle.final_div_factor),
        "plateau": lambda: Plateau(warmup, total, s.plateau.factor, s.plateau.patience, s.plateau.threshold,
                                   s.plateau.floor),
    }


def lr_factor(cfg: Train) -> Callable[[int], float]:
    """The factor of each group's rate in force at each optimizer step, for ``cfg.schedule``."""
    return schedule_builders(cfg)[cfg.schedule]()


def build_scheduler(optimizer: Optimizer, cfg: Train) -> LambdaLR:
    """A scheduler to step once after every optimizer step."""
    return LambdaLR(optimizer, lr_factor(cfg))


def observe_validation(scheduler: LambdaLR, psnr: float) -> None:
    """Show a validation score to schedules that react to it (``plateau``); a lowered rate applies from the
    very next step, as with torch's ReduceLROnPlateau."""
    unique = {id(factor): factor for factor in scheduler.lr_lambdas}  # one object shared by every group
    plateaus = [factor for factor in unique.values() if isinstance(factor, Plateau)]
    for factor in plateaus:
        factor.observe(psnr)
    if plateaus:
        rates = [base * factor(scheduler.last_epoch)
                 for base, factor in zip(scheduler.base_lrs, scheduler.lr_lambdas, strict=True)]
        for group, rate in zip(scheduler.optimizer.param_groups, rates, strict=True):
            group["lr"] = rate
