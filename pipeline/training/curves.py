"""The training curves (dvclive files) of a run: logged into the resumable state while it runs, trimmed to the
checkpoint a resumed run starts from, and published to ``results/train`` (what dvc.yaml declares) only when the
run completes, so a failed or interrupted run never leaves curves that belong to no model. The published
``metrics.json`` is the headline of dvclive's summary (:data:`SUMMARY_KEYS`); every logged value stays in the
curves.

dvclive logs one file per value. The published curves keep those files for the values drawn alone
(``plots/metrics/``: val scores, speed, time, the distillation loss), and put each chart of several values in one
long file instead (:data:`SERIES_CHARTS`: ``plots/lr.tsv`` with a row per step and group, ``plots/loss.tsv`` per
step and loss term, the name in the column ``series``), which the template ``.dvc/plots/series.json`` draws with a
line per series: ``dvc plots
show`` draws every file a stage declares as a plot, so a chart that combined several files would draw each of
them a second time."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import pandas as pd
from accelerate import Accelerator

from pipeline.core.atomic import atomic_dir
from pipeline.scoring.metrics import rounded

log = logging.getLogger(__name__)

SECONDS_CURVE = "plots/metrics/train/seconds.tsv"
DISTILL_CURVE = "loss_distill"  # the flow distillation loss (before its weight): a scale of its own, drawn alone


def lr_series(metrics: Path) -> dict[str, Path]:
    """The learning rate of each parameter group: {group: dvclive file}."""
    return {tsv.stem: tsv for tsv in sorted((metrics / "lr").glob("*.tsv"))}


def loss_series(metrics: Path) -> dict[str, Path]:
    """The training loss (``total``) and each of its terms before their weights: {term: dvclive file}."""
    return {("total" if tsv.stem == "loss" else tsv.stem.removeprefix("loss_")): tsv
            for tsv in sorted((metrics / "train").glob("loss*.tsv")) if tsv.stem != DISTILL_CURVE}


# the charts of several values: published file -> (the dvclive files of its series, the value column)
SERIES_CHARTS = {"lr.tsv": (lr_series, "lr"), "loss.tsv": (loss_series, "loss")}
# what metrics.json keeps of dvclive's summary, in this order: the kept weights' val gain over the pretrained ones
# with its 95% interval, the step they come from and the val triplets; the steps run. The last values of the loss
# terms, rates, speed, time and val scores are the ends of their curves (short names, few keys: `dvc exp show
# --only-changed` of a few runs fits a terminal).
SUMMARY_KEYS = {"val": ("gain", "low", "high", "gain_step", "triplets"), "step": None}


def start_curves(directory: Path, step: int) -> None:
    """A fresh run (``step`` 0) starts with no curves; a resumed one keeps those logged up to ``step``."""
    if step == 0:
        shutil.rmtree(directory, ignore_errors=True)
    else:
        trim_curves(directory, step)


def trim_curves(directory: Path, step: int) -> None:
    """Drop logged rows past ``step`` (written after the checkpoint a resumed run starts from)."""
    for tsv in directory.glob("plots/metrics/**/*.tsv"):
        curve = pd.read_csv(tsv, sep="\t")
        if (curve["step"] > step).any():
            curve[curve["step"] <= step].to_csv(tsv, sep="\t", index=False)


def seconds_so_far(directory: Path) -> float:
    """The wall time logged up to the checkpoint a resumed run starts from (0 if none was logged)."""
    curve = directory / SECONDS_CURVE
    if not curve.is_file():
        return 0.0
    logged = pd.read_csv(curve, sep="\t")
    return float(logged["seconds"].iloc[-1]) if len(logged) else 0.0


def add_to_summary(accelerator: Accelerator, section: str, values: dict) -> None:
    """Put ``values`` under ``section`` of the run's summary (dvclive's ``metrics.json``, written when the run ends
    with ``accelerator.end_training()``). Writing it here would record dvclive's next step, one past the last one
    logged, as the summary's ``step``."""
    live = accelerator.get_tracker("dvclive", unwrap=True)
    live.summary.setdefault(section, {}).update(values)


def headline(summary: dict) -> dict:
    """The :data:`SUMMARY_KEYS` of dvclive's ``summary`` that it has, in that order."""
    kept: dict = {}
    for key, fields in SUMMARY_KEYS.items():
        if key not in summary:
            continue
        if fields is None:
            kept[key] = rounded(summary[key])
        elif any(name in summary[key] for name in fields):
            kept[key] = rounded({name: summary[key][name] for name in fields if name in summary[key]})
    return kept


def long_curve(series: dict[str, Path], value: str) -> pd.DataFrame:
    """The curves of ``series`` ({name: dvclive file}) in one table: step, the series' name (column ``series``) and
    its value (column ``value``), series after series."""
    parts = [pd.DataFrame({"step": curve["step"], "series": name, value: curve.iloc[:, -1]})
             for name, curve in ((name, pd.read_csv(tsv, sep="\t")) for name, tsv in series.items())]
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=["step", "series", value])


def publish_curves(live: Path, results: Path) -> None:
    """Replace ``results`` with the completed run's curves (each chart of several values in one long file, see the
    module's doc) and the headline of its summary, at once."""
    summary = json.loads((live / "metrics.json").read_text())
    with atomic_dir(results) as tmp:
        shutil.copytree(live / "plots", tmp / "plots")
        for name, (series_of, value) in SERIES_CHARTS.items():
            series = series_of(tmp / "plots/metrics")
            long_curve(series, value).to_csv(tmp / "plots" / name, sep="\t", index=False)
            for tsv in series.values():
                tsv.unlink()
        for folder in sorted((f for f in (tmp / "plots").rglob("*") if f.is_dir()), reverse=True):
            if not any(folder.iterdir()):  # what the long files emptied
                folder.rmdir()
        (tmp / "metrics.json").write_text(json.dumps(headline(summary), indent=4) + "\n")  # inside the new folder
    log.info("wrote %s", results)
