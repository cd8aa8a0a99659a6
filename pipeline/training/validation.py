"""Validation during training: the val triplets, scored at full resolution by the weights being trained."""

from __future__ import annotations

import pandas as pd
import torch
from accelerate import Accelerator
from accelerate.utils import gather_object

from pipeline.core.params import Train
from pipeline.footage.triplets import split_triplets
from pipeline.models import check_timesteps
from pipeline.scoring.batches import score_rows


def val_rows(cfg: Train) -> pd.DataFrame:
    """The val triplets every validation scores (read and checked once, before training starts)."""
    rows = split_triplets("val", cfg.val_max_triplets)
    check_timesteps(cfg.arch, rows["timestep"], "the val split of data/triplets")
    return rows


def validate(net: torch.nn.Module, rows: pd.DataFrame, batch_size: int,
             accelerator: Accelerator) -> tuple[dict[str, float], list[float]]:
    """Mean PSNR/SSIM of ``net`` (unwrapped) on ``rows`` (full frames), shared out over processes, and the PSNR of
    each triplet (in the same order at every validation)."""
    if rows.empty:
        return {}, []
    net.eval()
    mine = rows.iloc[accelerator.process_index::accelerator.num_processes]
    scores = gather_object(score_rows(net, mine, accelerator.device, round_prediction=True, batch_size=batch_size))
    net.train()
    means = {"val/psnr": sum(s[0] for s in scores) / len(scores), "val/ssim": sum(s[1] for s in scores) / len(scores)}
    return means, [s[0] for s in scores]
