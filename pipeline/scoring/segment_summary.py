"""What the rebuilt test segments add to ``evaluate``'s results: the per-frame table (``segment_frames.csv``) and
``segments`` in ``details.json``, with the fine-tuned minus pretrained gains and their block bootstrap intervals."""

from __future__ import annotations

import numpy as np
import pandas as pd

from pipeline.core.params import Evaluate
from pipeline.scoring.metrics import MAX_PSNR, block_bootstrap
from pipeline.scoring.segments import Rebuilt


def frame_table(rebuilt: Rebuilt) -> pd.DataFrame:
    """One row per interpolated frame: where it is, and each method's metrics and VMAF."""
    table = pd.DataFrame(rebuilt.frames)
    if table.empty:
        return table
    psnr_columns = [c for c in table.columns if "_psnr" in c]
    table[psnr_columns] = table[psnr_columns].clip(upper=MAX_PSNR)  # as for triplets: exact frames count as 100 dB
    for name in rebuilt.methods:
        places = zip(table["segment"], table["offset"], strict=True)
        table[f"{name}_vmaf"] = [rebuilt.vmaf[s][name][o] for s, o in places]
    return table


def _means(table: pd.DataFrame, vmaf: list[dict[str, np.ndarray]], methods: tuple[str, ...],
           metrics: tuple[str, ...]) -> dict[str, dict[str, float]]:
    """Each method's mean metrics over the interpolated frames, and its VMAF pooled over every frame (kept
    frames too: VMAF scores a video, as libvmaf's pooled mean does)."""
    out = {}
    for name in methods:
        out[name] = {m: float(table[f"{name}_{m}"].mean()) for m in metrics}
        out[name]["vmaf"] = float(np.concatenate([v[name] for v in vmaf]).mean())
    return out


def summarise_segments(rebuilt: Rebuilt, table: pd.DataFrame, cfg: Evaluate) -> dict:
    """``segments`` of details.json: counts, per-method means, the fine-tuned minus pretrained gains with block
    bootstrap intervals, and per-clip means (the clips with the most rebuilt frames)."""
    vmaf, methods = rebuilt.vmaf, rebuilt.methods
    if table.empty:
        return {"segments": 0}
    summary: dict = {"segments": len(vmaf), "clips": int(table["clip"].nunique()), "frames": len(table),
                     "cuts": rebuilt.cuts, **_means(table, vmaf, methods, cfg.metrics)}
    block = cfg.segments.block_frames
    series = {"vmaf": [v["finetuned"] - v["pretrained"] for v in vmaf]}
    for metric in ("psnr", "ssim"):
        series[metric] = [(part[f"finetuned_{metric}"] - part[f"pretrained_{metric}"]).to_numpy()
                          for _, part in table.groupby("segment")]
    gain: dict[str, float] = {"block_frames": block}
    for metric, values in series.items():
        diff = block_bootstrap(values, block, cfg.bootstrap_samples, cfg.bootstrap_seed)
        gain.update({metric: diff["mean"], f"{metric}_ci95_low": diff["ci95_low"],
                     f"{metric}_ci95_high": diff["ci95_high"]})
    summary["finetuned_minus_pretrained"] = gain
    sizes = table.groupby("clip").size()
    listed = sorted(sorted(sizes.index, key=lambda c: (-sizes[c], c))[:cfg.per_clip_max])
    summary["per_clip"] = {}
    for clip in listed:
        part = table[table["clip"] == clip]
        means = _means(part, [vmaf[s] for s in sorted(part["segment"].unique())], methods, ("psnr", "ssim"))
        summary["per_clip"][clip] = {"frames": len(part), **{f"{n}_{m}": v for n, entry in means.items()
                                                               for m, v in entry.items()}}
    return summary
