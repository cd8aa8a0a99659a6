"""Validation during training: the val triplets, scored on whole frames by the weights being trained, at the model
scale ``train.val_scale`` (PSNR and SSIM on every val triplet; VMAF, when ``train.val_vmaf_triplets`` asks for it,
on the first of them as a clip)."""

from __future__ import annotations

import pandas as pd
import torch
from accelerate import Accelerator
from accelerate.utils import broadcast_object_list, gather_object

from pipeline.core.params import Train
from pipeline.footage.triplets import split_triplets
from pipeline.models import check_timesteps
from pipeline.scoring.batches import predicted_frames, score_rows
from pipeline.scoring.ffmpeg import clip_vmaf


def val_rows(cfg: Train) -> pd.DataFrame:
    """The val triplets every validation scores (read and checked once, before training starts)."""
    rows = split_triplets("val", cfg.val_max_triplets)
    check_timesteps(cfg.arch, rows["timestep"], "the val split of data/triplets")
    return rows


def validate(net: torch.nn.Module, rows: pd.DataFrame, batch_size: int, accelerator: Accelerator,
             vmaf_triplets: int = 0, scale: str | float = "auto") -> tuple[dict[str, float], list[float]]:
    """Mean PSNR/SSIM of ``net`` (unwrapped) on ``rows`` (whole frames, the model at flow ``scale``, as
    :func:`pipeline.scoring.batches.model_scale` reads it), shared out over processes, and the PSNR of each
    triplet (in the same order at every validation); with ``vmaf_triplets``, also ``val/vmaf`` (:func:`val_vmaf`
    of the first ``vmaf_triplets`` rows)."""
    if rows.empty:
        return {}, []
    net.eval()
    mine = rows.iloc[accelerator.process_index::accelerator.num_processes]
    scores = gather_object(score_rows(net, mine, accelerator.device, round_prediction=True, batch_size=batch_size,
                                      scale=scale))
    means = {"val/psnr": sum(s[0] for s in scores) / len(scores), "val/ssim": sum(s[1] for s in scores) / len(scores)}
    if vmaf_triplets:
        means["val/vmaf"] = val_vmaf(net, rows.head(vmaf_triplets), batch_size, accelerator, scale)
    net.train()
    return means, [s[0] for s in scores]


def val_vmaf(net: torch.nn.Module, rows: pd.DataFrame, batch_size: int, accelerator: Accelerator,
             scale: str | float = "auto") -> float:
    """VMAF of ``net``'s predicted frames of ``rows`` against their ground truth, played in manifest order as a
    short clip (consecutive frames where the rows are consecutive triplets), pooled over frames. The main process
    scores it and every process gets the number, so all of them choose the same weights to keep."""
    score: list[float | None] = [None]
    if accelerator.is_main_process:
        score[0] = clip_vmaf(predicted_frames(net, rows, accelerator.device, batch_size, scale))
    broadcast_object_list(score)
    return score[0]
