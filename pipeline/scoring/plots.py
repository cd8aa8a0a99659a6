"""Pictures of an evaluation: a PNG summary for people who do not use ``dvc plots``, and image grids of the
triplets where fine-tuning helped and hurt most (I0, ground truth, both predictions and their error maps)."""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from pipeline.core.atomic import atomic_dir, atomic_path
from pipeline.core.params import Evaluate
from pipeline.core.plotting import DPI, png_figure, png_grid
from pipeline.footage.triplets import read_triplet
from pipeline.scoring.batches import Predictor
from pipeline.scoring.metrics import prediction_to_255

PANEL_WIDTH = 480  # pixels per panel in the example grids: three across fit a laptop screen; keeps PNGs ~1 MB
ERROR_MAP_MAX = 16  # |error| (mean over channels, 0-255 scale) shown at full brightness, the same in every grid
# so that grids of two experiments can be compared by eye
ERROR_COLORMAP = "magma"


def write_summary_png(buckets: pd.DataFrame, summary: dict, methods: tuple[str, ...], path: Path) -> None:
    """Mean PSNR by motion bucket, one line per method (its overall mean in the legend)."""
    gain = summary["finetuned_minus_pretrained"]
    with atomic_path(path) as tmp, png_figure(tmp) as ax:
        for name in methods:
            ax.plot(buckets["motion"], buckets[f"{name}_psnr"], marker="o",
                    label=f"{name} ({summary[name]['psnr']:.2f} dB)")
        ax.set_xlabel("motion: mean |I1 - I0| of thumbnails, median of each bucket")
        ax.set_ylabel("mean PSNR (dB)")
        ax.set_title(f"{summary['triplets']} test triplets: fine-tuned minus pretrained {gain['psnr']:+.3f} dB "
                     f"(95% CI {gain['psnr_ci95_low']:+.3f} .. {gain['psnr_ci95_high']:+.3f})", fontsize=10)


def pick_examples(table: pd.DataFrame, count: int) -> list[tuple[str, int]]:
    """(file stem, row index) of the ``count`` most improved triplets by PSNR, then the ``count`` most degraded;
    with fewer than ``2 count`` triplets each triplet appears once."""
    gain = table.finetuned_psnr - table.pretrained_psnr
    order = list(gain.sort_values(ascending=False, kind="stable").index)
    improved = order[:min(count, math.ceil(len(order) / 2))]
    degraded = order[len(improved):][::-1][:count]
    return ([(f"improved_{i}", idx) for i, idx in enumerate(improved, 1)]
            + [(f"degraded_{i}", idx) for i, idx in enumerate(degraded, 1)])


def panel(image: np.ndarray) -> np.ndarray:
    """``image`` shrunk (area average) to at most PANEL_WIDTH pixels wide."""
    height, width = image.shape[:2]
    if width <= PANEL_WIDTH:
        return image
    size = (PANEL_WIDTH, max(1, round(height * PANEL_WIDTH / width)))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


def abs_error(pred: np.ndarray, truth: np.ndarray) -> np.ndarray:
    return np.abs(pred.astype(np.float32) - truth.astype(np.float32)).mean(axis=2)


def draw_grid(path: Path, title: str, panels: list[tuple[str, np.ndarray]]) -> None:
    """Six labelled panels in two rows of three; 2-D panels are error maps."""
    height, width = panels[0][1].shape[:2]
    with png_grid(path, 2, 3, (3 * width / DPI, 2 * height / DPI + 1.0)) as (fig, axes):
        for ax, (label, image) in zip(axes.flat, panels, strict=True):
            if image.ndim == 2:
                ax.imshow(image, cmap=ERROR_COLORMAP, vmin=0, vmax=ERROR_MAP_MAX)
            else:
                ax.imshow(image)
            ax.set_title(label, fontsize=9)
            ax.set_axis_off()
        fig.suptitle(title, fontsize=10)


def example_panels(row: pd.Series, scores: pd.Series, predictors: dict[str, Predictor],
                   round_prediction: bool) -> list[tuple[str, np.ndarray]]:
    img0, truth, img1 = read_triplet(row)
    preds = {name: prediction_to_255(predictors[name](img0[None], img1[None], float(row["timestep"]))[0],
                                     round_prediction) for name in ("pretrained", "finetuned")}
    shown = {name: np.clip(np.round(p), 0, 255).astype(np.uint8) for name, p in preds.items()}
    return [(f"I0 (frame {row['frame0']})", panel(img0)),
            (f"pretrained: {scores['pretrained_psnr']:.2f} dB", panel(shown["pretrained"])),
            (f"fine-tuned: {scores['finetuned_psnr']:.2f} dB", panel(shown["finetuned"])),
            (f"ground truth (frame {row['frame_t']}, t = {row['timestep']:g})", panel(truth)),
            (f"|pretrained - truth| (0 to {ERROR_MAP_MAX}+ of 255)", panel(abs_error(preds["pretrained"], truth))),
            (f"|fine-tuned - truth| (0 to {ERROR_MAP_MAX}+ of 255)", panel(abs_error(preds["finetuned"], truth)))]


def write_examples(table: pd.DataFrame, rows: pd.DataFrame, predictors: dict[str, Predictor], cfg: Evaluate,
                   out: Path) -> None:
    """``out/improved_<k>.png`` and ``out/degraded_<k>.png`` (the folder is replaced as a whole)."""
    with atomic_dir(out) as tmp:
        for stem, index in pick_examples(table, cfg.examples):
            scores = table.loc[index]
            gain = scores["finetuned_psnr"] - scores["pretrained_psnr"]
            title = (f"{stem.replace('_', ' #')}: {scores['clip']}, frames {scores['frame0']}-{scores['frame1']}; "
                     f"fine-tuned minus pretrained {gain:+.2f} dB")
            draw_grid(tmp / f"{stem}.png", title, example_panels(rows.loc[index], scores, predictors,
                                                                  cfg.round_prediction))
