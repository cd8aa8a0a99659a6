"""Mixed precision: ``train.mixed_precision`` (the network's forward under Accelerate's autocast, losses, warps and
the saved weights in float32), ``evaluate.mixed_precision`` and ``interpolate --precision`` (autocast around the
model call, float32 out)."""

from __future__ import annotations

import logging
import math
import shutil
import signal
import sys

import cv2
import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from accelerate.state import AcceleratorState

from pipeline import interpolate, train
from pipeline.core.errors import UserError
from pipeline.core.params import PRECISIONS, Train, build, load_params
from pipeline.core.paths import FINETUNED, PRETRAINED, TRIPLETS_DIR
from pipeline.models import IFNetOutput, create_model, expected_shapes, load_checkpoint, save_checkpoint
from pipeline.models.precision import DTYPES, FLOAT32
from pipeline.models.warp import backward_warp
from pipeline.scoring.batches import model_predictor
from pipeline.training.fit import fit
from pipeline.training.loop import LAUNCHER_PRECISION, run_precision
from pipeline.training.losses import rife_loss
from tests.golden import seeded_state
from tests.helpers import (
    ROOT,
    assert_user_error,
    copy_reproduced,
    loss_curve,
    make_clip,
    moving_texture,
    run_main,
    sh,
    stop_when,
)
from tests.test_loop import write_views

CPU = torch.device("cpu")


def test_the_settings_are_the_types_torch_autocasts_to():
    assert set(PRECISIONS) == {FLOAT32, *DTYPES}


@pytest.mark.parametrize("section", ["train", "evaluate"])
def test_a_precision_outside_no_bf16_fp16_is_one_line_naming_the_key(tmp_path, params_dict, section):
    params_dict[section]["mixed_precision"] = "fp32"
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params_dict))
    with pytest.raises(UserError) as caught:
        load_params(tmp_path / "params.yaml")
    assert str(caught.value) == (f"{tmp_path / 'params.yaml'}: {section}.mixed_precision = 'fp32': expected one of: "
                                 "no, bf16, fp16")


def test_an_unquoted_no_is_the_setting_no(tmp_path):
    """PyYAML reads an unquoted ``no`` as false, and DVC's ``--set-param train.mixed_precision=no`` writes it so."""
    text = (ROOT / "params.yaml").read_text()
    assert text.count('mixed_precision: "no"') == 2  # the project's own params.yaml quotes it
    (tmp_path / "params.yaml").write_text(text.replace('mixed_precision: "no"', "mixed_precision: no"))
    params = load_params(tmp_path / "params.yaml")
    assert params.train.mixed_precision == params.evaluate.mixed_precision == "no"


def test_the_launchers_precision_wins_over_the_param_and_says_so(params_dict, monkeypatch, caplog):
    cfg = build(Train, {**params_dict["train"], "mixed_precision": "bf16"}, "train.")
    monkeypatch.delenv(LAUNCHER_PRECISION, raising=False)
    assert run_precision(cfg) == "bf16"  # in-process, or under torchrun: the param
    monkeypatch.setenv(LAUNCHER_PRECISION, "no")  # `accelerate launch --mixed_precision no`
    with caplog.at_level(logging.WARNING):
        assert run_precision(cfg) == "no"
    assert "train.mixed_precision = bf16 is not used" in caplog.text


def test_warps_sample_in_float32_whatever_the_inputs():
    """A bfloat16 sampling grid across a 4K row would be off by several pixels."""
    ramp = torch.arange(3840, dtype=torch.float32).div(3840).view(1, 1, 1, 3840).expand(1, 3, 2, 3840)
    still = torch.zeros(1, 2, 2, 3840, dtype=torch.bfloat16)
    warped = backward_warp(ramp.to(torch.bfloat16), still)
    assert warped.dtype == torch.float32
    assert torch.allclose(warped, ramp.to(torch.bfloat16).float(), atol=1e-5)  # the identity: no pixel moved
    assert torch.allclose(backward_warp(ramp, still), ramp, atol=1e-5)


def test_losses_are_computed_in_float32_from_lower_precision_outputs(params_dict):
    generator = torch.Generator().manual_seed(0)
    frame, flow = (torch.rand(1, c, 64, 64, generator=generator).to(torch.bfloat16) for c in (3, 4))
    gt = torch.rand(1, 3, 64, 64, generator=generator)
    cfg = build(Train, params_dict["train"], "train.")

    def output(image, motion):
        return IFNetOutput(prediction=image, merged=[image], flows=[motion], teacher_prediction=image,
                           teacher_flow=motion)

    terms = rife_loss(output(frame, flow), gt, cfg.loss)
    exact = rife_loss(output(frame.float(), flow.float()), gt, cfg.loss)  # the same values, given as float32
    assert list(terms) == ["total", "laplacian", "teacher", "distill"]
    assert all(terms[name].dtype == torch.float32 and torch.equal(terms[name], exact[name]) for name in terms)


def seeded(arch: str = "hdv3") -> torch.nn.Module:
    model = create_model(arch)
    model.load_state_dict(seeded_state(expected_shapes(arch)))
    return model.eval()


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_inference_under_autocast_gives_float32_close_to_float32(precision):
    model = seeded().for_inference(CPU)
    generator = torch.Generator().manual_seed(1)
    img0, img1 = ((torch.rand(2, 40, 72, 3, generator=generator) * 255).to(torch.uint8).numpy() for _ in range(2))
    exact = model_predictor(model, CPU)(img0, img1, 0.5)
    lower = model_predictor(model, CPU, precision=precision)(img0, img1, 0.5)
    assert lower.dtype == exact.dtype == "float32" and lower.shape == exact.shape == (2, 40, 72, 3)
    difference = float(abs(lower - exact).max())
    assert 0 < difference < 0.05  # it ran at lower precision, and stayed close


def test_interpolate_runs_the_network_in_bf16_when_asked(tmp_path):
    make_clip(tmp_path / "clip.mkv", moving_texture(3, height=64, width=96), fps=25)
    save_checkpoint(seeded(), tmp_path / "hdv3.pkl")
    frames = {}
    for precision in ("no", "bf16"):
        done = run_main(interpolate.main, str(tmp_path / "clip.mkv"), str(tmp_path / precision), "--checkpoint",
                        str(tmp_path / "hdv3.pkl"), "--cut-threshold", "0.1", "--precision", precision)
        assert done.returncode == 0, done.stderr
        frames[precision] = [cv2.imread(str(p)).astype(int) for p in sorted((tmp_path / precision).glob("*.png"))]
    assert len(frames["no"]) == len(frames["bf16"]) == 5
    assert all(np.array_equal(a, b) for a, b in zip(frames["no"][::2], frames["bf16"][::2], strict=True))  # inputs
    predicted = [np.abs(a - b).max() for a, b in zip(frames["no"][1::2], frames["bf16"][1::2], strict=True)]
    assert 0 < max(predicted) <= 4, predicted  # in bf16 (1 level apart here), and close to float32


def test_interpolate_refuses_a_precision_for_an_onnx_graph(tmp_path):
    make_clip(tmp_path / "clip.mkv", moving_texture(2, height=64, width=96), fps=25)
    done = run_main(interpolate.main, str(tmp_path / "clip.mkv"), str(tmp_path / "out"), "--onnx", "x.onnx",
                    "--precision", "bf16", "--cut-threshold", "0.1")
    assert_user_error(done, "--precision bf16: the exported ONNX graph runs in float32 only")


@pytest.fixture()
def fresh_accelerate():
    """Accelerate keeps one state per process, mixed precision included: each run here starts its own."""
    threads = torch.get_num_threads()
    AcceleratorState._reset_state(reset_partial_state=True)
    yield
    AcceleratorState._reset_state(reset_partial_state=True)
    torch.set_num_threads(threads)


def training_project(root, params_dict, monkeypatch, **train_params) -> None:
    """A project in ``root`` ready for the train stage's worker: 16 planned views of 64 and 96 pixels, two val
    triplets, seeded pretrained weights; run in this process as if ``accelerate launch`` had started it."""
    write_views(root)
    manifest = pd.read_csv(root / TRIPLETS_DIR / "manifest.csv")
    val = manifest.iloc[:2].assign(split="val", triplet=[100, 101])
    pd.concat([manifest, val]).to_csv(root / TRIPLETS_DIR / "manifest.csv", index=False)
    (root / PRETRAINED).parent.mkdir(parents=True)
    save_checkpoint(seeded(), root / PRETRAINED)
    params_dict["train"].update(arch="hdv3", steps=2, batch_size=2, schedule="constant", val_every=2,
                                checkpoint_every=10, num_workers=0, threads=2, cpu_isa="native", **train_params)
    (root / "params.yaml").write_text(yaml.safe_dump(params_dict))
    monkeypatch.chdir(root)
    monkeypatch.setenv("ACCELERATE_DYNAMO_BACKEND", "no")  # what `accelerate launch` sets: the worker's side
    monkeypatch.delenv(LAUNCHER_PRECISION, raising=False)


def test_a_bf16_run_trains_and_saves_float32_weights_the_official_layout_loads(
        tmp_path, params_dict, monkeypatch, caplog, fresh_accelerate):
    training_project(tmp_path, params_dict, monkeypatch, mixed_precision="bf16", ema_decay=0.5)
    fitted = []
    monkeypatch.setattr(train, "fit", lambda params, accelerator: fitted.append(fit(params, accelerator)) or fitted[0])
    with caplog.at_level(logging.INFO):
        done = run_main(lambda argv: train.main())
    assert done.returncode == 0, done.stderr
    assert "mixed precision bf16" in caplog.text
    ema = fitted[0].ema.module
    assert {p.dtype for p in ema.parameters()} == {torch.float32}  # the average is kept in float32
    loss = loss_curve(tmp_path)
    assert len(loss) == 2 and all(math.isfinite(v) for v in loss["total"])
    saved = torch.load(tmp_path / FINETUNED, weights_only=True)
    assert {v.dtype for v in saved.values()} == {torch.float32} and all(k.startswith("module.") for k in saved)
    trained = load_checkpoint(tmp_path / FINETUNED, "hdv3")  # strict: every tensor, right names and shapes
    before = seeded().state_dict()
    assert any(not torch.equal(v, before[k]) for k, v in trained.state_dict().items())


def test_fp16_on_a_cpu_is_one_line_before_any_step(tmp_path, params_dict, monkeypatch, fresh_accelerate):
    training_project(tmp_path, params_dict, monkeypatch, mixed_precision="fp16")
    done = run_main(lambda argv: train.main())
    assert_user_error(done, "train.mixed_precision = fp16 runs on a GPU only", "use bf16 or no")
    assert not (tmp_path / FINETUNED).exists()


@pytest.mark.slow  # trains through dvc's command twice (about a minute), and needs the reproduced project
def test_a_bf16_run_killed_with_sigkill_resumes_to_the_weights_of_an_unbroken_run(tmp_path, reproduced):
    root = copy_reproduced(reproduced, tmp_path / "project")[0]
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["train"].update(steps=6, warmup_steps=2, checkpoint_every=2, val_every=100, mixed_precision="bf16",
                           cpu_isa="native", num_workers=1)
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    shutil.rmtree(root / "state/train", ignore_errors=True)
    sh(root, sys.executable, "-m", "pipeline.train")
    unbroken = torch.load(root / FINETUNED, weights_only=True)
    checkpoint = root / "state/train/latest/step.json"
    # SIGKILL to the launcher and its worker, with no chance to clean up
    stop_when(root, [sys.executable, "-m", "pipeline.train"], lambda _: checkpoint.exists(), signal.SIGKILL)
    assert checkpoint.exists()
    resumed = sh(root, sys.executable, "-m", "pipeline.train")
    assert "resuming from state/train/latest at step" in resumed.stderr and "mixed precision bf16" in resumed.stderr
    weights = torch.load(root / FINETUNED, weights_only=True)
    assert {v.dtype for v in weights.values()} == {torch.float32}
    assert all(torch.equal(weights[k], unbroken[k]) for k in unbroken)  # bit for bit, as fp32 runs resume
