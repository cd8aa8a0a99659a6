"""Export a checkpoint for the tools people run: ``python -m pipeline.export [--checkpoint PKL] [--out DIR]``.

Writes, into ``--out`` (default ``models/export``):

- ``rife_v<version>.onnx``: the network as an ONNX graph in vs-mlrt's ``rife_v2`` layout (see
  :mod:`pipeline.models.onnx_model`); drop it into a ``rife_v2`` folder of vs-mlrt's models path;
- ``flownet.safetensors``: the network's tensors under the official key names (no ``module.`` prefix), for
  ComfyUI-style loaders, with the architecture in the metadata;
- ``flownet.pkl``: the official layout (what train writes), with any training-only tensors of the source file.

A command rather than a DVC stage: an export is made for use outside the pipeline, when wanted, and an ONNX
trace takes longer than a repro should spend on something nothing downstream reads.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import torch

from pipeline.core.atomic import atomic_path, check_creatable
from pipeline.core.errors import UserError
from pipeline.core.paths import EXPORT_DIR, FINETUNED
from pipeline.core.runner import user_facing
from pipeline.models import ARCHITECTURES, AUTO, FlowNet, create_model, identify, read_checkpoint, write_state_dict
from pipeline.models.onnx_model import OPSET, export_onnx

log = logging.getLogger("pipeline.export")

FORMATS = ("onnx", "safetensors", "pkl")
OPSETS = (16, 17, 18)  # GridSample needs 16


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m pipeline.export", description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default=str(FINETUNED), help=f"flownet.pkl (default {FINETUNED})")
    parser.add_argument("--arch", default=AUTO, choices=[AUTO, *ARCHITECTURES], help="default: recognised")
    parser.add_argument("--out", type=Path, default=EXPORT_DIR, help=f"folder to write into (default {EXPORT_DIR})")
    parser.add_argument("--formats", default=",".join(FORMATS), help=f"comma-separated, of {', '.join(FORMATS)}")
    parser.add_argument("--opset", type=int, default=OPSET, choices=OPSETS, help=f"ONNX opset (default {OPSET})")
    return parser.parse_args(argv)


def vsmlrt_name(arch: str) -> str:
    """The file name vs-mlrt looks for: ``rife_v4.22_lite.onnx`` for 4.22.lite; HDv3 has none of its own."""
    version = arch.replace(".lite", "_lite")
    return f"rife_v{version}.onnx" if arch != "hdv3" else "rife_hdv3.onnx"


def safetensors_name() -> str:
    return "flownet.safetensors"


def write_safetensors(model: FlowNet, path: Path) -> None:
    """The network's tensors under the official names (no ``module.`` prefix), float32, atomically."""
    from safetensors.torch import save_file

    state = {k: v.detach().to("cpu", torch.float32).contiguous() for k, v in model.state_dict().items()}
    with atomic_path(path) as tmp:
        save_file(state, str(tmp), metadata={"format": "pt", "rife_arch": model.arch})


def read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(path))


def check_formats(text: str) -> list[str]:
    formats = [f.strip() for f in text.split(",") if f.strip()]
    unknown = [f for f in formats if f not in FORMATS]
    if unknown or not formats:
        raise UserError(f"--formats {text}: use one or more of {', '.join(FORMATS)}")
    return formats


def check_out(out: Path) -> None:
    check_creatable(out, f"--out {out}")


@user_facing
def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    formats = check_formats(args.formats)
    check_out(args.out)
    checkpoint = read_checkpoint(args.checkpoint)
    arch = identify(checkpoint, args.checkpoint) if args.arch == AUTO else args.arch
    model = create_model(arch)
    try:
        model.load_state_dict({k: v.float() for k, v in checkpoint.state.items()}, strict=True)
    except RuntimeError as err:
        raise UserError(f"checkpoint {args.checkpoint} does not fit architecture {arch!r} "
                        f"({str(err).splitlines()[0]})") from None
    model.eval()
    args.out.mkdir(parents=True, exist_ok=True)
    if "onnx" in formats:
        path = args.out / vsmlrt_name(arch)
        export_onnx(model, path, args.opset)
        log.info("wrote %s (ONNX opset %d, rife_v2 layout, %d input planes)", path, args.opset,
                 7 if model.supports_timestep else 6)
    if "safetensors" in formats:
        path = args.out / safetensors_name()
        write_safetensors(model, path)
        log.info("wrote %s (official key names)", path)
    if "pkl" in formats:
        path = args.out / "flownet.pkl"
        write_state_dict(model.state_dict(), path, checkpoint.extras)
        log.info("wrote %s (official flownet.pkl layout)", path)
    log.info("RIFE %s from %s exported to %s", arch, args.checkpoint, args.out)


if __name__ == "__main__":
    main()
