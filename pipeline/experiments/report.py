"""The study as a person reads it: the experiments of ``dvc exp show`` grouped into strategies and summarised
(:func:`report`), written as a Markdown table with the verdict beneath (``summary.md``), the same rows as CSV
(``summary.csv``), and a picture of each strategy's gain over its seeds (``summary.png``)."""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.core.atomic import atomic_path, write_text
from pipeline.core.errors import UserError
from pipeline.core.plotting import png_figure
from pipeline.experiments.records import (
    PER_TRIPLET,
    SEGMENT_FRAMES,
    TRAIN_SECONDS,
    Experiment,
    committed_table,
    experiments_json,
    parse,
)
from pipeline.experiments.runs import DEFAULT
from pipeline.experiments.stats import Interval
from pipeline.experiments.verdict import StrategyResult, Study, segment_lengths, summarise

log = logging.getLogger("pipeline.study")  # the command's name, as the user ran it

def _text(value: Interval | None) -> str:
    return value.text() if value is not None else ""


def _states(result: StrategyResult) -> str:
    counts = pd.Series([r.state for r in result.runs]).value_counts()
    return ", ".join(f"{n} {state}" for state, n in counts.items())


def _spread(result: StrategyResult) -> str:
    if not result.seed_gains:
        return ""
    low, high = min(result.seed_gains), max(result.seed_gains)
    sd = f"{result.spread:.3f}; " if result.spread is not None else ""
    return f"{sd}{low:+.3f} .. {high:+.3f}"


def minutes_text(minutes: list[float]) -> str:
    """The mean training time of a strategy's runs, in minutes: one decimal from a minute up, two significant digits
    below (a run of seconds is not "0.0"); empty without any."""
    if not minutes:
        return ""
    mean = float(np.mean(minutes))
    return f"{mean:.1f}" if mean >= 1 else f"{mean:.2g}"


def markdown(study: Study) -> str:
    head = ("| strategy | settings | runs | test gain over pretrained (dB, 95% CI) | seed SD; per-seed range "
            "| vs default (dB, 95% CI) | vs best (dB, 95% CI) | fastest-motion gain (dB) | VMAF difference "
            "| val gain (dB) | train (min) | flags |\n"
            "|---|---|---|---|---|---|---|---|---|---|---|---|\n")
    lines = []
    for r in study.strategies:
        name = f"**{r.name}**" if r is study.best else r.name
        vs_best = "(best)" if r is study.best else _text(r.vs_best)
        vs_default = r.group if r.vs_default is None else f"{_text(r.vs_default)}: {r.group.split(' the ')[0]}"
        minutes = minutes_text(r.scores.minutes) if r.scores is not None else ""
        val = f"{r.val_gain:+.3f}" if r.val_gain is not None else ""
        lines.append(f"| {name} | {r.settings} | {_states(r)} | {_text(r.gain)} | {_spread(r)} | {vs_default} "
                     f"| {vs_best} | {_text(r.fast)} | {_text(r.vmaf)} | {val} | {minutes} | {'; '.join(r.flags)} |")
    return head + "\n".join(lines) + "\n"


def report_text(study: Study, baseline_line: str) -> str:
    notes = ("Gains are fine-tuned minus pretrained PSNR on the same test triplets, averaged over seeds; intervals "
             "are two-way bootstraps over seeds and triplets (VMAF: seeds and blocks of frames of the rebuilt "
             "segments). Fastest motion: the triplets of evaluate's fastest motion bucket.")
    return (markdown(study) + "\n" + notes + "\n\n" + baseline_line + "\n\n## Verdict\n\n"
            + "\n".join(f"- {line}" for line in study.verdict) + "\n")


def rows(study: Study) -> pd.DataFrame:
    out = []
    for r in study.strategies:
        row = {"strategy": r.name, "settings": r.settings, "runs": _states(r), "group": r.group,
               "best": r is study.best, "seed_gains": " ".join(f"{g:.4f}" for g in r.seed_gains),
               "seed_sd": r.spread, "val_gain": r.val_gain, "flags": "; ".join(r.flags)}
        for label, value in (("gain", r.gain), ("vs_default", r.vs_default), ("vs_best", r.vs_best),
                             ("fastest_motion_gain", r.fast), ("vmaf_difference", r.vmaf)):
            row.update({label: value.mean if value else None, f"{label}_ci95_low": value.low if value else None,
                        f"{label}_ci95_high": value.high if value else None})
        out.append(row)
    return pd.DataFrame(out)


def plot(study: Study, path: Path) -> None:
    shown = [r for r in study.strategies if r.gain is not None]
    with png_figure(path) as ax:
        for y, r in enumerate(shown):
            ax.errorbar([r.gain.mean], [y], xerr=[[r.gain.mean - r.gain.low], [r.gain.high - r.gain.mean]], fmt="o",
                        color="C0", label="mean over seeds, 95% interval (seeds and triplets)" if y == 0 else None)
            ax.plot(r.seed_gains, [y] * len(r.seed_gains), "x", color="C1", label="one seed" if y == 0 else None)
        ax.axvline(0.0, color="grey", linewidth=1)
        ax.set_yticks(range(len(shown)), [f"{r.name}: {r.settings}" for r in shown], fontsize=8)
        ax.set_ylim(len(shown) - 0.5, -1.5)  # first strategy on top, with room above it for the legend
        ax.set_xlabel("PSNR gain over the pretrained model on the test triplets (dB)")


IGNORED = ("base.seed", "evaluate.methods", "evaluate.metrics", "evaluate.videos")  # not what a strategy is


def flatten(params: dict, prefix: str = "") -> dict[str, object]:
    out: dict[str, object] = {}
    for key, value in params.items():
        if isinstance(value, dict) and value:
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def settings(params: dict, baseline: dict) -> str:
    """What a run sets differently from the baseline commit (the seed and evaluate's extras aside)."""
    mine, base = flatten(params), flatten(baseline)
    changed = [f"{k}={mine[k]}" for k in sorted(mine) if mine[k] != base.get(k) and not k.startswith(IGNORED)]
    return ", ".join(changed) or "baseline params"


def common_settings(runs: list[Experiment], baseline: dict) -> str:
    """What every run sets differently from the baseline commit (shown once, not in every row)."""
    shared = None
    for run in runs:
        mine = set(settings(run.params, baseline).split(", "))
        shared = mine if shared is None else shared & mine
    return ", ".join(sorted((shared or set()) - {"baseline params"}))


def strategies(baseline: Experiment, runs: list[Experiment]) -> list[StrategyResult]:
    """The runs grouped by strategy, in the order first seen; the baseline commit's own run is the default when
    no run is named after it. A strategy's settings leave out what every run sets."""
    groups: dict[str, list[Experiment]] = {}
    for run in runs:
        groups.setdefault(run.strategy, []).append(run)
    if DEFAULT not in groups:
        groups = {DEFAULT: [baseline], **groups}
    shared = set(common_settings(runs, baseline.params).split(", "))
    results = []
    for name, members in groups.items():
        own = [s for s in settings(members[0].params, baseline.params).split(", ") if s not in shared]
        results.append(StrategyResult(name, ", ".join(own) or "the common settings only", members))
    return results


def load_tables(results: list[StrategyResult]) -> dict[str, dict]:
    return {run.name: {"triplets": committed_table(run, PER_TRIPLET), "frames": committed_table(run, SEGMENT_FRAMES),
                       "seconds": committed_table(run, TRAIN_SECONDS, sep="\t")}
            for r in results for run in r.runs}


def gather_runs(revs: list[str]) -> tuple[Experiment, list[Experiment]]:
    """The first commit's baseline run, and the experiments of every commit in ``revs`` (HEAD when empty): runs
    queued from several commits of the same data compare as one study, e.g. new strategies queued after code that
    leaves the default's training bit for bit as it was."""
    baseline, runs = parse(experiments_json(revs[0] if revs else None))
    for rev in revs[1:]:
        runs += parse(experiments_json(rev))[1]
    repeated = sorted(name for name, count in Counter(run.name for run in runs).items() if count > 1)
    if repeated:
        raise UserError(f"--rev: the commits have experiments of the same name ({', '.join(repeated)}); "
                        "rename one with `dvc exp rename`, or report the commits apart")
    return baseline, runs


def headline_gain(metrics: dict) -> float | None:
    """The test PSNR gain in an evaluate ``metrics.json``: ``psnr.gain``, or where commits made before that name
    keep it (``gain.psnr``; ``finetuned_minus_pretrained.psnr`` when metrics.json held every number)."""
    for section, key in (("psnr", "gain"), ("gain", "psnr"), ("finetuned_minus_pretrained", "psnr")):
        value = (metrics.get(section) or {}).get(key)
        if isinstance(value, (int, float)):
            return float(value)
    return None


def report(revs: list[str], out: Path) -> str:
    baseline, runs = gather_runs(revs)
    results = strategies(baseline, runs)
    tables = load_tables(results)
    if baseline.name not in tables:
        tables[baseline.name] = {"triplets": committed_table(baseline, PER_TRIPLET)}
    first = next((t for t in tables.values() if t.get("triplets") is not None), None)
    if first is None:
        raise UserError("no finished run has results/evaluate/per_triplet.csv in git: run `dvc queue start` and "
                        "wait for the runs, or commit a `dvc repro`")
    frames = next((t["frames"] for t in tables.values() if t.get("frames") is not None and len(t["frames"])), None)
    buckets = int(flatten(baseline.params).get("evaluate.motion_buckets", 4))
    study = summarise(results, tables, first["triplets"]["triplet"].tolist(), buckets,
                      segment_lengths(frames) if frames is not None else None)
    gain = headline_gain(baseline.evaluate)
    line = (f"The {baseline.name}: test gain {gain:+.3f} dB (one run, all methods)." if gain is not None
            else f"The {baseline.name}: no evaluate metrics.")
    shared = common_settings(runs, baseline.params)
    if shared:
        line += f" Every run also sets: {shared}."
    text = report_text(study, line)
    out.mkdir(parents=True, exist_ok=True)
    write_text(out / "summary.md", text)
    with atomic_path(out / "summary.csv") as tmp:
        rows(study).to_csv(tmp, index=False, float_format="%.5f")
    with atomic_path(out / "summary.png") as tmp:
        plot(study, tmp)
    log.info("%d runs in %d strategies; wrote %s", len(runs), len(results), out)
    return text
