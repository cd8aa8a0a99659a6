"""dvc.yaml's plots: every training curve drawn once against the optimizer step (``dvc plots show`` draws each
file a stage declares as a plot, and each top-level chart besides), and every git-tracked output a metric or a plot,
which DVC's run-cache (and so the restore after a failure) needs."""

from __future__ import annotations

import json

import pandas as pd
import yaml

from pipeline.models import ARCHITECTURES
from pipeline.scoring.summary import METHODS
from pipeline.training.groups import group_names
from tests.helpers import ROOT

DVC_YAML = yaml.safe_load((ROOT / "dvc.yaml").read_text())
CURVES = ROOT / "results/train/plots"  # the committed run's curves
SERIES_TEMPLATE = ROOT / ".dvc/plots/series.json"


def test_every_git_tracked_output_is_a_metric_or_a_plot():
    """DVC saves no run-cache entry for a stage with a git-tracked (``cache: false``) plain output, and the
    restore after a failed stage copies the previous outputs from that cache: such outputs must be metrics or
    plots (seen: train's and evaluate's results were lost after a failure while they were plain outputs)."""
    plain = [(name, next(iter(entry))) for name, stage in DVC_YAML["stages"].items() for entry in stage.get("outs", [])
             if isinstance(entry, dict) and next(iter(entry.values())).get("cache") is False]
    assert plain == []


def test_every_chart_comes_from_one_stage_declaration_with_its_x_named():
    """``dvc plots show`` draws each file a stage declares as a plot, and each top-level chart besides: a top-level
    chart of a declared file draws it twice. Every table names its x (without one, DVC draws against the row
    number)."""
    assert "plots" not in DVC_YAML
    tables = {path: spec for stage in DVC_YAML["stages"] if "plots" in DVC_YAML["stages"][stage]
              for path, spec in stage_plots(stage).items() if not path.endswith(".png") and "/examples" not in path
              and "/preview" not in path}
    assert len(tables) == 7
    assert [path for path, spec in tables.items() if "x" not in spec] == []


def test_the_method_templates_draw_every_method_of_the_registry():
    """The charts of evaluate's tables fold the <method>_<metric> columns named in their template: every method
    evaluate can run, so no method's line is silently missing (a method not run has an empty column)."""
    by_motion = json.loads((ROOT / ".dvc/plots/methods_by_motion.json").read_text())
    by_frame = json.loads((ROOT / ".dvc/plots/methods_by_frame.json").read_text())
    assert by_motion["transform"][0]["fold"] == [f"{m}_psnr" for m in METHODS]
    assert by_frame["transform"][0]["fold"] == [f"{m}_{metric}" for metric in ("psnr", "vmaf") for m in METHODS]
    declared = stage_plots("evaluate")
    assert declared["results/evaluate/motion_buckets.csv"]["template"] == "methods_by_motion"
    assert declared["results/evaluate/segment_frames.csv"]["template"] == "methods_by_frame"


def stage_plots(stage: str) -> dict[str, dict]:
    """{path: properties} of the plots ``stage`` declares."""
    return {path: spec or {} for entry in DVC_YAML["stages"][stage]["plots"]
            for path, spec in (entry.items() if isinstance(entry, dict) else [(entry, {})])}


def test_every_training_curve_is_declared_once_against_the_optimizer_step():
    """Each file the committed run published (val scores, speed, time, and the long files of the rates and loss
    terms) is under exactly one of train's plot declarations, each drawn against the step."""
    declared = stage_plots("train")
    published = [tsv.relative_to(ROOT).as_posix() for tsv in CURVES.rglob("*.tsv")]
    assert len(published) >= 7, "the committed training curves are missing"
    for path in published:
        owners = [name for name in declared if path == name or path.startswith(name + "/")]
        assert len(owners) == 1, (path, owners)
    assert {spec["x"] for spec in declared.values()} == {"step"}


def common_groups() -> list[str]:
    """The parameter groups every architecture has, in HDv3's order."""
    return [g for g in group_names("hdv3") if all(g in group_names(arch) for arch in ARCHITECTURES)]


def test_the_rates_of_every_group_and_the_loss_terms_each_share_one_chart():
    """lr.tsv and loss.tsv: a line per series (the template colours by the ``series`` column), every group of the
    committed HDv3 run in one chart, and the loss with its terms in another."""
    declared = stage_plots("train")
    template = json.loads(SERIES_TEMPLATE.read_text())
    assert template["encoding"]["color"]["field"] == "series"
    for chart, value in (("lr", "lr"), ("loss", "loss")):
        spec = declared[f"results/train/plots/{chart}.tsv"]
        assert (spec["template"], spec["y"]) == ("series", value)
        logged = pd.read_csv(CURVES / f"{chart}.tsv", sep="\t")
        assert list(logged.columns) == ["step", "series", value]
    rates = pd.read_csv(CURVES / "lr.tsv", sep="\t")
    assert set(common_groups()) < set(rates["series"]) and set(group_names("hdv3")) == set(rates["series"])
    terms = set(pd.read_csv(CURVES / "loss.tsv", sep="\t")["series"])
    assert {"total", "laplacian", "teacher"} <= terms and "distill" not in terms  # distillation: a chart of its own
