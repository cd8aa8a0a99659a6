"""What DVC holds of the study's experiments: each run's state, params and metrics (``dvc exp show --json``), and
the per-triplet and per-frame tables and the training time curve its results commit holds in git.

A failed, queued or running experiment is listed with its state and never with metrics: its metrics files would
otherwise be the baseline's, since they are tracked in git."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from pipeline.core.errors import UserError
from pipeline.core.paths import EVALUATE_RESULTS, PARAMS_FILE, TRAIN_RESULTS
from pipeline.experiments.runs import strategy_of

EVALUATE_METRICS = (EVALUATE_RESULTS / "metrics.json").as_posix()
TRAIN_METRICS = (TRAIN_RESULTS / "metrics.json").as_posix()
PER_TRIPLET = (EVALUATE_RESULTS / "per_triplet.csv").as_posix()
SEGMENT_FRAMES = (EVALUATE_RESULTS / "segment_frames.csv").as_posix()
TRAIN_SECONDS = (TRAIN_RESULTS / "plots/metrics/train/seconds.tsv").as_posix()  # the run's wall time by step


@dataclass
class Experiment:
    """One run: its name, state (success, failed, queued, running), params, the git commit of its results
    (empty when it has none) and its two metrics files."""

    name: str
    state: str
    params: dict
    rev: str = ""
    evaluate: dict = field(default_factory=dict)
    train: dict = field(default_factory=dict)

    @property
    def seed(self) -> int | None:
        return (self.params.get("base") or {}).get("seed")

    @property
    def strategy(self) -> str:
        return strategy_of(self.name)


def _data(files: dict | None, name: str) -> dict:
    entry = (files or {}).get(name) or {}
    return entry.get("data") or {}


def make_experiment(state: dict, name: str, status: str) -> Experiment:
    data = state.get("data") or {}
    run = Experiment(name=name, state=status, params=_data(data.get("params"), PARAMS_FILE.as_posix()))
    if status == "success":
        run.rev = state.get("rev") or ""
        run.evaluate = _data(data.get("metrics"), EVALUATE_METRICS)
        run.train = _data(data.get("metrics"), TRAIN_METRICS)
    return run


def parse(show: list[dict]) -> tuple[Experiment, list[Experiment]]:
    """The baseline commit and its experiments, from ``dvc exp show --json``'s list."""
    commits = [entry for entry in show if entry.get("rev") != "workspace"]
    if not commits:
        raise UserError("dvc exp show lists no commit; commit the project first (git commit)")
    first = commits[0]
    baseline = make_experiment(first, f"baseline ({first.get('rev', '')[:7]})",
                               "failed" if first.get("error") else "success")
    runs = []
    for group in first.get("experiments") or []:
        executor = group.get("executor") or {}
        for state in group.get("revs") or []:
            status = "failed" if state.get("error") else executor.get("state") or "success"
            runs.append(make_experiment(state, group.get("name") or state.get("name") or state.get("rev", "")[:7],
                                        status))
    return baseline, runs


def experiments_json(rev: str | None = None, cwd: Path = Path(".")) -> list[dict]:
    """``dvc exp show --json`` for HEAD (or ``rev``), run by the dvc of this Python environment (no PATH needed)."""
    cmd = [sys.executable, "-m", "dvc", "exp", "show", "--json"] + (["--rev", rev] if rev else [])
    done = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if done.returncode != 0:
        lines = [ln for ln in done.stderr.splitlines() if ln.strip()]
        raise UserError(f"dvc exp show failed: {lines[-1] if lines else done.returncode}")
    return json.loads(done.stdout)


def committed_table(run: Experiment, path: str, cwd: Path = Path("."), sep: str = ",") -> pd.DataFrame | None:
    """The table ``path`` (columns split by ``sep``) as ``run``'s results commit holds it (None when the run has
    none, or not that file)."""
    if not run.rev:
        return None
    done = subprocess.run(["git", "show", f"{run.rev}:{path}"], cwd=cwd, capture_output=True)
    if done.returncode != 0:
        return None
    return pd.read_csv(io.BytesIO(done.stdout), sep=sep)
