"""Choosing the weights to keep: the best on validation (by PSNR, by VMAF, or by PSNR within a VMAF tolerance),
early stopping, a moving average, and the validation gain of the kept weights over the pretrained ones.

These objects have ``state_dict`` / ``load_state_dict`` so Accelerate saves them with every resumable
checkpoint: a resumed run remembers its best score, its patience count and its averaged weights.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from pipeline.core.params import Train
from pipeline.scoring.metrics import MAX_PSNR, paired_difference

GAIN_BOOTSTRAP = (2000, 0)  # resamples and seed of the val gain's 95% interval


class BestOnValidation:
    """The best validation so far by ``keep_by`` (:data:`~pipeline.core.params.KEEP_BY`): its scores, its step and
    (when ``keep_weights``) a CPU copy of its weights; and how many validations in a row have not beaten it by
    ``min_delta`` (dB of PSNR, or VMAF points for ``vmaf``), for early stopping.

    ``psnr_within_vmaf`` takes the best PSNR among validations whose VMAF is at most ``vmaf_tolerance`` below the
    first validation's (step 0: the pretrained weights, which are always eligible)."""

    def __init__(self, patience: int, min_delta: float, keep_weights: bool, keep_by: str = "psnr",
                 vmaf_tolerance: float = 0.0) -> None:
        self.patience, self.min_delta, self.keep_weights = patience, min_delta, keep_weights
        self.keep_by, self.vmaf_tolerance = keep_by, vmaf_tolerance
        self.best_psnr, self.best_step, self.bad = -math.inf, -1, 0
        self.best_vmaf: float | None = None  # the best validation's VMAF (None: not measured)
        self.reference_vmaf: float | None = None
        self.weights: dict[str, torch.Tensor] | None = None

    def update(self, psnr: float, step: int, model: nn.Module, vmaf: float | None = None) -> bool:
        """Take the scores of ``model`` at ``step``; True if it is the new best."""
        if vmaf is not None and self.reference_vmaf is None:
            self.reference_vmaf = vmaf
        if self.improves(psnr, vmaf):
            self.best_psnr, self.best_vmaf, self.best_step, self.bad = psnr, vmaf, step, 0
            if self.keep_weights:
                self.weights = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
            return True
        self.bad += 1
        return False

    def improves(self, psnr: float, vmaf: float | None) -> bool:
        """Whether scores ``psnr`` and ``vmaf`` beat the best so far by ``keep_by``."""
        if self.keep_by == "psnr":
            return psnr > self.best_psnr + self.min_delta
        if vmaf is None:
            raise ValueError(f"keep_by {self.keep_by} needs the VMAF of every validation")
        if self.keep_by == "vmaf":
            return self.best_vmaf is None or vmaf > self.best_vmaf + self.min_delta
        return vmaf >= self.reference_vmaf - self.vmaf_tolerance and psnr > self.best_psnr + self.min_delta

    def should_stop(self) -> bool:
        return self.patience > 0 and self.bad >= self.patience

    def state_dict(self) -> dict:
        return {"best_psnr": self.best_psnr, "best_vmaf": self.best_vmaf, "reference_vmaf": self.reference_vmaf,
                "best_step": self.best_step, "bad": self.bad, "weights": self.weights}

    def load_state_dict(self, state: dict) -> None:
        self.best_psnr, self.best_step, self.bad = state["best_psnr"], state["best_step"], state["bad"]
        self.best_vmaf, self.reference_vmaf = state.get("best_vmaf"), state.get("reference_vmaf")
        self.weights = state["weights"]


def moving_average(model: nn.Module, cfg: Train) -> AveragedModel | None:
    """torch's exponential moving average of ``model``'s weights, or None when ``train.ema_decay`` is 0."""
    if not cfg.ema_decay:
        return None
    return AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(cfg.ema_decay), use_buffers=False)


class ValidationGain:
    """Per-triplet val PSNRs of the pretrained weights (the validation at step 0) and of the weights the run
    keeps (the last validation, or the best with ``keep_best``), for the val gain with its 95% interval."""

    def __init__(self, keep_best: bool) -> None:
        self.keep_best = keep_best
        self.pretrained: list[float] | None = None
        self.kept: list[float] | None = None
        self.kept_step = -1

    def update(self, psnrs: list[float], step: int, is_best: bool) -> None:
        if step == 0:
            self.pretrained = list(psnrs)
        if not self.keep_best or is_best:
            self.kept, self.kept_step = list(psnrs), step

    def summary(self) -> dict[str, float]:
        """``gain`` (kept minus pretrained mean val PSNR, dB), its 95% interval (``low``, ``high``), the kept step
        (``gain_step``) and the number of val triplets; {} without both."""
        if not self.pretrained or not self.kept:
            return {}
        kept, pretrained = (np.minimum(np.asarray(v, dtype=np.float64), MAX_PSNR) for v in (self.kept, self.pretrained))
        diff = paired_difference(kept, pretrained, *GAIN_BOOTSTRAP)
        return {"gain": diff["mean"], "low": diff["ci95_low"], "high": diff["ci95_high"],
                "gain_step": self.kept_step, "triplets": len(kept)}

    def state_dict(self) -> dict:
        return {"pretrained": self.pretrained, "kept": self.kept, "kept_step": self.kept_step}

    def load_state_dict(self, state: dict) -> None:
        self.pretrained, self.kept, self.kept_step = state["pretrained"], state["kept"], state["kept_step"]
