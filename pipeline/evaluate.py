"""Stage ``evaluate``: PSNR/SSIM of the fine-tuned model, the pretrained one and simple baselines.

Reads: ``data/triplets/`` (test split), ``models/pretrained/flownet.pkl``, ``models/finetuned/flownet.pkl``;
params ``evaluate`` and ``train.arch``. Writes: ``results/evaluate/metrics.json`` (mean PSNR/SSIM per method and the paired
difference fine-tuned minus pretrained with a seeded 95% bootstrap interval) and
``results/evaluate/per_triplet.csv`` (every test triplet, every method).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from pipeline.data import read_triplet, split_triplets
from pipeline.errors import UserError, user_facing
from pipeline.fsutil import atomic_path, write_text
from pipeline.inference import interpolate_frames
from pipeline.metrics import prediction_to_255, psnr, ssim
from pipeline.models import check_timesteps, load_checkpoint, with_resolved_arch
from pipeline.params import Params, load_params
from pipeline.paths import EVALUATE_RESULTS, FINETUNED, PRETRAINED

log = logging.getLogger("pipeline.evaluate")

MAX_PSNR = 100.0  # dB; a pixel-exact prediction (infinite PSNR) counts as this in means
Predictor = Callable[[np.ndarray, np.ndarray], np.ndarray]  # (I0, I1) uint8 -> float HxWx3 in [0, 1]


def repeat_frame(img0: np.ndarray, img1: np.ndarray) -> np.ndarray:
    return img0.astype(np.float32) / 255.0


def blend_frames(img0: np.ndarray, img1: np.ndarray) -> np.ndarray:
    return (img0.astype(np.float32) + img1.astype(np.float32)) / 510.0


def model_method(checkpoint: Path) -> Callable[[Params, torch.device], Predictor]:
    def build(params: Params, device: torch.device) -> Predictor:
        model = load_checkpoint(checkpoint, params.train.arch).to(device)
        return lambda img0, img1: interpolate_frames(model, img0, img1, device)
    return build


METHODS: dict[str, Callable[[Params, torch.device], Predictor]] = {
    "finetuned": model_method(FINETUNED),
    "pretrained": model_method(PRETRAINED),
    "repeat": lambda params, device: repeat_frame,
    "blend": lambda params, device: blend_frames,
}


def paired_difference(a: np.ndarray, b: np.ndarray, samples: int, seed: int) -> dict[str, float]:
    """Mean of ``a - b`` with a percentile bootstrap 95% interval over triplets."""
    diff = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    rng = np.random.default_rng(seed)
    means = diff[rng.integers(0, len(diff), size=(samples, len(diff)))].mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    return {"mean": float(diff.mean()), "ci95_low": float(low), "ci95_high": float(high)}


def score_all(rows: pd.DataFrame, methods: dict[str, Predictor], round_prediction: bool) -> pd.DataFrame:
    records = []
    for _, row in tqdm(rows.iterrows(), total=len(rows), desc="evaluate", unit="triplet"):
        img0, target, img1 = read_triplet(row)
        record = {k: row[k] for k in ("triplet", "clip", "frame0", "frame_t", "frame1", "motion")}
        for name, predict in methods.items():
            pred = prediction_to_255(predict(img0, img1), round_prediction)
            record[f"{name}_psnr"] = min(psnr(pred, target), MAX_PSNR)
            record[f"{name}_ssim"] = ssim(pred, target)
        records.append(record)
    return pd.DataFrame(records)


def summarise(table: pd.DataFrame, params: Params) -> dict:
    cfg = params.evaluate
    summary: dict = {"triplets": len(table)}
    for name in cfg.methods:
        summary[name] = {"psnr": float(table[f"{name}_psnr"].mean()), "ssim": float(table[f"{name}_ssim"].mean())}
    if {"finetuned", "pretrained"} <= set(cfg.methods):
        gain: dict[str, float] = {}
        for metric in ("psnr", "ssim"):
            diff = paired_difference(table[f"finetuned_{metric}"], table[f"pretrained_{metric}"],
                                     cfg.bootstrap_samples, cfg.bootstrap_seed)
            gain.update({f"{metric}": diff["mean"], f"{metric}_ci95_low": diff["ci95_low"],
                         f"{metric}_ci95_high": diff["ci95_high"]})
        gain["share_improved"] = float((table.finetuned_psnr > table.pretrained_psnr).mean())
        summary["finetuned_minus_pretrained"] = gain
    return summary


@user_facing
def main() -> None:
    params = with_resolved_arch(load_params(), PRETRAINED)
    cfg = params.evaluate
    rows = split_triplets("test", cfg.max_triplets)
    if rows.empty:
        raise UserError("data/triplets has no test triplet; raise extract.test_fraction")
    check_timesteps(params.train.arch, rows["timestep"], "the test split of data/triplets")
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    methods = {name: METHODS[name](params, device) for name in cfg.methods}
    table = score_all(rows, methods, cfg.round_prediction)
    summary = summarise(table, params)
    with atomic_path(EVALUATE_RESULTS / "per_triplet.csv") as tmp:
        table.to_csv(tmp, index=False, float_format="%.6f")
    write_text(EVALUATE_RESULTS / "metrics.json", json.dumps(summary, indent=2) + "\n")
    line = ", ".join(f"{m} {summary[m]['psnr']:.3f} dB / {summary[m]['ssim']:.4f}" for m in cfg.methods)
    log.info("%d test triplets: %s", len(table), line)
    if "finetuned_minus_pretrained" in summary:
        g = summary["finetuned_minus_pretrained"]
        log.info("fine-tuned minus pretrained: %+.3f dB (95%% CI %+.3f .. %+.3f)",
                 g["psnr"], g["psnr_ci95_low"], g["psnr_ci95_high"])


if __name__ == "__main__":
    main()
