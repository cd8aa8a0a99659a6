"""Stage ``evaluate``: did the fine-tune help on this footage, by how much, and where?

Every method of ``evaluate.methods`` (the fine-tuned and pretrained RIFE models and classical baselines, see
:mod:`pipeline.scoring.interpolators`) predicts every held-out test triplet at full resolution, scored by every
metric of ``evaluate.metrics``.

Reads: ``data/triplets/`` (test split), ``models/pretrained/flownet.pkl``, ``models/finetuned/flownet.pkl``;
params ``evaluate`` (``evaluate.mixed_precision``: ``no``, float32, for official scores) and ``train.arch``.
Writes to ``results/evaluate/``:

- ``details.json`` (DVC-cached): mean of each metric per method; ``finetuned_minus_pretrained``, the paired
  difference with a seeded 95% bootstrap interval and the share of triplets improved; ``per_clip`` and ``per_gap``,
  compact breakdowns (``per_gap``: one entry per ``extract.gap``, with the PSNR gain's interval); ``segments``;
- ``metrics.json`` (the DVC metric): the headline of ``details.json`` (see
  :func:`pipeline.scoring.summary.headline`);
- ``per_triplet.csv``: every triplet, every method, every metric, with the manifest's motion score and timestep;
- ``motion_buckets.csv``: mean PSNR per method in equal-count buckets of motion;
- ``examples/``: image grids of the most improved and most degraded triplets; ``summary.png``;
- ``segment_frames.csv``: every interpolated frame of the rebuilt test segments (see
  :mod:`pipeline.scoring.segments`), each method's metrics and VMAF, and ``segments`` in ``details.json``;
- ``videos/<clip>.mkv`` (side-by-side, DVC-cached) and ``preview/<clip>.png`` (animated, git-tracked): see
  :mod:`pipeline.scoring.watch`.

The parts: :mod:`pipeline.scoring.evaluation` (scoring), :mod:`pipeline.scoring.summary` and
:mod:`pipeline.scoring.segment_summary` (what is reported). For the segments it also reads the footage in
``sources.videos`` (``data/triplets`` holds only the frames of kept triplets) and ``extract.cut_threshold`` (no
interpolation across a scene cut, as in ``interpolate``).
"""

from __future__ import annotations

import logging

import torch

from pipeline.core.atomic import atomic_path, output_set
from pipeline.core.errors import UserError
from pipeline.core.params import load_params
from pipeline.core.paths import EVALUATE_RESULTS, PRETRAINED
from pipeline.core.runner import user_facing
from pipeline.core.system import cpu_threads, pin_cpu_isa
from pipeline.footage.triplets import split_triplets
from pipeline.models import check_timesteps, with_resolved_arch
from pipeline.scoring.evaluation import score_with_segments
from pipeline.scoring.interpolators import build_methods
from pipeline.scoring.plots import write_examples, write_summary_png
from pipeline.scoring.segment_plan import plan_segments
from pipeline.scoring.segment_summary import frame_table, summarise_segments
from pipeline.scoring.summary import (
    describe_rows,
    log_results,
    motion_buckets,
    summarise,
    triplet_table,
    with_every_method,
    write_tables,
)

log = logging.getLogger("pipeline.evaluate")

# the params this stage reads: its `params:` in dvc.yaml (their cross-field checks run here)
PARAMS = ("evaluate", "train.arch", "train.threads", "train.cpu_isa", "sources.videos", "extract.cut_threshold")


@user_facing
def main() -> None:
    params = load_params(sections=PARAMS)
    cfg = params.evaluate
    pin_cpu_isa(params.train.cpu_isa)  # the fine-tuned model runs the kernels it was trained with
    torch.set_num_threads(cpu_threads(params.train.threads))
    rows = split_triplets("test", cfg.max_triplets)
    if rows.empty:
        raise UserError("data/triplets has no test triplet; raise extract.test_fraction")
    params = with_resolved_arch(params, PRETRAINED)
    check_timesteps(params.train.arch, rows["timestep"], "the test split of data/triplets")
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    predictors = build_methods(cfg.methods, params, device)
    if cfg.mixed_precision != "no":
        log.warning("evaluate.mixed_precision = %s: the models run under autocast; the official scores are "
                    "float32 (no), and %s scores count only once they differ from those by under 0.01 dB",
                    cfg.mixed_precision, cfg.mixed_precision)
    log.info("evaluating %s", describe_rows(rows, cfg))
    segments = plan_segments(rows, params)
    seconds: dict[str, float] = {}
    with output_set():  # every file below (and the videos and previews scoring writes) replaced together
        scores, rebuilt = score_with_segments(rows, predictors, params, segments, seconds)
        table = triplet_table(rows, scores)
        summary = summarise(table, cfg)
        buckets = motion_buckets(table, cfg)
        frames = frame_table(rebuilt)
        summary["segments"] = summarise_segments(rebuilt, frames, cfg)
        log_results(summary, cfg, seconds)
        write_tables(table, buckets, summary)
        with atomic_path(EVALUATE_RESULTS / "segment_frames.csv") as tmp:
            frames = frames.drop(columns=["segment", "offset"], errors="ignore")
            (with_every_method(frames, ("psnr", "vmaf")) if len(frames) else frames).to_csv(
                tmp, index=False, float_format="%.6f")
        write_summary_png(buckets, summary, cfg.methods, EVALUATE_RESULTS / "summary.png")
        write_examples(table, rows, predictors, cfg, EVALUATE_RESULTS / "examples")
    log.info("wrote %s: metrics.json, details.json, per_triplet.csv, motion_buckets.csv, segment_frames.csv, "
             "summary.png, examples/, preview/, videos/", EVALUATE_RESULTS)


if __name__ == "__main__":
    main()
