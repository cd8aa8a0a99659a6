"""The triplets ``extract`` stored: rows of ``data/triplets/manifest.csv`` by split, and their frames."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.core.errors import UserError
from pipeline.core.paths import KEPT, TRIPLETS_DIR
from pipeline.footage.video import read_image


def split_triplets(split: str, limit: int = 0, root: Path = TRIPLETS_DIR) -> pd.DataFrame:
    """Kept triplets of ``split``; ``limit`` > 0 keeps that many, evenly spread over the split."""
    path = root / "manifest.csv"
    if not path.is_file():
        raise UserError(f"{path}: missing; run `dvc repro extract` first")
    manifest = pd.read_csv(path)
    rows = manifest[(manifest.status == KEPT) & (manifest.split == split)].reset_index(drop=True)
    if limit and len(rows) > limit:
        rows = rows.iloc[np.linspace(0, len(rows) - 1, limit).round().astype(int)].reset_index(drop=True)
    return rows


def read_triplet(row: pd.Series, root: Path = TRIPLETS_DIR) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(I0, It, I1) of a manifest row as HxWx3 uint8 RGB."""
    return read_image(root / row["path0"]), read_image(root / row["path_t"]), read_image(root / row["path1"])


def split_spans(split: str, gap: int, root: Path = TRIPLETS_DIR) -> list[tuple[str, int, int]]:
    """(clip, first frame, last frame) of every run of consecutive frames that the ``split``'s candidate
    triplets of ``gap`` cover, whatever their status (a static or cut window still lies inside the segment), in
    manifest order: one run per clip under ``split_by: time``, one per block under ``blocks``."""
    manifest = pd.read_csv(root / "manifest.csv")
    rows = manifest[(manifest.split == split) & (manifest.gap == gap)]
    spans: list[tuple[str, int, int]] = []
    for clip, part in rows.groupby("clip", sort=False):
        first = last = None
        for start, stop in sorted(zip(part.frame0, part.frame1, strict=True)):
            if last is not None and start <= last:
                last = max(last, stop)
                continue
            if last is not None:
                spans.append((clip, first, last))
            first, last = start, stop
        spans.append((clip, first, last))
    return spans
