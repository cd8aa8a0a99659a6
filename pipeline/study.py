"""Summarise the experiments of the current commit: ``python -m pipeline.study``.

``python -m pipeline.study --queue`` first queues the standard learning-rate study (:data:`STUDY`, one
``dvc exp run --queue`` each, the last at the rate ``lr_find`` suggests); run them with
``dvc queue start -j 1`` and summarise once ``dvc queue status`` shows them done. ``--shard k/n`` queues only
this machine's share of the study (every n-th run from the k-th) so that n machines run it together; each shares
its finished runs with ``dvc exp push origin`` and any of them gathers all with ``dvc exp pull origin``.
``--only`` picks runs by name.

Reads ``dvc exp show --json`` (the baseline commit and every experiment run or queued from it) and writes
``results/study/summary.md`` (a Markdown table to paste into a report), ``summary.csv`` and ``summary.png``
(the paired PSNR gain over the pretrained model of each experiment, with its 95% interval). Experiments
that failed, are queued or still running are listed as such, never with metrics: a failed experiment's
metrics files would otherwise be the baseline's, since they are tracked in git.

Runs are ranked by their validation gain (``val.gain`` of results/train/metrics.json: the kept weights' val PSNR
minus the pretrained weights' val PSNR at step 0), the way a user must choose without looking at the test split;
the table marks the run validation chooses, the command reports that run's test gain, and the Spearman rank
correlation between val and test gains over the study's runs says whether the val split can be trusted
(:data:`TRUSTED_SPEARMAN` or more).
"""

from __future__ import annotations

import argparse
import json
import logging
import subprocess
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import pandas as pd

from pipeline.core.atomic import atomic_path, write_text
from pipeline.core.errors import UserError
from pipeline.core.runner import user_facing
from pipeline.core.plotting import png_figure

log = logging.getLogger("pipeline.study")

PARAMS_FILE = "params.yaml"
EVALUATE_METRICS = "results/evaluate/metrics.json"
TRAIN_METRICS = "results/train/metrics.json"
STUDY_RESULTS = Path("results/study")
TRUSTED_SPEARMAN = 0.7  # rank correlation of val and test gains at which validation's choice can be trusted


LR_FIND_METRICS = Path("results/lr_find/metrics.json")
LR_FIND_SUGGESTION = "valley"  # the suggestion the study tries (read it as an upper bound; see the README)
# The standard study: name -> params set on top of the baseline commit. Every run also gets STUDY_COMMON.
STUDY: dict[str, dict[str, str]] = {
    "author-1e-5": {"train.schedule": "warmup_constant", "lr": "1e-5"},  # the RIFE author's advice for 4.x
    "rife-cosine-3e-4": {"train.schedule": "warmup_cosine", "lr": "3e-4"},  # RIFE's own from-scratch recipe
    "constant-1e-4": {"train.schedule": "constant", "lr": "1e-4"},
    "cosine-3e-5": {"train.schedule": "warmup_cosine", "lr": "3e-5"},
    "one-cycle-1e-4": {"train.schedule": "one_cycle", "lr": "1e-4"},
    "layer-decay-3e-5": {"train.schedule": "warmup_constant", "lr": "3e-5",
                         "train.groups.layer_decay": "0.3"},  # finest block 3e-5, the next 9e-6, the coarsest 2.7e-6
    "freeze-then-all-1e-5": {"train.schedule": "warmup_constant", "lr": "1e-5",
                             "train.freeze.preset": "freeze_then_all"},
}
# What every run of the study shares: the comparison it exists for (fine-tuned against pretrained, PSNR and
# SSIM); the baselines of the evaluate stage do not depend on the learning rate, so they are not recomputed.
STUDY_COMMON = {"evaluate.methods": "[finetuned,pretrained]", "evaluate.metrics": "[psnr,ssim]"}


@dataclass
class Row:
    name: str
    state: str  # success | failed | queued | running
    strategy: str
    lr: float | None
    steps: int | None
    psnr: float | None = None
    ssim: float | None = None
    pretrained_psnr: float | None = None
    gain: float | None = None
    gain_low: float | None = None
    gain_high: float | None = None
    share_improved: float | None = None
    train_minutes: float | None = None
    val_gain: float | None = None  # kept weights' val PSNR minus the pretrained weights' (step 0), dB
    val_gain_low: float | None = None
    val_gain_high: float | None = None
    chosen: bool = False  # the run with the highest val gain


def strategy_label(params: dict) -> str:
    """The schedule, plus what differs from training every group alike from step 0."""
    train = params.get("train", {})
    label = [str(train.get("schedule", "?"))]
    groups = train.get("groups", {})
    if groups.get("lr_mult"):
        label.append("lr_mult " + ", ".join(f"{k} x{v:g}" for k, v in groups["lr_mult"].items()))
    if groups.get("layer_decay", 1.0) != 1.0:
        label.append(f"layer_decay {groups['layer_decay']:g}")
    freeze = train.get("freeze", {})
    if freeze.get("preset", "none") != "none":
        label.append(f"{freeze['preset']} until {freeze.get('until')}")
    elif freeze.get("groups"):
        label.append("frozen " + ", ".join(f"{k} to {v}" for k, v in freeze["groups"].items()))
    return "; ".join(label)


def _data(files: dict, name: str) -> dict:
    entry = (files or {}).get(name) or {}
    return entry.get("data") or {}


def make_row(state: dict, name: str, status: str) -> Row:
    data = state.get("data") or {}
    params = _data(data.get("params"), PARAMS_FILE)
    row = Row(name=name, state=status, strategy=strategy_label(params) if params else "?",
              lr=params.get("lr"), steps=params.get("train", {}).get("steps"))
    if status != "success":
        return row
    scores = _data(data.get("metrics"), EVALUATE_METRICS)
    gain = scores.get("finetuned_minus_pretrained", {})
    row.psnr = scores.get("finetuned", {}).get("psnr")
    row.ssim = scores.get("finetuned", {}).get("ssim")
    row.pretrained_psnr = scores.get("pretrained", {}).get("psnr")
    row.gain, row.gain_low, row.gain_high = gain.get("psnr"), gain.get("psnr_ci95_low"), gain.get("psnr_ci95_high")
    row.share_improved = gain.get("share_improved")
    train = _data(data.get("metrics"), TRAIN_METRICS)
    seconds = train.get("train", {}).get("seconds")
    row.train_minutes = seconds / 60 if seconds is not None else None
    val = train.get("val", {})
    row.val_gain, row.val_gain_low, row.val_gain_high = val.get("gain"), val.get("gain_ci95_low"), val.get("gain_ci95_high")
    return row


def rank_by_validation(rows: list[Row]) -> list[Row]:
    """Runs with a val gain first, highest first (the first is marked ``chosen``), then the others as listed."""
    scored = sorted((r for r in rows if r.val_gain is not None), key=lambda r: -r.val_gain)
    for r in rows:
        r.chosen = False
    if scored:
        scored[0].chosen = True
    return scored + [r for r in rows if r.val_gain is None]


def spearman(x: list[float], y: list[float]) -> float | None:
    """Spearman's rank correlation (average ranks for ties); None with under three pairs or a constant side."""
    if len(x) < 3:
        return None
    rx, ry = pd.Series(x).rank().to_numpy(), pd.Series(y).rank().to_numpy()
    if rx.std() == 0 or ry.std() == 0:
        return None
    return float(pd.Series(rx).corr(pd.Series(ry)))


def validation_verdict(rows: list[Row]) -> str:
    """Which run validation chooses, its test gain, and how well val gains rank the runs as test gains do."""
    both = [r for r in rows if r.val_gain is not None and r.gain is not None]
    chosen = next((r for r in rows if r.chosen), None)
    if chosen is None:
        return "no run has a val gain (results/train/metrics.json val.gain); nothing to choose by validation\n"
    lines = [f"validation chooses {chosen.name} (val gain {chosen.val_gain:+.3f} dB); its test gain: "
             + (f"{chosen.gain:+.3f} dB ({chosen.gain_low:+.3f} .. {chosen.gain_high:+.3f})" if chosen.gain is not None
                else "not measured")]
    best_test = max(both, key=lambda r: r.gain, default=None)
    if best_test is not None and best_test is not chosen:
        lines.append(f"the best test gain was {best_test.name} ({best_test.gain:+.3f} dB)")
    rho = spearman([r.val_gain for r in both], [r.gain for r in both])
    if rho is None:
        lines.append(f"Spearman rank correlation of val and test gains: needs 3 runs with both ({len(both)} here)")
    else:
        trust = "can be trusted to rank runs" if rho >= TRUSTED_SPEARMAN else "does not rank runs as the test does"
        lines.append(f"Spearman rank correlation of val and test gains over {len(both)} runs: {rho:+.2f} "
                     f"(the val split {trust}; goal >= {TRUSTED_SPEARMAN})")
    return "\n".join(lines) + "\n"


def parse(show: list[dict]) -> list[Row]:
    """Rows of the baseline commit and its experiments, from ``dvc exp show --json``'s list."""
    commits = [entry for entry in show if entry.get("rev") != "workspace"]
    if not commits:
        raise UserError("dvc exp show lists no commit; commit the project first (git commit)")
    baseline = commits[0]
    rows = [make_row(baseline, f"baseline ({baseline.get('rev', '')[:7]})",
                     "failed" if baseline.get("error") else "success")]
    for group in baseline.get("experiments") or []:
        executor = group.get("executor") or {}
        for state in group.get("revs") or []:
            status = "failed" if state.get("error") else executor.get("state") or "success"
            rows.append(make_row(state, group.get("name") or state.get("name") or state.get("rev", "")[:7], status))
    return rows


def experiments_json(rev: str | None = None, cwd: Path = Path(".")) -> list[dict]:
    """``dvc exp show --json`` for HEAD (or ``rev``), run by the dvc of this Python environment (no PATH needed)."""
    cmd = [sys.executable, "-m", "dvc", "exp", "show", "--json"] + (["--rev", rev] if rev else [])
    done = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if done.returncode != 0:
        lines = [ln for ln in done.stderr.splitlines() if ln.strip()]
        raise UserError(f"dvc exp show failed: {lines[-1] if lines else done.returncode}")
    return json.loads(done.stdout)


def parse_shard(spec: str) -> tuple[int, int]:
    """``"k/n"`` (1 <= k <= n) as ``(k, n)``; anything else is a :class:`UserError`."""
    k, sep, n = spec.partition("/")
    if not (sep and k.strip().isdigit() and n.strip().isdigit() and 1 <= int(k) <= int(n)):
        raise UserError(f"--shard {spec}: expected k/n, this machine's share k of n machines with 1 <= k <= n "
                        "(e.g. --shard 1/3)")
    return int(k), int(n)


def study_runs(cwd: Path = Path(".")) -> dict[str, dict[str, str]]:
    """The standard study in a fixed order: :data:`STUDY`, then the run at the rate lr_find suggests (last, so a
    machine without lr_find's results gives every other run the same shard)."""
    runs = dict(STUDY)
    if (cwd / LR_FIND_METRICS).is_file():
        rate = json.loads((cwd / LR_FIND_METRICS).read_text())["suggested"][LR_FIND_SUGGESTION]
        runs[f"lr-find-{LR_FIND_SUGGESTION}"] = {"train.schedule": "warmup_constant", "lr": f"{rate:.2g}"}
    else:
        log.warning("%s is missing (run dvc repro lr_find): the lr_find run is left out", LR_FIND_METRICS)
    return runs


def select_runs(runs: dict[str, dict[str, str]], only: list[str] | None = None,
                shard: tuple[int, int] = (1, 1)) -> dict[str, dict[str, str]]:
    """The runs named in ``only`` (all if None), then shard ``k`` of ``n``: every n-th run from the k-th, so the
    shards are disjoint, together hold every run, and differ in size by at most one."""
    unknown = sorted(set(only or ()) - set(runs))
    if unknown:
        raise UserError(f"--only {','.join(unknown)}: not a run of the study; its runs are {', '.join(runs)}")
    chosen = [name for name in runs if only is None or name in only]
    k, n = shard
    return {name: runs[name] for name in chosen[k - 1::n]}


def queue_study(steps: int | None, cwd: Path = Path("."), only: list[str] | None = None,
                shard: tuple[int, int] = (1, 1)) -> list[str]:
    """Queue the runs of the standard study (:func:`study_runs`; those named in ``only``, this machine's
    ``shard``), each for ``steps`` optimizer steps (None: the baseline's train.steps); returns the names queued."""
    runs = select_runs(study_runs(cwd), only, shard)
    common = {**STUDY_COMMON, **({"train.steps": str(steps)} if steps else {})}
    for name, changes in runs.items():
        changes = {**common, **changes}
        cmd = [sys.executable, "-m", "dvc", "exp", "run", "--queue", "-n", name]
        for key, value in changes.items():
            cmd += ["-S", f"{key}={value}"]
        done = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
        if done.returncode != 0:
            lines = [ln for ln in done.stderr.splitlines() if ln.strip()]
            raise UserError(f"could not queue {name}: {lines[-1] if lines else done.returncode}")
        log.info("queued %s: %s", name, ", ".join(f"{k}={v}" for k, v in changes.items()))
    return list(runs)


def _fmt(value, spec: str) -> str:
    return "" if value is None or pd.isna(value) else format(value, spec)


def markdown(rows: list[Row]) -> str:
    head = ("| experiment | strategy | lr | steps | state | val gain (dB, 95% CI) | PSNR (dB) | SSIM "
            "| test gain over pretrained (dB, 95% CI) | triplets improved | train (min) |\n"
            "|---|---|---|---|---|---|---|---|---|---|---|\n")
    lines = []
    for r in rows:
        gain = f"{r.gain:+.3f} ({r.gain_low:+.3f} .. {r.gain_high:+.3f})" if r.gain is not None else ""
        val = (f"{r.val_gain:+.3f} ({r.val_gain_low:+.3f} .. {r.val_gain_high:+.3f})"
               if r.val_gain is not None and r.val_gain_low is not None else "")
        share = f"{r.share_improved:.0%}" if r.share_improved is not None else ""
        name = f"**{r.name}** (chosen)" if r.chosen else r.name
        lines.append(f"| {name} | {r.strategy} | {_fmt(r.lr, 'g')} | {_fmt(r.steps, 'd')} | {r.state} | {val} "
                     f"| {_fmt(r.psnr, '.3f')} | {_fmt(r.ssim, '.4f')} | {gain} | {share} "
                     f"| {_fmt(r.train_minutes, '.1f')} |")
    return head + "\n".join(lines) + "\n"


def plot(rows: list[Row], path: Path) -> None:
    done = [r for r in rows if r.gain is not None]
    with png_figure(path) as ax:
        labels = [f"{r.name}: {r.strategy}, lr {r.lr:g}" for r in done]
        ax.errorbar([r.gain for r in done], range(len(done)), fmt="o", label="mean gain, 95% bootstrap interval",
                    xerr=[[r.gain - r.gain_low for r in done], [r.gain_high - r.gain for r in done]])
        ax.axvline(0.0, color="grey", linewidth=1)
        ax.set_yticks(range(len(done)), labels, fontsize=8)
        ax.invert_yaxis()
        ax.set_xlabel("PSNR gain over the pretrained model on the test split (dB, 95% interval)")


@user_facing
def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m pipeline.study", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=STUDY_RESULTS, help=f"folder to write (default {STUDY_RESULTS})")
    parser.add_argument("--queue", action="store_true",
                        help="queue the standard study first (then: dvc queue start -j 1)")
    parser.add_argument("--rev", default=None,
                        help="summarise the experiments of this commit instead of HEAD's (e.g. after later commits)")
    parser.add_argument("--steps", type=int, default=None,
                        help="with --queue: the budget of every run in optimizer steps (default: train.steps)")
    parser.add_argument("--only", default=None, metavar="NAME,...",
                        help="with --queue: only these runs of the study (comma-separated names)")
    parser.add_argument("--shard", default=None, metavar="K/N",
                        help="with --queue: this machine's share of the study, k of n machines (e.g. 1/3); "
                             "share the results with dvc exp push (see docs/sharing.md)")
    args = parser.parse_args(argv)
    if not args.queue and (args.only or args.shard):
        raise UserError("--only and --shard choose which runs to queue: use them with --queue")
    if args.queue:
        only = [name.strip() for name in args.only.split(",") if name.strip()] if args.only is not None else None
        if only == []:
            raise UserError("--only names no run; give names of the study's runs separated by commas")
        shard = parse_shard(args.shard) if args.shard is not None else (1, 1)
        names = queue_study(args.steps, only=only, shard=shard)
        log.info("queued %d runs (%s); start them with `dvc queue start -j 1`, then rerun python -m pipeline.study",
                 len(names), ", ".join(names) or "none: this shard is empty")
        return
    rows = rank_by_validation(parse(experiments_json(args.rev)))
    table = markdown(rows) + "\n" + validation_verdict(rows)
    args.out.mkdir(parents=True, exist_ok=True)
    write_text(args.out / "summary.md", table)
    with atomic_path(args.out / "summary.csv") as tmp:
        pd.DataFrame([asdict(r) for r in rows]).to_csv(tmp, index=False)
    with atomic_path(args.out / "summary.png") as tmp:
        plot(rows, tmp)
    print(table, end="")
    states = pd.Series([r.state for r in rows]).value_counts()
    log.info("%d experiments (%s); wrote %s", len(rows), ", ".join(f"{n} {s}" for s, n in states.items()), args.out)


if __name__ == "__main__":
    main()
