"""What ``evaluate`` reports of the scored test triplets: the table of every triplet, the means and paired gains
with their bootstrap intervals, per-clip and per-gap breakdowns (``details.json``), the headline of them
(``metrics.json``), motion buckets, and the log."""

from __future__ import annotations

import json
import logging

import numpy as np
import pandas as pd

from pipeline.core.atomic import atomic_path, write_text
from pipeline.core.params import REQUIRED_METRICS, Evaluate
from pipeline.core.paths import EVALUATE_RESULTS
from pipeline.scoring.batches import FULL_SCALE_MAX_PIXELS
from pipeline.scoring.interpolators import METHODS
from pipeline.scoring.metrics import MAX_PSNR, paired_difference, rounded

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


def headline(summary: dict) -> dict:
    """``metrics.json``, in this order: ``psnr``, fine-tuned minus pretrained PSNR on the test triplets (dB), and
    ``vmaf``, the same for VMAF on the rebuilt segments (when rebuilt), each as ``gain`` with its 95% interval
    (``low``, ``high``); ``improved``, the share of triplets with a higher PSNR; the pretrained model's PSNR and
    SSIM and the number of triplets (the same in every run of the footage). Short names and
    :data:`~pipeline.scoring.metrics.HEADLINE_DECIMALS` places, so ``dvc exp show --only-changed`` of a few runs
    fits a 200-column terminal; ``details.json`` holds the whole ``summary``."""
    test = summary[GAIN]
    out = {"psnr": {"gain": test["psnr"], "low": test["psnr_ci95_low"], "high": test["psnr_ci95_high"]}}
    segments = summary["segments"].get(GAIN)
    if segments:
        out["vmaf"] = {"gain": segments["vmaf"], "low": segments["vmaf_ci95_low"], "high": segments["vmaf_ci95_high"]}
    out.update(improved=test["share_improved"],
               pretrained={metric: summary["pretrained"][metric] for metric in REQUIRED_METRICS},
               triplets=summary["triplets"])
    return rounded(out)


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


def with_every_method(table: pd.DataFrame, metrics: tuple[str, ...]) -> pd.DataFrame:
    """``table`` with an empty ``<method>_<metric>`` column for each method of the registry it lacks: the tables
    have the same columns whatever ``evaluate.methods`` holds (the study's runs: the two models), which the charts'
    templates (.dvc/plots) read; an empty column draws no line."""
    missing = [f"{name}_{metric}" for name in METHODS for metric in metrics if f"{name}_{metric}" not in table]
    return table.assign(**dict.fromkeys(missing, np.nan))


def write_tables(table: pd.DataFrame, buckets: pd.DataFrame, summary: dict) -> None:
    with atomic_path(EVALUATE_RESULTS / "per_triplet.csv") as tmp:
        table.to_csv(tmp, index=False, float_format="%.6f")
    with atomic_path(EVALUATE_RESULTS / "motion_buckets.csv") as tmp:
        with_every_method(buckets, ("psnr",)).to_csv(tmp, index=False, float_format="%.6f")
    write_text(EVALUATE_RESULTS / "metrics.json", json.dumps(headline(summary), indent=2) + "\n")
    write_text(EVALUATE_RESULTS / "details.json", json.dumps(summary, indent=2) + "\n")
