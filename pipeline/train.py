"""Stage ``train``: fine-tune the pretrained flow network with Hugging Face Accelerate.

Reads: ``data/augmented/plan.csv`` (the training views), ``data/triplets/`` (the frames the views are made from, and
the val split), ``models/pretrained/flownet.pkl``; params ``lr``, ``base``, ``train``.
Writes: ``models/finetuned/flownet.pkl`` (official key layout) and ``results/train/`` (dvclive: loss, learning
rate per group, validation PSNR/SSIM, by optimizer step; the validation at step 0 scores the pretrained weights,
and ``metrics.json`` ends with ``val.gain``, the kept weights' val PSNR minus the pretrained one, with its 95%
bootstrap interval).

Run it as dvc.yaml does, ``python -m pipeline.train [accelerate launch flags]``: it checks params.yaml and the
checkpoint, then starts itself under ``accelerate launch`` (``accelerate launch -m pipeline.train`` works too).
Hardware (CPU, GPUs, machines) comes from those flags or ``accelerate config``, never from params.yaml; mixed
precision comes from ``train.mixed_precision`` (it changes the weights, so DVC tracks it), unless a
``--mixed_precision`` flag says otherwise. Interrupted runs resume from ``state/train/`` when the stage is run
again with the same params and data.
"""

from __future__ import annotations

import logging
import os
import sys

from pipeline.core.atomic import output_set
from pipeline.core.params import load_params
from pipeline.core.paths import FINETUNED, PRETRAINED, TRAIN_LIVE, TRAIN_RESULTS
from pipeline.core.runner import user_facing
from pipeline.core.system import pin_cpu_isa
from pipeline.models import load_checkpoint, read_checkpoint, save_checkpoint, with_resolved_arch
from pipeline.training.curves import publish_curves
from pipeline.training.fit import fit
from pipeline.training.groups import check_group_names
from pipeline.training.launch import launch, launched
from pipeline.training.loop import USER_THREADS, make_accelerator, use_threads

log = logging.getLogger("pipeline.train")

# the params this stage reads: its `params:` in dvc.yaml (their cross-field checks run here)
PARAMS = ("lr", "base", "train")


@user_facing(resumes=True)
def main() -> None:
    params = with_resolved_arch(load_params(sections=PARAMS), PRETRAINED)
    check_group_names(params.train)
    pin_cpu_isa(params.train.cpu_isa)  # before any tensor work, here and in the processes launched below
    if not launched():
        load_checkpoint(PRETRAINED, params.train.arch)  # a checkpoint that does not fit stops here, in one line
        if "OMP_NUM_THREADS" in os.environ:  # the launcher replaces it; the worker honours the user's value
            os.environ[USER_THREADS] = os.environ["OMP_NUM_THREADS"]
        launch("pipeline.train", sys.argv[1:], params.train.mixed_precision)
        return
    accelerator = make_accelerator(params.train, log_with="dvclive")
    threads = use_threads(accelerator, params.train.threads)
    if accelerator.is_main_process:
        log.info("training %s with %d process(es) (%s) on %s, %d CPU thread(s) each, mixed precision %s",
                 params.train.arch, accelerator.num_processes, accelerator.distributed_type, accelerator.device.type,
                 threads, accelerator.mixed_precision)
    fitted = fit(params, accelerator)
    if accelerator.is_main_process:
        net, step = fitted.kept(params.train.keep)
        if step is not None:
            vmaf = "" if fitted.best.best_vmaf is None else f", VMAF {fitted.best.best_vmaf:.3f}"
            log.info("keeping the weights of step %d (val PSNR %.3f dB%s)", step, fitted.best.best_psnr, vmaf)
        with output_set():  # the weights and their curves are replaced together
            save_checkpoint(net, FINETUNED, extras=read_checkpoint(PRETRAINED).extras)
            publish_curves(TRAIN_LIVE, TRAIN_RESULTS)
        log.info("wrote %s and %s", FINETUNED, TRAIN_RESULTS)
    fitted.state.clear()


if __name__ == "__main__":
    main()
