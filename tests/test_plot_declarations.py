"""dvc.yaml's plots: the top-level `plots:` draw every training curve once against the optimizer step, and every
git-tracked output is a metric or a plot, which DVC's run-cache (and so the restore after a failure) needs."""

from __future__ import annotations

import yaml

from pipeline.models import ARCHITECTURES
from pipeline.training.groups import group_names
from tests.helpers import ROOT

DVC_YAML = yaml.safe_load((ROOT / "dvc.yaml").read_text())
CURVES = ROOT / "results/train/plots/metrics"  # the committed run's dvclive curves: one file per value


def top_level_plots() -> list[tuple[str, dict]]:
    """(name, spec) of each top-level plot; a bare path has an empty spec."""
    return [next(iter(entry.items())) if isinstance(entry, dict) else (entry, {}) for entry in DVC_YAML["plots"]]


def drawn_fields(name: str, spec: dict) -> list[tuple[str, str | None]]:
    """(file or folder, y field) pairs a top-level plot draws (field None: the whole file or folder)."""
    y = spec.get("y")
    if isinstance(y, dict):
        return [(path, field) for path, fields in y.items()
                for field in (fields if isinstance(fields, list) else [fields])]
    return [(name, field) for field in (y if isinstance(y, list) else [y])]


def stage_plot_paths() -> list[str]:
    return [next(iter(entry)) if isinstance(entry, dict) else entry
            for stage in DVC_YAML["stages"].values() for entry in stage.get("plots", [])]


def test_every_git_tracked_output_is_a_metric_or_a_plot():
    """DVC saves no run-cache entry for a stage with a git-tracked (``cache: false``) plain output, and the
    restore after a failed stage copies the previous outputs from that cache: such outputs must be metrics or
    plots (seen: train's and evaluate's results were lost after a failure while they were plain outputs)."""
    plain = [(name, next(iter(entry))) for name, stage in DVC_YAML["stages"].items() for entry in stage.get("outs", [])
             if isinstance(entry, dict) and next(iter(entry.values())).get("cache") is False]
    assert plain == []


def test_each_value_is_drawn_by_one_top_level_plot():
    pairs = [pair for name, spec in top_level_plots() for pair in drawn_fields(name, spec)]
    assert len(pairs) == len(set(pairs)), sorted(p for p in pairs if pairs.count(p) > 1)


def test_every_training_curve_is_drawn_once_against_the_optimizer_step():
    """Each file the committed run logged (loss terms, rate per group, val scores, speed, time) in one chart."""
    logged = {(str(tsv.relative_to(ROOT)), tsv.stem) for tsv in CURVES.glob("**/*.tsv")
              if tsv.parent.name != "lr" or tsv.stem in common_groups()}
    assert len(logged) >= 10, "the committed training curves are missing"
    drawn = {}
    for name, spec in top_level_plots():
        for pair in drawn_fields(name, spec):
            if pair[0].startswith("results/train/"):
                drawn[pair] = spec.get("x")
    assert set(drawn) == logged
    assert set(drawn.values()) == {"step"}


def common_groups() -> list[str]:
    """The parameter groups every architecture has, in HDv3's order."""
    return [g for g in group_names("hdv3") if all(g in group_names(arch) for arch in ARCHITECTURES)]


def test_the_learning_rates_of_every_group_share_one_chart():
    """One line per group that every architecture has, so the chart draws for HDv3 and 4.x checkpoints alike."""
    charts = {name: [field for path, field in drawn_fields(name, spec)] for name, spec in top_level_plots()
              if any(path.startswith("results/train/plots/metrics/lr/") for path, _ in drawn_fields(name, spec))}
    assert common_groups() == ["block0", "block1", "block2"]
    assert charts == {"Learning rate per parameter group": common_groups()}
