"""Mixed precision for inference: ``evaluate.mixed_precision`` and ``interpolate --precision`` (``no``, ``bf16``,
``fp16``) as torch's autocast around the network's call. Training gets the same from Accelerate
(``train.mixed_precision``).

Under autocast the convolutions run in the lower precision; the warps (:mod:`pipeline.models.warp`) compute in
float32, every prediction is handed back as float32, and the weights are never converted."""

from __future__ import annotations

import contextlib
import warnings

import torch

from pipeline.core.errors import UserError

FLOAT32 = "no"  # the setting that leaves everything in float32
DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}  # the other settings of pipeline.core.params.PRECISIONS


def autocast(precision: str, device: torch.device, setting: str) -> contextlib.AbstractContextManager:
    """A context in which the networks run at ``precision`` on ``device`` (``no``: float32, nothing changes); one
    line naming ``setting`` (the param or option) where torch cannot autocast to it on that device."""
    if precision == FLOAT32:
        return contextlib.nullcontext()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # where a device lacks the type, torch warns and stays in float32
        try:
            return torch.autocast(device.type, dtype=DTYPES[precision])
        except (RuntimeError, UserWarning) as err:
            reason = str(err).strip().splitlines()[0]
            raise UserError(f"{setting} = {precision}: torch cannot run it on this {device.type} ({reason}); "
                            "use no") from None
