"""Reading stage outputs for training and evaluation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset

from pipeline.errors import UserError
from pipeline.sampling import KEPT
from pipeline.paths import AUGMENTED_DIR, SAMPLES_FILE, TRIPLETS_DIR
from pipeline.video import read_image


class TrainSamples(Dataset):
    """The stored augmented crops: item ``i`` is (I0, It, I1) as float CHW tensors in [0, 1] and the
    target's timestep t (a 0-d float tensor)."""

    def __init__(self, root: Path = AUGMENTED_DIR) -> None:
        path = root / SAMPLES_FILE
        if not path.is_file():
            raise UserError(f"{path}: missing; run `dvc repro augment` first")
        self.samples = np.load(path, mmap_mode="r")
        self.timesteps = pd.read_csv(root / "manifest.csv")["timestep"].to_numpy(np.float32)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        frames = torch.from_numpy(np.array(self.samples[index])).permute(0, 3, 1, 2).float().div_(255.0)
        return frames[0], frames[1], frames[2], torch.tensor(self.timesteps[index])


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


def to_batch(frames: np.ndarray, device: torch.device | str = "cpu") -> torch.Tensor:
    """(B,H,W,3) uint8 frames to a (B,3,H,W) float tensor in [0, 1] on ``device``."""
    return torch.from_numpy(frames).to(device).permute(0, 3, 1, 2).float().div_(255.0)


def from_batch(tensor: torch.Tensor) -> np.ndarray:
    """(B,3,H,W) float tensor to (B,H,W,3) float32 frames."""
    return tensor.permute(0, 2, 3, 1).float().cpu().numpy()
