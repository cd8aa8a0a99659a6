"""The training curves (dvclive files) of a run: logged into the resumable state while it runs, trimmed to the
checkpoint a resumed run starts from, and published to ``results/train`` (what dvc.yaml declares) only when the
run completes, so a failed or interrupted run never leaves curves that belong to no model. The published
``metrics.json`` is the headline of dvclive's summary (:data:`SUMMARY_KEYS`); every logged value stays in the
curves.

dvclive logs one file per value. The published curves keep those files for the values drawn alone
(``plots/metrics/``: val scores, speed, time, the distillation loss), and put each chart of several values in one
long file instead (:data:`SERIES_CHARTS`: ``plots/lr.tsv`` with a row per step and group, ``plots/loss.tsv`` per
step and loss term, the name in the column ``series``), which the template ``.dvc/plots/series.json`` draws with a
line per series: ``dvc plots show`` draws every file a stage declares as a plot, so a chart that combined several
files would draw each of them a second time.

While a run goes under ``dvc repro`` or ``dvc exp run``, :class:`CurvePreview` keeps a preview of its curves in
the published form in ``results/train/plots`` (every few seconds and at each validation), where ``dvc plots
show`` and the VS Code extension draw them live: DVC removed the previous run's curves before the stage started,
and if the run fails, the restore removes the preview and puts those back (the preview is marked as such, see
:mod:`pipeline.core.restore`). Run outside DVC, training writes no preview: the previous curves stay untouched
until the run completes."""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from pathlib import Path

import pandas as pd
from accelerate import Accelerator

from pipeline.core.atomic import atomic_dir
from pipeline.core.restore import DVC_STAGE, mark_preview
from pipeline.scoring.metrics import rounded

log = logging.getLogger(__name__)

SECONDS_CURVE = "plots/metrics/train/seconds.tsv"
PREVIEW_EVERY_S = 5.0  # the live preview is rewritten at most this often between validations (tens of ms each)
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


def write_curves(plots: Path, dest: Path) -> None:
    """dvclive's ``plots`` folder in the published form (see the module's doc) in the new folder ``dest``."""
    shutil.copytree(plots, dest, dirs_exist_ok=True)
    for name, (series_of, value) in SERIES_CHARTS.items():
        series = series_of(dest / "metrics")
        long_curve(series, value).to_csv(dest / name, sep="\t", index=False)
        for tsv in series.values():
            tsv.unlink()
    for folder in sorted((f for f in dest.rglob("*") if f.is_dir()), reverse=True):
        if not any(folder.iterdir()):  # what the long files emptied
            folder.rmdir()


def publish_curves(live: Path, results: Path) -> None:
    """Replace ``results`` with the completed run's curves (each chart of several values in one long file, see the
    module's doc) and the headline of its summary, at once (a preview of the run goes with the old folder)."""
    summary = json.loads((live / "metrics.json").read_text())
    with atomic_dir(results) as tmp:
        write_curves(live / "plots", tmp / "plots")
        (tmp / "metrics.json").write_text(json.dumps(headline(summary), indent=4) + "\n")  # inside the new folder
    log.info("wrote %s", results)


class CurvePreview:
    """The curves of the run in progress, published form, in ``<results>/plots``: under DVC only (see the module's
    doc). Call :meth:`update` after each logged step; it rewrites the preview when ``every_s`` seconds have passed
    since the last one, or at once with ``now``."""

    def __init__(self, live: Path, results: Path, every_s: float = PREVIEW_EVERY_S):
        self.live, self.results, self.every_s = live, results, every_s
        self.on = os.environ.get(DVC_STAGE) is not None
        self.last: float | None = None

    def update(self, now: bool = False) -> None:
        if not self.on or not (self.live / "plots").is_dir():
            return
        if not now and self.last is not None and time.monotonic() - self.last < self.every_s:
            return
        if self.last is None:
            mark_preview(self.results, [(self.results / "plots").as_posix()])
        with atomic_dir(self.results / "plots") as tmp:
            write_curves(self.live / "plots", tmp)
        self.last = time.monotonic()
