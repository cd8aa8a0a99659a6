"""Statistics of replicated runs scored on the same test units (triplets, or frames of the rebuilt segments).

A run's scores form a row of a (seeds x units) matrix. Intervals come from a two-way bootstrap: each resample
draws the seeds with replacement and, independently, the units (triplets one by one; frames in moving blocks
within their segment, since neighbouring frames are alike), and takes the mean of the drawn rows and columns. So an
interval holds both the noise of training (another seed) and that of the footage (other test triplets). Two
strategies are compared on the same unit draws (paired over triplets); their seeds are paired too when they ran
with the same seeds (the same seed gives both the same views and batches).

The variance of a mean over S seeds and T units splits into a seed term, a unit term and the rest (two-way
analysis of variance without replication): ``var = s_seed / S + s_unit / T + s_rest / (S T)``, which says how many
seeds or test triplets a difference of a given size needs.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

Z95 = 1.959964  # two-sided 95%
Z80_POWER = 0.841621  # one-sided 80% power
UnitSampler = Callable[[np.random.Generator, int], np.ndarray]  # (rng, samples) -> unit indices (samples x units)


@dataclass(frozen=True)
class Interval:
    """A mean with its 95% bootstrap interval."""

    mean: float
    low: float
    high: float

    @property
    def above_zero(self) -> bool:
        return self.low > 0

    @property
    def below_zero(self) -> bool:
        return self.high < 0

    def text(self, digits: int = 3) -> str:
        return f"{self.mean:+.{digits}f} ({self.low:+.{digits}f} .. {self.high:+.{digits}f})"


def triplet_sampler(count: int) -> UnitSampler:
    """Units drawn one by one with replacement."""
    return lambda rng, samples: rng.integers(0, count, size=(samples, count))


def block_sampler(lengths: list[int], block: int) -> UnitSampler:
    """Units in consecutive runs (``lengths``, e.g. frames of each segment), redrawn in moving blocks of ``block``
    within their run, each run to its own length (a run shorter than a block is one block)."""

    def draw(rng: np.random.Generator, samples: int) -> np.ndarray:
        parts, offset = [], 0
        for length in lengths:
            size = min(block, length)
            starts = rng.integers(0, length - size + 1, size=(samples, -(-length // size)))
            picked = (starts[:, :, None] + np.arange(size)).reshape(samples, -1)[:, :length]
            parts.append(picked + offset)
            offset += length
        return np.concatenate(parts, axis=1)

    return draw


def _counts(indices: np.ndarray, size: int) -> np.ndarray:
    """How often each of ``size`` items was drawn in each resample (rows of ``indices``)."""
    counts = np.zeros((len(indices), size))
    np.add.at(counts, (np.arange(len(indices))[:, None], indices), 1.0)
    return counts


def _resampled_means(matrix: np.ndarray, seeds: np.ndarray, units: np.ndarray) -> np.ndarray:
    """Mean of ``matrix`` over the drawn seeds (counts, resamples x rows) and units (counts, resamples x columns)."""
    return np.einsum("bs,su,bu->b", seeds, matrix, units) / (seeds.sum(1) * units.sum(1))


def _interval(mean: float, draws: np.ndarray) -> Interval:
    low, high = np.percentile(draws, [2.5, 97.5])
    return Interval(float(mean), float(low), float(high))


def two_way(matrix: np.ndarray, sampler: UnitSampler, samples: int, seed: int) -> Interval:
    """Mean of a (seeds x units) matrix with its two-way bootstrap interval."""
    matrix = np.asarray(matrix, dtype=np.float64)
    rng = np.random.default_rng(seed)
    units = _counts(sampler(rng, samples), matrix.shape[1])
    seeds = _counts(rng.integers(0, len(matrix), size=(samples, len(matrix))), len(matrix))
    return _interval(matrix.mean(), _resampled_means(matrix, seeds, units))


def two_way_difference(a: np.ndarray, b: np.ndarray, paired: bool, sampler: UnitSampler, samples: int,
                       seed: int) -> Interval:
    """Mean of ``a`` minus mean of ``b`` (both seeds x the same units), on the same unit draws; with ``paired`` (the
    same seeds, in the same order) the seeds are drawn together, else each side's apart."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if paired:
        return two_way(a - b, sampler, samples, seed)
    rng = np.random.default_rng(seed)
    units = _counts(sampler(rng, samples), a.shape[1])
    seeds_a = _counts(rng.integers(0, len(a), size=(samples, len(a))), len(a))
    seeds_b = _counts(rng.integers(0, len(b), size=(samples, len(b))), len(b))
    draws = _resampled_means(a, seeds_a, units) - _resampled_means(b, seeds_b, units)
    return _interval(a.mean() - b.mean(), draws)


@dataclass(frozen=True)
class Components:
    """Variance of a (seeds x units) matrix of differences: between seeds, between units, and the rest."""

    seed: float
    unit: float
    rest: float

    def standard_error(self, seeds: int, units: int) -> float:
        return math.sqrt(self.seed / seeds + self.unit / units + self.rest / (seeds * units))

    def units_needed(self, difference: float, seeds: int) -> float:
        """Test units for ``difference`` to be found with 80% power at 95% confidence with ``seeds`` seeds
        (infinite where the seed term alone is too large)."""
        target = (difference / (Z95 + Z80_POWER)) ** 2
        room = target - self.seed / seeds
        return math.inf if room <= 0 else (self.unit + self.rest / seeds) / room

    def seeds_needed(self, difference: float) -> float:
        """Seeds for ``difference`` to be found as above however many test units there are."""
        target = (difference / (Z95 + Z80_POWER)) ** 2
        return self.seed / target


def components(matrix: np.ndarray) -> Components:
    """Two-way analysis of variance without replication (method of moments, negative estimates set to 0)."""
    m = np.asarray(matrix, dtype=np.float64)
    seeds, units = m.shape
    grand = m.mean()
    by_seed, by_unit = m.mean(axis=1), m.mean(axis=0)
    rest = m - by_seed[:, None] - by_unit[None, :] + grand
    ms_rest = (rest ** 2).sum() / max(1, (seeds - 1) * (units - 1))
    ms_seed = units * ((by_seed - grand) ** 2).sum() / max(1, seeds - 1)
    ms_unit = seeds * ((by_unit - grand) ** 2).sum() / max(1, units - 1)
    return Components(seed=max(0.0, (ms_seed - ms_rest) / units) if seeds > 1 else 0.0,
                      unit=max(0.0, (ms_unit - ms_rest) / seeds), rest=ms_rest if seeds > 1 else 0.0)


def pooled(parts: list[Components]) -> Components:
    return Components(*(float(np.mean([getattr(p, name) for p in parts])) for name in ("seed", "unit", "rest")))


def pooled_seed_sd(groups: list[list[float]]) -> float | None:
    """The standard deviation between replicates, pooled over the groups that have two or more."""
    usable = [np.asarray(g, dtype=np.float64) for g in groups if len(g) > 1]
    if not usable:
        return None
    squares = sum(((g - g.mean()) ** 2).sum() for g in usable)
    return float(math.sqrt(squares / sum(len(g) - 1 for g in usable)))


def spearman(x: list[float], y: list[float]) -> float | None:
    """Spearman's rank correlation (average ranks for ties); None with under three pairs or a constant side."""
    if len(x) < 3:
        return None
    rx, ry = pd.Series(x).rank().to_numpy(), pd.Series(y).rank().to_numpy()
    if rx.std() == 0 or ry.std() == 0:
        return None
    return float(pd.Series(rx).corr(pd.Series(ry)))
