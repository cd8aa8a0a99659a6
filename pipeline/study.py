"""The learning-rate study: ``python -m pipeline.study --queue`` queues it, ``python -m pipeline.study`` reports it.

``--queue`` queues every strategy of the standard study (:mod:`pipeline.experiments.runs`) with ``--seeds`` seed
replicates each, one ``dvc exp run --queue`` per run; run them with ``dvc queue start -j 1`` and report once
``dvc queue status`` shows them done. ``--shard k/n`` queues only this machine's share (every n-th run from the
k-th) so that n machines run it together (share with ``dvc exp push origin``, gather with ``dvc exp pull origin``);
``--only`` picks strategies by name.

Without ``--queue`` it reads ``dvc exp show --json`` (the baseline commit and every experiment run or queued from
it) and each finished run's per-triplet and per-frame scores from its results commit, groups the runs into
strategies (``<strategy>-seed<k>``), and writes ``results/study/summary.md`` (the table and the verdict),
``summary.csv`` and ``summary.png``: per strategy the mean test gain over the pretrained model with its interval,
the spread between seeds, the paired difference from the default and from the best, the gain on the fastest
motion and the VMAF difference on the rebuilt segments, and whether the val split ranks strategies as the test
does (:mod:`pipeline.experiments.verdict`).
"""

from __future__ import annotations

import argparse
import logging
from collections import Counter
from pathlib import Path

from pipeline.core.atomic import atomic_path, write_text
from pipeline.core.errors import UserError
from pipeline.core.paths import STUDY_RESULTS
from pipeline.core.runner import user_facing
from pipeline.experiments.records import (
    PER_TRIPLET,
    SEGMENT_FRAMES,
    TRAIN_SECONDS,
    Experiment,
    committed_table,
    experiments_json,
    parse,
)
from pipeline.experiments.report import plot, report_text, rows
from pipeline.experiments.runs import (
    DEFAULT,
    baseline_seed,
    parse_settings,
    parse_shard,
    queue_runs,
    select_runs,
    study_runs,
)
from pipeline.experiments.verdict import StrategyResult, segment_lengths, summarise

log = logging.getLogger("pipeline.study")

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
    gain = (baseline.evaluate.get("gain") or {}).get("psnr")
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


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m pipeline.study", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=STUDY_RESULTS, help=f"folder to write (default {STUDY_RESULTS})")
    parser.add_argument("--queue", action="store_true",
                        help="queue the standard study first (then: dvc queue start -j 1)")
    parser.add_argument("--seeds", type=int, default=3,
                        help="with --queue: seed replicates of every strategy (default 3: base.seed, base.seed + 1, "
                             "base.seed + 2)")
    parser.add_argument("--rev", action="append", default=[],
                        help="report the experiments of this commit instead of HEAD's (e.g. after later commits); "
                             "repeat it to pool the experiments of several commits (the first one's run is the "
                             "baseline)")
    parser.add_argument("--steps", type=int, default=None,
                        help="with --queue: the budget of every run in optimizer steps (default: train.steps)")
    parser.add_argument("--only", default=None, metavar="NAME,...",
                        help="with --queue: only these strategies of the study (comma-separated names)")
    parser.add_argument("--extended", action="store_true",
                        help="with --queue: also the extra strategies (EXTRA in pipeline/experiments/runs.py, and the "
                             "constant rate lr_find suggests when results/lr_find exists)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="settings",
                        help="with --queue: a param every run sets (repeatable), e.g. --set train.threads=1 to run two "
                             "at a time on a 2-core machine with dvc queue start -j 2")
    parser.add_argument("--shard", default=None, metavar="K/N",
                        help="with --queue: this machine's share of the study, k of n machines (e.g. 1/3); "
                             "share the results with dvc exp push (see docs/sharing.md)")
    return parser.parse_args(argv)


@user_facing
def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if not args.queue and (args.only or args.shard or args.settings or args.extended):
        raise UserError("--only, --extended, --shard and --set choose which runs to queue: use them with --queue")
    if not args.queue:
        print(report(args.rev, args.out), end="")
        return
    if args.seeds < 1:
        raise UserError(f"--seeds {args.seeds}: expected 1 or more replicates per strategy")
    only = [name.strip() for name in args.only.split(",") if name.strip()] if args.only is not None else None
    if only == []:
        raise UserError("--only names no strategy; give names of the study's strategies separated by commas")
    shard = parse_shard(args.shard) if args.shard is not None else (1, 1)
    extra = parse_settings(args.settings)
    runs = select_runs(study_runs(extended=args.extended or only is not None), only, args.seeds, baseline_seed(), shard)
    queue_runs(runs, args.steps, extra)
    log.info("queued %d runs (%s); start them with `dvc queue start -j 1`, then rerun python -m pipeline.study",
             len(runs), ", ".join(runs) or "none: this shard is empty")


if __name__ == "__main__":
    main()
