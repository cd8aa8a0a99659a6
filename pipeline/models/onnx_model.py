"""RIFE as an ONNX graph in vs-mlrt's ``rife_v2`` layout, and that graph run by onnxruntime.

The layout (what vs-mlrt's ``vsmlrt.RIFE(..., _implementation=2)`` feeds a ``models/rife_v2/*.onnx``):
one float32 input ``input`` of shape (1, 7, H, W): I0 as RGB planes, I1 as RGB planes, then a plane filled
with the timestep, all in [0, 1]; one float32 output ``output`` of shape (1, 3, H, W), the RGB frame at the
timestep. H and W are dynamic and need not be multiples of anything: the graph pads the frames (zeros, right
and bottom, as our PyTorch inference does; the timestep plane by repeating its edge) to the architecture's
multiple and crops the result back. HDv3 predicts only the middle frame, so its graph takes (1, 6, H, W),
the two frames without the timestep plane. Flow runs at scale 1.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from pipeline.core.atomic import atomic_path
from pipeline.core.errors import UserError
from pipeline.core.source_paths import local_path
from pipeline.models.base import MIDDLE, FlowNet, in_between

log = logging.getLogger("pipeline.models.onnx_model")

OPSET = 17  # GridSample needs 16; vs-mlrt's own RIFE files are within 16 to 18
INPUT, OUTPUT = "input", "output"
PRODUCER = "rife-finetune-pipeline"  # metadata that marks a graph as one of ours
LAYOUT = "rife_v2"


class V2Graph(nn.Module):
    """``network`` with vs-mlrt's rife_v2 input and output: padding and cropping inside the graph."""

    def __init__(self, network: FlowNet) -> None:
        super().__init__()
        self.network = network
        self.multiple = network.multiple(1.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        height, width = x.shape[2], x.shape[3]
        pad = (0, (self.multiple - width % self.multiple) % self.multiple,
               0, (self.multiple - height % self.multiple) % self.multiple)
        img0, img1 = F.pad(x[:, 0:3], pad), F.pad(x[:, 3:6], pad)
        timestep = F.pad(x[:, 6:7], pad, mode="replicate") if self.network.supports_timestep else MIDDLE
        out = self.network(img0, img1, timestep=timestep).prediction
        return out[:, :, :height, :width]


def input_channels(network: FlowNet) -> int:
    return 7 if network.supports_timestep else 6


def export_onnx(network: FlowNet, path: Path, opset: int = OPSET) -> None:
    """Write ``network`` (on CPU, eval mode) as an ONNX graph in the rife_v2 layout; atomically."""
    import onnx

    graph = V2Graph(network.to("cpu", memory_format=torch.contiguous_format).eval())
    example = torch.rand(1, input_channels(network), 2 * graph.multiple, 2 * graph.multiple)
    with atomic_path(path) as tmp, warnings.catch_warnings():
        # the TorchScript exporter's deprecation notice, and the tracer's note that the example timestep is a
        # constant (it is not: the timestep plane is sliced from the input)
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        with torch.no_grad():
            torch.onnx.export(graph, (example,), str(tmp), input_names=[INPUT], output_names=[OUTPUT],
                              opset_version=opset, dynamo=False,
                              dynamic_axes={INPUT: {2: "height", 3: "width"}, OUTPUT: {2: "height", 3: "width"}})
        model = onnx.load(str(tmp))
        dims = model.graph.output[0].type.tensor_type.shape.dim  # the exporter leaves N and C symbolic
        dims[0].dim_value, dims[1].dim_value = 1, 3
        onnx.checker.check_model(model, full_check=True)
        for key, value in {"producer": PRODUCER, "layout": LAYOUT, "rife_arch": network.arch,
                           "timestep_plane": str(network.supports_timestep).lower()}.items():
            entry = model.metadata_props.add()
            entry.key, entry.value = key, value
        model.doc_string = (f"RIFE {network.arch} IFNet, {LAYOUT} layout: input (1, {input_channels(network)}, H, W) "
                            "RGB I0, RGB I1" + (", timestep plane" if network.supports_timestep else "")
                            + " in [0, 1]; output (1, 3, H, W)")
        onnx.save(model, str(tmp))


def load_onnx(named: str | Path):
    """An onnxruntime session of a graph written by :func:`export_onnx`; one line for anything else."""
    import onnxruntime as ort

    path = local_path(named, "--onnx", "an .onnx file")
    if not path.is_file():
        raise UserError(f"{path}: no such ONNX file")
    options = ort.SessionOptions()
    options.log_severity_level = 4  # fatal only: an error is reported once, as our one line
    try:
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as err:  # onnxruntime raises its own exception types for foreign or broken files
        raise UserError(f"{path}: not a readable ONNX model ({_first_line(err)})") from None
    meta = session.get_modelmeta().custom_metadata_map
    if meta.get("producer") != PRODUCER or meta.get("layout") != LAYOUT:
        raise UserError(f"{path}: an ONNX model, but not one written by `python -m pipeline.export` (no {LAYOUT} "
                        f"RIFE metadata; its inputs: {signature(session.get_inputs())})")
    check_signature(session, path)
    return session


def _first_line(err: Exception) -> str:
    return str(err).strip().splitlines()[0][:160] if str(err).strip() else type(err).__name__


def signature(args) -> str:
    return ", ".join(f"{a.name} {a.shape}" for a in args)


def check_signature(session, path: Path) -> None:
    """The graph's inputs and outputs are the layout its metadata claims (metadata copied onto another graph is not
    enough): one float input ``input`` of (1, 7 or 6, H, W) and one output ``output`` of (1, 3, H, W)."""
    meta = session.get_modelmeta().custom_metadata_map
    channels = 7 if meta.get("timestep_plane") == "true" else 6
    inputs, outputs = session.get_inputs(), session.get_outputs()
    fits = (len(inputs) == 1 and inputs[0].name == INPUT and inputs[0].type == "tensor(float)"
            and len(inputs[0].shape) == 4 and inputs[0].shape[:2] == [1, channels]
            and len(outputs) == 1 and outputs[0].name == OUTPUT and len(outputs[0].shape) == 4
            and outputs[0].shape[:2] == [1, 3])
    if not fits:
        raise UserError(f"{path}: carries the {LAYOUT} metadata of `python -m pipeline.export` (RIFE "
                        f"{meta.get('rife_arch', '?')}), but its graph is another: inputs {signature(inputs)}, "
                        f"outputs {signature(outputs)}; expected input {INPUT} [1, {channels}, height, width] and "
                        f"output {OUTPUT} [1, 3, height, width]. Export the checkpoint again")


class OnnxFlowNet:
    """An exported graph behind the interface interpolate uses (``interpolate``, ``in_between``)."""

    def __init__(self, session, source: Path | str = "the ONNX model") -> None:
        meta = session.get_modelmeta().custom_metadata_map
        self.session, self.source = session, source
        self.arch = meta.get("rife_arch", "unknown")
        self.supports_timestep = meta.get("timestep_plane") == "true"

    def interpolate(self, img0: torch.Tensor, img1: torch.Tensor, timestep: float = MIDDLE,
                    scale: float = 1.0) -> torch.Tensor:
        """The frame at ``timestep`` between two (1,3,H,W) frames in [0, 1], any H and W."""
        planes = [img0.cpu().numpy(), img1.cpu().numpy()]
        if self.supports_timestep:
            planes.append(np.full((1, 1, *img0.shape[2:]), timestep, dtype=np.float32))
        elif timestep != MIDDLE:
            raise ValueError(f"RIFE {self.arch} predicts only the middle frame (timestep 0.5), got {timestep}")
        x = np.ascontiguousarray(np.concatenate(planes, axis=1), dtype=np.float32)
        try:
            out = self.session.run([OUTPUT], {INPUT: x})[0]
        except Exception as err:  # onnxruntime's own exception types: a graph that does not run on these frames
            raise UserError(f"{self.source}: the ONNX graph failed on frames of {x.shape[3]}x{x.shape[2]} "
                            f"({_first_line(err)})") from None
        if out.shape != (1, 3, *x.shape[2:]):
            raise UserError(f"{self.source}: the ONNX graph returned an array of {list(out.shape)} for frames of "
                            f"{x.shape[3]}x{x.shape[2]}, expected [1, 3, {x.shape[2]}, {x.shape[3]}]")
        return torch.from_numpy(out).to(img0.device)

    def in_between(self, img0: torch.Tensor, img1: torch.Tensor, count: int, scale: float = 1.0) -> list[torch.Tensor]:
        return in_between(self, img0, img1, count, scale)
