"""Apply a checkpoint to a video: ``python -m pipeline.interpolate INPUT OUTPUT --multi 2``.

Reads a video, puts ``multi - 1`` predicted frames between every pair of neighbours and writes a video at
``multi`` times the frame rate through FFmpeg (or, for an OUTPUT without a suffix, a folder of numbered
lossless PNGs). The rate stays exact (30000/1001 in, 60000/1001 out at ``--multi 2``), every frame's time is
derived from the input's timestamps (variable frame rate footage keeps its timing) and the input's audio is
copied unchanged. Where two neighbours belong to different shots (extract's cut score above
``extract.cut_threshold``) nothing is interpolated: the in-between frames repeat the nearer frame.
The default video (``--quality delivery``) is 8-bit 4:2:0 H.264 High with its index first: browsers, phones
and QuickTime play it. ``--quality master`` is lossless (10-bit 4:4:4 H.264 at qp 0, or FFV1 in .mkv) for
editors and FFmpeg-based tools; browsers, phones and QuickTime do not play it. Colour tags are copied from the
input (BT.709 limited range where it states none).
The network is a ``flownet.pkl`` (the fine-tuned one by default; its architecture is recognised unless
``--arch`` names it) or, with ``--onnx``, a file written by ``python -m pipeline.export``; ``--precision bf16`` or
``fp16`` runs it under autocast (float32 warps and output).
The output is written under a temporary name and renamed when complete; the input is never overwritten, and a
folder is replaced only when it holds nothing but an earlier run's numbered PNGs (:mod:`pipeline.footage.outputs`).
"""

from __future__ import annotations

import argparse
import logging
from fractions import Fraction
from pathlib import Path

import torch

from pipeline.core.atomic import atomic_dir
from pipeline.core.errors import UserError
from pipeline.core.params import PRECISIONS, load_params
from pipeline.core.paths import FINETUNED, PARAMS_FILE
from pipeline.core.runner import user_facing
from pipeline.footage.encoder import (
    CODECS,
    CONTAINERS,
    DEFAULT_CODEC,
    DELIVERY,
    MASTER,
    QUALITIES,
    Codec,
    check_codec,
)
from pipeline.footage.interpolation import Interpolator, check_frames, interpolate_video, write_video
from pipeline.footage.outputs import PngSink, check_output
from pipeline.footage.video import probe
from pipeline.models import ARCHITECTURES, AUTO, load_checkpoint
from pipeline.models.onnx_model import OnnxFlowNet, load_onnx
from pipeline.models.precision import FLOAT32, autocast

log = logging.getLogger("pipeline.interpolate")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m pipeline.interpolate", description=__doc__.splitlines()[0])
    parser.add_argument("input", type=Path, help="video to interpolate")
    parser.add_argument("output", type=Path, help=f"video to write ({', '.join(CONTAINERS)}), or a folder for PNGs: "
                        "a new one, or an earlier PNG output of interpolate (a folder holding the input or any "
                        "other file is refused)")
    parser.add_argument("--checkpoint", default=str(FINETUNED), help=f"flownet.pkl (default {FINETUNED})")
    parser.add_argument("--arch", default=AUTO, choices=[AUTO, *ARCHITECTURES], help="default: recognised")
    parser.add_argument("--onnx", help="run this file from `python -m pipeline.export` with onnxruntime "
                        "instead of a checkpoint")
    parser.add_argument("--multi", type=int, default=2, help="frame-rate multiplier, 2 or more (default 2)")
    parser.add_argument("--scale", type=float, default=1.0, choices=[0.25, 0.5, 1.0],
                        help="flow resolution; 0.5 is RIFE's advice for 4K (default 1.0)")
    parser.add_argument("--precision", default=FLOAT32, choices=PRECISIONS,
                        help="the network under autocast to bf16 or fp16, for speed and memory on a GPU (default "
                        "no: float32)")
    parser.add_argument("--quality", choices=QUALITIES, help=f"{DELIVERY} (default): 8-bit 4:2:0 H.264 High, "
                        "index first; plays in browsers, phones and QuickTime. "
                        f"{MASTER}: lossless (10-bit 4:4:4 H.264, or FFV1 in .mkv), for editors and FFmpeg-based "
                        "tools; browsers, phones and QuickTime do not play it")
    parser.add_argument("--codec", default=DEFAULT_CODEC, help=f"{', '.join(CODECS)} (default {DEFAULT_CODEC}; "
                        "ffv1 is master only, av1 delivery only)")
    parser.add_argument("--crf", type=int, help=f"{DELIVERY} quality, lower is better (default per codec, see "
                        "the docs)")
    parser.add_argument("--cut-threshold", type=float,
                        help="scene-cut threshold (default: extract.cut_threshold of params.yaml)")
    parser.add_argument("--overwrite", action="store_true", help="replace OUTPUT if it exists: a video file, or a "
                        "folder of nothing but numbered PNG frames; never the input or a folder holding other files")
    return parser.parse_args(argv)


def check_args(args: argparse.Namespace) -> Codec | None:
    """Everything about the paths and options that can be checked before any work; the codec for a video."""
    check_output(args.input, args.output, args.overwrite)
    codec = check_codec(args.codec, args.quality, args.crf, args.output) if args.output.suffix else None
    if args.multi < 2:
        raise UserError(f"--multi {args.multi}: the frame rate multiplier must be 2 or more")
    if args.cut_threshold is not None and not 0 < args.cut_threshold <= 1:
        raise UserError(f"--cut-threshold {args.cut_threshold}: must be in (0, 1]")
    if args.onnx is not None and args.precision != FLOAT32:
        raise UserError(f"--precision {args.precision}: the exported ONNX graph runs in float32 only")
    return codec


def cut_threshold(args: argparse.Namespace) -> float:
    """``--cut-threshold``, else extract's ``cut_threshold`` from params.yaml."""
    if args.cut_threshold is not None:
        return args.cut_threshold
    if not PARAMS_FILE.is_file():
        raise UserError(f"{PARAMS_FILE}: not found; run from the project root or pass --cut-threshold")
    return load_params(PARAMS_FILE, sections=("extract.cut_threshold",)).extract.cut_threshold


def load_model(args: argparse.Namespace, device: torch.device) -> Interpolator:
    if args.onnx is not None:
        if args.scale != 1.0:
            raise UserError(f"--scale {args.scale}: the exported ONNX graph runs at flow scale 1 only")
        model: Interpolator = OnnxFlowNet(load_onnx(args.onnx), args.onnx)
        source = args.onnx
    else:
        model = load_checkpoint(args.checkpoint, args.arch).for_inference(device)
        source = args.checkpoint
    if not model.supports_timestep and args.multi & (args.multi - 1):
        raise UserError(f"--multi {args.multi}: {source} is RIFE {model.arch}, which predicts middle "
                        "frames only; use a power of two (2, 4, 8)")
    log.info("%s: RIFE %s on %s, %dx frames, flow scale %g, mixed precision %s", source, model.arch,
             "onnxruntime" if args.onnx else device.type, args.multi, args.scale, args.precision)
    return model


@user_facing
def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    codec = check_args(args)
    info = probe(args.input)
    check_frames(args.input, info.frames)
    threshold = cut_threshold(args)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model = load_model(args, device)
    with autocast(args.precision, device, "--precision"):
        if codec is not None:
            count, cuts = write_video(args, codec, model, info, threshold, device)
        else:
            with atomic_dir(args.output) as tmp:
                sink = PngSink(tmp)
                cuts = interpolate_video(model, args.input, sink, args.multi, args.scale, threshold, device,
                                         info.frames)
            count = sink.count
    log.info("%d scene cut(s) met (cut threshold %g): the in-between frames there repeat the nearer frame",
             cuts, threshold)
    log.info("wrote %s: %d frames at %s fps (%.3f)", args.output, count, Fraction(info.rate * args.multi),
             float(info.rate * args.multi))


if __name__ == "__main__":
    main()
