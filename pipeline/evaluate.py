"""Stage ``evaluate``: did the fine-tune help on this footage, by how much, and where?

Every method of ``evaluate.methods`` (the fine-tuned and pretrained RIFE models and classical baselines, see
:mod:`pipeline.scoring.interpolators`) predicts every held-out test triplet at full resolution, scored by every metric of
``evaluate.metrics``.

Reads: ``data/triplets/`` (test split), ``models/pretrained/flownet.pkl``, ``models/finetuned/flownet.pkl``;
params ``evaluate`` and ``train.arch``. Writes to ``results/evaluate/``:

- ``metrics.json``: mean of each metric per method; ``finetuned_minus_pretrained``, the paired difference with a
  seeded 95% bootstrap interval and the share of triplets improved; ``per_clip`` and ``per_gap``, compact
  breakdowns (``per_gap``: one entry per ``extract.gap``, with the PSNR gain's interval);
- ``per_triplet.csv``: every triplet, every method, every metric, with the manifest's motion score and timestep;
- ``motion_buckets.csv``: mean PSNR per method in equal-count buckets of motion;
- ``examples/``: image grids of the most improved and most degraded triplets; ``summary.png``;
- ``segment_frames.csv``: every interpolated frame of the rebuilt test segments (see
  :mod:`pipeline.scoring.segments`), each method's metrics and VMAF, and ``segments`` in ``metrics.json``;
- ``videos/<clip>.mkv`` (side-by-side, DVC-cached) and ``preview/<clip>.png`` (animated, git-tracked): see
  :mod:`pipeline.scoring.watch`.

For the segments it also reads the footage in ``sources.videos`` (``data/triplets`` holds only the frames of kept
triplets) and ``extract.cut_threshold`` (no interpolation across a scene cut, as in ``interpolate``).
"""

from __future__ import annotations

import json
import logging
from contextlib import ExitStack

import numpy as np
import pandas as pd
import torch

from pipeline.core.atomic import atomic_dir, atomic_path, write_text
from pipeline.core.errors import UserError, user_facing
from pipeline.core.params import Evaluate, load_params
from pipeline.core.paths import EVALUATE_RESULTS, PRETRAINED
from pipeline.footage.triplets import split_triplets
from pipeline.models import check_timesteps, with_resolved_arch
from pipeline.scoring.batches import FULL_SCALE_MAX_PIXELS, Predictor, score_triplets
from pipeline.scoring.interpolators import build_methods
from pipeline.scoring.metrics import MAX_PSNR, paired_difference
from pipeline.scoring.segment_summary import frame_table, summarise_segments
from pipeline.scoring.segments import SEQUENCE_METHOD, Rebuilder, Segment, plan_segments
from pipeline.scoring.plots import write_examples, write_summary_png

log = logging.getLogger("pipeline.evaluate")

GAIN = "finetuned_minus_pretrained"
ROW_COLUMNS = ["triplet", "clip", "gap", "frame0", "frame_t", "frame1", "timestep", "height", "width", "motion"]
CLIP_METRICS = ("psnr", "ssim")  # the per-clip breakdown stays small: the two headline metrics only
OTHER_CLIPS = "other_clips"


def triplet_table(rows: pd.DataFrame, scores: pd.DataFrame) -> pd.DataFrame:
    """The manifest's description of each triplet next to its scores; infinite PSNRs capped at MAX_PSNR."""
    table = pd.concat([rows[ROW_COLUMNS], scores], axis=1)
    psnr_columns = [c for c in scores.columns if "_psnr" in c]
    table[psnr_columns] = table[psnr_columns].clip(upper=MAX_PSNR)
    return table


def gain_summary(table: pd.DataFrame, cfg: Evaluate) -> dict[str, float]:
    """Fine-tuned minus pretrained for each metric: mean, bootstrap interval; share of triplets with a higher PSNR."""
    gain: dict[str, float] = {}
    for metric in cfg.metrics:
        diff = paired_difference(table[f"finetuned_{metric}"], table[f"pretrained_{metric}"],
                                 cfg.bootstrap_samples, cfg.bootstrap_seed)
        gain.update({metric: diff["mean"], f"{metric}_ci95_low": diff["ci95_low"],
                     f"{metric}_ci95_high": diff["ci95_high"]})
    gain["share_improved"] = float((table.finetuned_psnr > table.pretrained_psnr).mean())
    return gain


def clip_entry(part: pd.DataFrame, methods: tuple[str, ...]) -> dict[str, float]:
    entry: dict[str, float] = {"triplets": len(part)}
    for metric in CLIP_METRICS:
        entry.update({f"{m}_{metric}": float(part[f"{m}_{metric}"].mean()) for m in methods})
        entry[f"{GAIN}_{metric}"] = float((part[f"finetuned_{metric}"] - part[f"pretrained_{metric}"]).mean())
    return entry


def per_clip(table: pd.DataFrame, cfg: Evaluate) -> dict[str, dict[str, float]]:
    """Per-clip means, for the ``per_clip_max`` clips with the most test triplets (by name); any others are
    pooled under ``other_clips``, so ``dvc metrics diff`` stays readable with thousands of clips."""
    sizes = table.groupby("clip").size()
    ranked = sorted(sizes.index, key=lambda clip: (-sizes[clip], clip))
    listed = sorted(ranked[:cfg.per_clip_max])
    breakdown = {clip: clip_entry(table[table["clip"] == clip], cfg.methods) for clip in listed}
    rest = table[~table["clip"].isin(listed)]
    if len(rest):
        breakdown[OTHER_CLIPS] = {"clips": len(ranked) - len(listed), **clip_entry(rest, cfg.methods)}
    return breakdown


def per_gap(table: pd.DataFrame, cfg: Evaluate) -> dict[str, dict[str, float]]:
    """The per-clip breakdown by gap (I1 is ``2 x gap`` frames after I0), with the PSNR gain's 95% interval."""
    breakdown = {}
    for gap, part in table.groupby("gap"):
        entry = clip_entry(part, cfg.methods)
        diff = paired_difference(part["finetuned_psnr"], part["pretrained_psnr"], cfg.bootstrap_samples,
                                 cfg.bootstrap_seed)
        entry.update({f"{GAIN}_psnr_ci95_low": diff["ci95_low"], f"{GAIN}_psnr_ci95_high": diff["ci95_high"]})
        breakdown[str(gap)] = entry
    return breakdown


def summarise(table: pd.DataFrame, cfg: Evaluate) -> dict:
    summary: dict = {"triplets": len(table)}
    for name in cfg.methods:
        summary[name] = {metric: float(table[f"{name}_{metric}"].mean()) for metric in cfg.metrics}
    summary[GAIN] = gain_summary(table, cfg)
    summary["per_clip"] = per_clip(table, cfg)
    summary["per_gap"] = per_gap(table, cfg)
    return summary


def motion_buckets(table: pd.DataFrame, cfg: Evaluate) -> pd.DataFrame:
    """Mean PSNR of each method in ``motion_buckets`` equal-count buckets of the motion score (fewer when there
    are fewer triplets); ``motion`` is the bucket's median, the x axis of the plot."""
    count = min(cfg.motion_buckets, len(table))
    order = np.argsort(table["motion"].to_numpy(), kind="stable")
    bucket = np.empty(len(table), dtype=int)
    bucket[order] = np.arange(len(table)) * count // len(table)
    groups = table.groupby(bucket)
    out = pd.DataFrame({"bucket": np.arange(1, count + 1), "motion_low": groups.motion.min(),
                        "motion_high": groups.motion.max(), "motion": groups.motion.median(),
                        "triplets": groups.size()})
    for name in cfg.methods:
        out[f"{name}_psnr"] = groups[f"{name}_psnr"].mean()
    out[f"{GAIN}_psnr"] = out.finetuned_psnr - out.pretrained_psnr
    return out.reset_index(drop=True)


def describe_rows(rows: pd.DataFrame, cfg: Evaluate) -> str:
    sizes = rows.groupby(["width", "height"]).size()
    listed = ", ".join(f"{w}x{h} x{n}" for (w, h), n in sizes.items())
    scale = (f"auto: 1.0 up to {FULL_SCALE_MAX_PIXELS / 1e6:.1f} Mpixel, 0.5 above" if cfg.scale == "auto"
             else f"{cfg.scale:g}")
    return (f"{len(rows)} test triplets from {rows['clip'].nunique()} clip(s) ({listed}); methods: "
            f"{', '.join(cfg.methods)}; metrics: {', '.join(cfg.metrics)}; model scale {scale}; "
            f"batches of up to {cfg.batch_size}")


def log_results(summary: dict, cfg: Evaluate, seconds: dict[str, float]) -> None:
    for name in cfg.methods:
        values = ", ".join(f"{metric} {summary[name][metric]:.4f}" for metric in cfg.metrics)
        log.info("%-10s %s (%.1f s in all)", name, values, seconds.get(name, 0.0))
    g = summary[GAIN]
    log.info("fine-tuned minus pretrained: %+.3f dB PSNR (95%% CI %+.3f .. %+.3f), %+.5f SSIM; %.0f%% of triplets "
             "improved", g["psnr"], g["psnr_ci95_low"], g["psnr_ci95_high"], g["ssim"], 100 * g["share_improved"])
    seg = summary["segments"]
    if seg["segments"]:
        log.info("rebuilt segments: %d frames of %d clip(s) interpolated, %d interval(s) across a scene cut",
                 seg["frames"], seg["clips"], seg["cuts"])
        for name in cfg.methods:
            log.info("%-10s PSNR %.3f, SSIM %.4f, VMAF %.2f", name, seg[name]["psnr"], seg[name]["ssim"],
                     seg[name]["vmaf"])
        g = seg[GAIN]
        log.info("fine-tuned minus pretrained on the segments: %+.3f VMAF (95%% CI %+.3f .. %+.3f, block bootstrap, "
                 "blocks of %d frames), %+.3f dB PSNR", g["vmaf"], g["vmaf_ci95_low"], g["vmaf_ci95_high"],
                 g["block_frames"], g["psnr"])
    if len(summary["per_gap"]) > 1:
        for gap, entry in summary["per_gap"].items():
            log.info("gap %s (%d triplets): %+.3f dB PSNR (95%% CI %+.3f .. %+.3f)", gap, entry["triplets"],
                     entry[f"{GAIN}_psnr"], entry[f"{GAIN}_psnr_ci95_low"], entry[f"{GAIN}_psnr_ci95_high"])


def write_tables(table: pd.DataFrame, buckets: pd.DataFrame, summary: dict) -> None:
    with atomic_path(EVALUATE_RESULTS / "per_triplet.csv") as tmp:
        table.to_csv(tmp, index=False, float_format="%.6f")
    with atomic_path(EVALUATE_RESULTS / "motion_buckets.csv") as tmp:
        buckets.to_csv(tmp, index=False, float_format="%.6f")
    write_text(EVALUATE_RESULTS / "metrics.json", json.dumps(summary, indent=2) + "\n")


def triplet_keys(rows: pd.DataFrame) -> list[tuple[str, int, int, float]]:
    return [(c, int(f0), int(f1), round(float(t), 6)) for c, f0, f1, t in
            zip(rows["clip"], rows["frame0"], rows["frame1"], rows["timestep"])]


def score_with_segments(rows: pd.DataFrame, predictors: dict[str, Predictor], params, segments: list[Segment],
                        seconds: dict[str, float]) -> tuple[pd.DataFrame, Rebuilder]:
    """Scores of every triplet (as :func:`score_triplets`) and the rebuilt segments. A triplet that is also an
    interval of a segment is predicted there, once; only ``ffmpeg_mci`` scores it apart (on its two frames)."""
    cfg = params.evaluate
    planned = {key for seg in segments for key in seg.keys()}
    shared = np.array([key in planned for key in triplet_keys(rows)], dtype=bool)
    log.info("%d rebuilt segment(s), %d interpolated frames; %d of the %d triplets are rebuilt intervals",
             len(segments), sum(s.pairs * (s.step - 1) for s in segments), shared.sum(), len(rows))
    rest = score_triplets(rows[~shared], predictors, cfg.metrics, cfg.round_prediction, cfg.batch_size,
                          progress=True, seconds=seconds)
    with ExitStack() as stack:
        videos = stack.enter_context(atomic_dir(EVALUATE_RESULTS / "videos"))
        previews = stack.enter_context(atomic_dir(EVALUATE_RESULTS / "preview"))
        rebuilder = Rebuilder(predictors, params, set(triplet_keys(rows[shared])), videos, previews, seconds)
        rebuilder.run(segments)
    parts = [rest]
    if shared.any():
        from_segments = pd.DataFrame([rebuilder.triplet_scores[k] for k in triplet_keys(rows[shared])],
                                     index=rows.index[shared])
        if SEQUENCE_METHOD in predictors:
            mci = score_triplets(rows[shared], {SEQUENCE_METHOD: predictors[SEQUENCE_METHOD]}, cfg.metrics,
                                 cfg.round_prediction, cfg.batch_size, seconds=seconds)
            from_segments = pd.concat([from_segments, mci], axis=1)
        parts.append(from_segments)
    columns = [f"{m}_{k}" for m in predictors for k in cfg.metrics]
    return pd.concat(parts).loc[rows.index, columns], rebuilder


@user_facing
def main() -> None:
    params = load_params()
    cfg = params.evaluate
    rows = split_triplets("test", cfg.max_triplets)
    if rows.empty:
        raise UserError("data/triplets has no test triplet; raise extract.test_fraction")
    params = with_resolved_arch(params, PRETRAINED)
    check_timesteps(params.train.arch, rows["timestep"], "the test split of data/triplets")
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    predictors = build_methods(cfg.methods, params, device)
    log.info("evaluating %s", describe_rows(rows, cfg))
    segments = plan_segments(rows, params)
    seconds: dict[str, float] = {}
    scores, rebuilder = score_with_segments(rows, predictors, params, segments, seconds)
    table = triplet_table(rows, scores)
    summary = summarise(table, cfg)
    buckets = motion_buckets(table, cfg)
    frames = frame_table(rebuilder)
    summary["segments"] = summarise_segments(rebuilder, frames, cfg.bootstrap_samples, cfg.bootstrap_seed)
    log_results(summary, cfg, seconds)
    write_tables(table, buckets, summary)
    with atomic_path(EVALUATE_RESULTS / "segment_frames.csv") as tmp:
        frames.drop(columns=["segment", "offset"], errors="ignore").to_csv(tmp, index=False, float_format="%.6f")
    write_summary_png(buckets, summary, cfg.methods, EVALUATE_RESULTS / "summary.png")
    write_examples(table, rows, predictors, cfg, EVALUATE_RESULTS / "examples")
    log.info("wrote %s: metrics.json, per_triplet.csv, motion_buckets.csv, segment_frames.csv, summary.png, "
             "examples/, preview/, videos/", EVALUATE_RESULTS)


if __name__ == "__main__":
    main()
