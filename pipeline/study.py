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
from pathlib import Path

from pipeline.core.errors import UserError
from pipeline.core.paths import STUDY_RESULTS
from pipeline.core.runner import user_facing
from pipeline.experiments.report import report
from pipeline.experiments.runs import (
    baseline_seed,
    parse_settings,
    parse_shard,
    queue_runs,
    select_runs,
    study_runs,
)

log = logging.getLogger("pipeline.study")


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
