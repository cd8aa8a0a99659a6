"""The study's comparisons and verdict: each strategy's test gain over its seeds, its paired difference from the
default and from the best, the gain on the fastest motion and the VMAF difference on the rebuilt segments, the
seed noise floor, whether validation ranks the strategies as the test does, and what it would take to tell
0.05 dB apart.

Every interval is the two-way bootstrap of :mod:`pipeline.experiments.stats` (seeds and test triplets, or seeds
and blocks of segment frames); a difference counts only when its 95% interval excludes zero."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from pipeline.experiments.records import Experiment
from pipeline.experiments.runs import DEFAULT
from pipeline.experiments.stats import (
    Z95,
    Components,
    Interval,
    block_sampler,
    components,
    pooled,
    pooled_seed_sd,
    spearman,
    triplet_sampler,
    two_way,
    two_way_difference,
)

SAMPLES, SEED = 4000, 0  # bootstrap resamples and seed of every interval of the study
TRUSTED_SPEARMAN = 0.7  # rank correlation of val and test gains at which validation's ranking can be trusted
DETECT_DB = 0.05  # the difference the study says it can, or cannot, tell apart
FRAME_BLOCK = 10  # frames per block of the segment bootstrap (as evaluate.segments.block_frames)


@dataclass
class Scores:
    """One strategy's successful runs, aligned: test PSNR gains (seeds x triplets), VMAF gains (seeds x frames)."""

    seeds: list[int]
    gains: np.ndarray
    fast: np.ndarray  # the columns of ``gains`` in the fastest-motion bucket
    vmaf: np.ndarray | None
    val_gains: list[float]
    minutes: list[float]


@dataclass
class StrategyResult:
    name: str
    settings: str
    runs: list[Experiment]
    scores: Scores | None = None
    gain: Interval | None = None
    seed_gains: list[float] = field(default_factory=list)
    vs_default: Interval | None = None
    vs_best: Interval | None = None
    fast: Interval | None = None
    vmaf: Interval | None = None
    val_gain: float | None = None
    group: str = ""
    flags: list[str] = field(default_factory=list)

    @property
    def spread(self) -> float | None:
        return float(np.std(self.seed_gains, ddof=1)) if len(self.seed_gains) > 1 else None


@dataclass
class Study:
    strategies: list[StrategyResult]
    triplets: int
    seed_sd: float | None
    floor: float | None  # the smallest difference between two strategies seeds alone cannot explain (95%)
    rho: float | None
    best: StrategyResult | None
    noise: Components | None
    verdict: list[str]


def bucket_mask(motion: np.ndarray, buckets: int) -> np.ndarray:
    """The triplets of the fastest of ``buckets`` equal-count motion buckets (as evaluate's motion_buckets.csv)."""
    order = np.argsort(motion, kind="stable")
    bucket = np.empty(len(motion), dtype=int)
    bucket[order] = np.arange(len(motion)) * buckets // len(motion)
    return bucket == buckets - 1


def segment_lengths(frames: pd.DataFrame) -> list[int]:
    """Frames of each rebuilt segment, in file order: a new segment starts at a new clip or a jump in frames."""
    new_clip = (frames["clip"] != frames["clip"].shift()).to_numpy()
    steps = frames["frame"].diff().to_numpy()
    step = steps[~new_clip].min() if (~new_clip).any() else 1  # frames between interpolated frames of a segment
    jumps = new_clip | (steps > 2 * step)
    return np.diff(np.flatnonzero(np.r_[jumps, True])).tolist()


def gather(runs: list[Experiment], tables: dict[str, dict[str, pd.DataFrame | None]], key: list,
           buckets: int) -> Scores | None:
    """The aligned scores of a strategy's successful runs (by seed), or None when none has its tables or a run was
    scored on other test triplets than ``key`` (the triplet ids every strategy is compared on)."""
    done = sorted((r for r in runs if r.state == "success" and tables[r.name].get("triplets") is not None),
                  key=lambda r: (r.seed is None, r.seed))
    if not done:
        return None
    rows, vmaf = [], []
    for run in done:
        table = tables[run.name]["triplets"]
        if table["triplet"].tolist() != key:
            return None
        rows.append((table["finetuned_psnr"] - table["pretrained_psnr"]).to_numpy())
        frames = tables[run.name].get("frames")
        if frames is not None and {"finetuned_vmaf", "pretrained_vmaf"} <= set(frames.columns):
            vmaf.append((frames["finetuned_vmaf"] - frames["pretrained_vmaf"]).to_numpy())
    first = tables[done[0].name]["triplets"]
    same_frames = len(vmaf) == len(done) and len({len(v) for v in vmaf}) == 1 and len(vmaf[0]) > 0
    gains = np.vstack(rows)
    fast = gains[:, bucket_mask(first["motion"].to_numpy(), buckets)]
    return Scores(seeds=[r.seed for r in done], gains=gains, fast=fast, vmaf=np.vstack(vmaf) if same_frames else None,
                  val_gains=[r.train.get("val", {}).get("gain") for r in done if r.train.get("val", {}).get("gain")
                             is not None],
                  minutes=[minutes for r in done if (minutes := training_minutes(tables[r.name].get("seconds")))
                           is not None])


def training_minutes(seconds: pd.DataFrame | None) -> float | None:
    """A run's training time in minutes: the last value of its ``seconds`` curve (None without one)."""
    if seconds is None or seconds.empty or "seconds" not in seconds.columns:
        return None
    return float(seconds["seconds"].iloc[-1]) / 60


def compare(a: Scores, b: Scores, columns: str = "gains") -> Interval:
    """``a`` minus ``b`` on the same triplets (paired over seeds when both ran the same seeds)."""
    paired = a.seeds == b.seeds
    sampler = triplet_sampler(a.gains.shape[1])
    return two_way_difference(getattr(a, columns), getattr(b, columns), paired, sampler, SAMPLES, SEED)


def score_strategy(result: StrategyResult, frame_lengths: list[int] | None) -> None:
    s = result.scores
    result.seed_gains = s.gains.mean(axis=1).tolist()
    result.gain = two_way(s.gains, triplet_sampler(s.gains.shape[1]), SAMPLES, SEED)
    result.fast = two_way(s.fast, triplet_sampler(s.fast.shape[1]), SAMPLES, SEED)
    if s.vmaf is not None and frame_lengths and sum(frame_lengths) == s.vmaf.shape[1]:
        result.vmaf = two_way(s.vmaf, block_sampler(frame_lengths, FRAME_BLOCK), SAMPLES, SEED)
    result.val_gain = float(np.mean(s.val_gains)) if s.val_gains else None


def flag(result: StrategyResult) -> None:
    """A strategy that raises mean PSNR but loses on the fastest motion or on VMAF beyond the noise."""
    if result.gain is None or result.gain.mean <= 0:
        return
    if result.fast is not None and result.fast.below_zero:
        result.flags.append(f"loses {result.fast.mean:+.3f} dB on the fastest motion")
    if result.vmaf is not None and result.vmaf.below_zero:
        result.flags.append(f"VMAF {result.vmaf.mean:+.3f} below the pretrained model")


def group_against(results: list[StrategyResult], default: StrategyResult | None,
                  best: StrategyResult | None) -> None:
    for r in results:
        if r.scores is None:
            continue
        if default is not None and default.scores is not None and r is not default:
            r.vs_default = compare(r.scores, default.scores)
            r.group = ("better than the default" if r.vs_default.above_zero else
                       "worse than the default" if r.vs_default.below_zero else "not distinguishable from the default")
        elif r is default:
            r.group = "the default"
        if best is not None and r is not best:
            r.vs_best = compare(r.scores, best.scores)


def noise_components(results: list[StrategyResult], default: StrategyResult | None) -> Components | None:
    """Variance components of the paired differences of each strategy from the default (same seeds only)."""
    if default is None or default.scores is None:
        return None
    parts = [components(r.scores.gains - default.scores.gains) for r in results
             if r.scores is not None and r is not default and r.scores.seeds == default.scores.seeds]
    return pooled(parts) if parts else None


def validation_line(results: list[StrategyResult], rho: float | None) -> str:
    """Whether the val split ranks the strategies (their mean val gains) as the test split does."""
    ranked = [r for r in results if r.val_gain is not None and r.gain is not None]
    if rho is None:
        return (f"Validation cannot be checked: it takes three strategies with val and test gains ({len(ranked)} "
                "here).")
    chosen = max(ranked, key=lambda r: r.val_gain)
    if rho >= TRUSTED_SPEARMAN:
        return (f"Validation ranks the strategies as the test does (Spearman {rho:+.2f} over {len(ranked)} strategy "
                f"means): a user choosing by val would pick {chosen.name} (test gain {chosen.gain.text()} dB).")
    return (f"Validation does not rank the strategies as the test does (Spearman {rho:+.2f} over {len(ranked)} "
            f"strategy means; {TRUSTED_SPEARMAN} needed), so it cannot pick a strategy on this footage and no "
            "winner is named.")


def power_line(noise: Components | None, seeds: int, triplets: int) -> str | None:
    if noise is None:
        return None
    se = noise.standard_error(seeds, triplets)
    needed = noise.units_needed(DETECT_DB, seeds)
    seeds_needed = noise.seeds_needed(DETECT_DB)
    units = ("no number of test triplets of this footage would be enough" if not np.isfinite(needed)
             else f"about {needed:,.0f} test triplets of this footage would be needed")
    return (f"A difference between two strategies is known to +/-{Z95 * se:.3f} dB (95%) with {seeds} seeds and "
            f"{triplets} test triplets. To find a {DETECT_DB} dB difference (95% confidence, 80% power) with {seeds} "
            f"seeds, {units}; the seed-to-seed term alone needs at least "
            f"{plural(max(math.ceil(seeds_needed), 1), 'seed')} per strategy.")


def plural(count: float, noun: str) -> str:
    return f"{count:.0f} {noun}{'' if round(count) == 1 else 's'}"


def verdict_lines(study: Study) -> list[str]:
    results = [r for r in study.strategies if r.gain is not None]
    if not results:
        return ["No strategy has a finished run with its test scores: nothing to compare yet."]
    best = study.best
    lines = [f"Highest mean test gain over the pretrained model: {best.name}, {best.gain.text()} dB over "
             f"{plural(len(best.seed_gains), 'seed')}."]
    for group in ("better than the default", "not distinguishable from the default", "worse than the default"):
        members = [r.name for r in results if r.group == group]
        if members:
            lines.append(f"{group[0].upper() + group[1:]}: {', '.join(members)}.")
    tied = [r.name for r in results if r is not best and r.vs_best is not None and not r.vs_best.below_zero]
    lines.append(f"Not distinguishable from the best: {', '.join(tied) if tied else 'none'}.")
    if study.seed_sd is not None:
        lines.append(f"Seed noise floor: a strategy's gain varies by {study.seed_sd:.3f} dB (SD) from seed to seed; "
                     f"two strategies must differ by more than {study.floor:.3f} dB for seeds alone not to explain "
                     "it (95%).")
    flags = [f"{r.name} {', '.join(r.flags)}" for r in results if r.flags]
    lines.append("Raises mean PSNR but loses beyond the noise: " + ("; ".join(flags) if flags else "none") + ".")
    lines.append(validation_line(results, study.rho))
    power = power_line(study.noise, len(best.seed_gains), study.triplets)
    if power:
        lines.append(power)
    return lines


def summarise(results: list[StrategyResult], tables: dict, key: list, buckets: int,
              frame_lengths: list[int] | None) -> Study:
    """Score, compare, group and flag ``results`` (each with its runs); the study with its verdict."""
    for r in results:
        r.scores = gather(r.runs, tables, key, buckets)
        if r.scores is not None:
            score_strategy(r, frame_lengths)
    scored = [r for r in results if r.scores is not None]
    default = next((r for r in scored if r.name == DEFAULT), None)
    best = max(scored, key=lambda r: r.gain.mean, default=None)
    group_against(scored, default, best)
    for r in scored:
        flag(r)
    sd = pooled_seed_sd([r.seed_gains for r in scored])
    seeds = max((len(r.seed_gains) for r in scored), default=1)
    floor = Z95 * sd * np.sqrt(2 / seeds) if sd is not None else None
    rho = spearman([r.val_gain for r in scored if r.val_gain is not None],
                   [r.gain.mean for r in scored if r.val_gain is not None])
    study = Study(results, len(key), sd, floor, rho, best, noise_components(scored, default), [])
    study.verdict = verdict_lines(study)
    return study
