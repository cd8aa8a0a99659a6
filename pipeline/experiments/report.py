"""The study as a person reads it: a Markdown table with the verdict beneath (``summary.md``), the same rows as
CSV (``summary.csv``), and a picture of each strategy's gain over its seeds (``summary.png``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.core.plotting import png_figure
from pipeline.experiments.stats import Interval
from pipeline.experiments.verdict import StrategyResult, Study


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
        minutes = f"{np.mean(r.scores.minutes):.1f}" if r.scores is not None and r.scores.minutes else ""
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
