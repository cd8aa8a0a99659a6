"""The evaluate stage: the methods registry, batching by size and timestep, the model's scale, the summary
(bootstrap, per-clip breakdown, motion buckets), the example grids, and one run of the real stage."""

from __future__ import annotations

import json
import pathlib
import shutil

import cv2
import numpy as np
import pandas as pd
import pytest
import torch
from accelerate import Accelerator
from torch import nn

from pipeline.core import params as params_module
from pipeline.core.params import load_params
from pipeline.footage.triplets import read_triplet
from pipeline.scoring.batches import model_predictor, model_scale, same_size_chunks, score_rows, score_triplets
from pipeline.scoring.interpolators import METHODS, blend, dis_flow, repeat_nearer
from pipeline.scoring.metrics import METRICS, prediction_to_255, psnr, sharpness
from pipeline.scoring.plots import pick_examples
from pipeline.scoring.summary import (
    OTHER_CLIPS,
    headline,
    motion_buckets,
    summarise,
    triplet_table,
    with_every_method,
    write_tables,
)
from pipeline.training import validation
from tests.helpers import assert_user_error, make_clip, moving_texture, run_module, write_params

BASELINES = {"repeat": repeat_nearer, "blend": blend, "dis_flow": dis_flow}


def frames(count: int = 3, height: int = 48, width: int = 64, speed: int = 2, seed: int = 0) -> np.ndarray:
    return np.stack(moving_texture(count, height, width, speed, seed))


def test_the_registries_are_what_params_accept():
    assert tuple(METHODS) == params_module.METHODS
    assert tuple(METRICS) == params_module.METRICS


@pytest.mark.parametrize("name", sorted(BASELINES))
def test_baselines_honour_the_timestep(name):
    """Float frames in [0, 1] of the batch's shape; t = 0 gives I0 and t = 1 gives I1."""
    predict = BASELINES[name]
    clip = frames(3)
    img0, img1 = clip[None, 0], clip[None, 2]
    for t, expected in ((0.0, img0), (1.0, img1)):
        out = predict(img0, img1, t)
        assert out.shape == img0.shape and out.dtype == np.float32
        assert 0.0 <= out.min() and out.max() <= 1.0
        np.testing.assert_allclose(out * 255, expected, atol=1e-3)


def test_blend_and_repeat_at_a_quarter():
    img0 = np.full((1, 4, 4, 3), 40, np.uint8)
    img1 = np.full((1, 4, 4, 3), 200, np.uint8)
    assert blend(img0, img1, 0.25) * 255 == pytest.approx(np.full((1, 4, 4, 3), 80.0))
    assert (repeat_nearer(img0, img1, 0.25) == repeat_nearer(img0, img1, 0.5)).all()
    assert (repeat_nearer(img0, img1, 0.75) * 255 == 200).all()


def test_dis_flow_follows_motion():
    """A texture sliding 4 pixels per frame: DIS warping recovers the middle frame, blending does not."""
    clip = frames(3, 96, 128, speed=4)
    img0, truth, img1 = clip[None, 0], clip[1], clip[None, 2]
    inner = (slice(8, -8), slice(12, -12))  # away from the edge that enters the picture
    flow_psnr = psnr(np.round(dis_flow(img0, img1, 0.5)[0] * 255)[inner], truth[inner])
    blend_psnr = psnr(np.round(blend(img0, img1, 0.5)[0] * 255)[inner], truth[inner])
    assert flow_psnr > 35 and flow_psnr > blend_psnr + 10


def test_auto_scale_halves_only_frames_above_1080p():
    assert model_scale("auto", 720, 1280) == 1.0
    assert model_scale("auto", 1080, 1920) == 1.0
    assert model_scale("auto", 2160, 3840) == 0.5
    assert model_scale(0.25, 720, 1280) == 0.25


def test_chunks_share_size_and_timestep_and_keep_the_order():
    rows = pd.DataFrame({"height": [8, 8, 8, 8, 16, 16, 8], "width": [8] * 7,
                         "timestep": [0.5, 0.5, 0.5, 0.25, 0.25, 0.25, 0.25]})
    chunks = [list(c.index) for c in same_size_chunks(rows, batch_size=2)]
    assert chunks == [[0, 1], [2], [3], [4, 5], [6]]


def test_large_frames_go_fewer_at_a_time():
    """At most the pixels of one 4K frame per model call, whatever the batch size."""
    rows = pd.DataFrame({"height": [720] * 12 + [2160] * 3, "width": [1280] * 12 + [3840] * 3, "timestep": 0.5})
    assert [len(c) for c in same_size_chunks(rows, batch_size=16)] == [9, 3, 1, 1, 1]


class RecordingModel(nn.Module):
    """Stands in for a RIFE model: blends, and records how it was called."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[int, int, int, float, float]] = []

    def interpolate(self, img0, img1, timestep=0.5, scale=1.0):
        self.calls.append((img0.shape[0], img0.shape[2], img0.shape[3], timestep, scale))
        return (1 - timestep) * img0 + timestep * img1


@pytest.fixture()
def triplet_dir(tmp_path, monkeypatch) -> pd.DataFrame:
    """data/triplets in a temporary working directory: two clips, two frame sizes, two timesteps."""
    monkeypatch.chdir(tmp_path)
    root = tmp_path / "data/triplets"
    records = []
    specs = [("a", 48, 64, 0.5, 0), ("a", 48, 64, 0.5, 1), ("a", 48, 64, 0.25, 2), ("b", 32, 40, 0.5, 3)]
    for i, (clip, height, width, t, seed) in enumerate(specs):
        names = [f"frames/{clip}/{i}_{k}.png" for k in range(3)]
        for name, frame in zip(names, frames(3, height, width, seed=seed), strict=True):
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(root / name), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
        records.append({"triplet": i, "clip": clip, "split": "test", "status": "kept", "frame0": 0, "frame_t": 1,
                        "frame1": 2, "timestep": t, "height": height, "width": width, "motion": 0.01 * (i + 1),
                        "path0": names[0], "path_t": names[1], "path1": names[2]})
    rows = pd.DataFrame(records)
    rows.to_csv(root / "manifest.csv", index=False)
    return rows


def test_models_get_the_manifest_timestep_in_batches(triplet_dir):
    model = RecordingModel()
    table = score_triplets(triplet_dir, {"m": model_predictor(model, torch.device("cpu"), "auto")},
                           ("psnr", "ssim"), round_prediction=True, batch_size=4)
    assert model.calls == [(2, 48, 64, 0.5, 1.0), (1, 48, 64, 0.25, 1.0), (1, 32, 40, 0.5, 1.0)]
    assert list(table.columns) == ["m_psnr", "m_ssim"] and list(table.index) == list(triplet_dir.index)


def test_sharpness_reaches_per_triplet_csv_and_the_means(triplet_dir, params_dict):
    """A chosen metric flows as every other: one column per method in per_triplet.csv, its mean in details.json."""
    predict = model_predictor(RecordingModel(), torch.device("cpu"))
    predictors = {"finetuned": predict, "pretrained": lambda img0, img1, t: img0.astype(np.float32) / 255.0}
    metrics = ("psnr", "ssim", "sharpness")
    cfg = evaluate_cfg(params_dict, metrics=list(metrics), motion_buckets=2)
    table = triplet_table(triplet_dir.assign(gap=1), score_triplets(triplet_dir, predictors, metrics, True))
    summary = summarise(table, cfg)
    summary["segments"] = {"segments": 0}
    write_tables(table, motion_buckets(table, cfg), summary)
    written = pd.read_csv("results/evaluate/per_triplet.csv")
    for (_, row), value in zip(triplet_dir.iterrows(), written["finetuned_sharpness"], strict=True):
        img0, target, img1 = read_triplet(row)
        pred = prediction_to_255(predict(img0[None], img1[None], row.timestep)[0])
        assert value == pytest.approx(sharpness(pred, target), abs=1e-6)
        assert value < 1.0  # a blend of two moving frames is softer than the truth
    assert written["pretrained_sharpness"].to_numpy() == pytest.approx(1.0, abs=0.3)  # an input frame: as sharp
    details = json.loads(pathlib.Path("results/evaluate/details.json").read_text())
    assert details["finetuned"]["sharpness"] == pytest.approx(written["finetuned_sharpness"].mean(), abs=1e-6)
    assert "sharpness" in details["finetuned_minus_pretrained"]
    assert "sharpness" not in json.dumps(json.loads(pathlib.Path("results/evaluate/metrics.json").read_text()))


def test_the_means_and_gains_skip_a_nan_sharpness(params_dict):
    table = fake_table([0.5, -0.2, 0.3], ["x", "x", "y"]).assign(
        finetuned_sharpness=[0.8, np.nan, 0.6], pretrained_sharpness=[1.0, np.nan, 0.9])
    summary = summarise(table, evaluate_cfg(params_dict, metrics=["psnr", "ssim", "sharpness"]))
    assert summary["finetuned"]["sharpness"] == pytest.approx(0.7)
    assert summary["pretrained"]["sharpness"] == pytest.approx(0.95)
    gain = summary["finetuned_minus_pretrained"]
    assert gain["sharpness"] == pytest.approx(-0.25)
    assert gain["sharpness_ci95_low"] <= gain["sharpness"] <= gain["sharpness_ci95_high"]
    assert gain["psnr"] == pytest.approx(0.2)  # the other metrics keep every triplet


def test_train_validation_scores_are_the_shared_scores(triplet_dir):
    rows = triplet_dir[triplet_dir.timestep == 0.5]
    model = RecordingModel()
    scores = score_rows(model, rows, torch.device("cpu"), round_prediction=True, batch_size=2)
    assert model.calls == [(2, 48, 64, 0.5, 1.0), (1, 32, 40, 0.5, 1.0)]
    table = score_triplets(rows, {"m": model_predictor(model, torch.device("cpu"))}, ("psnr", "ssim"), True)
    assert scores == list(zip(table.m_psnr, table.m_ssim, strict=True))


@pytest.mark.parametrize("scale, expected", [("auto", 1.0), (0.25, 0.25)])  # auto: these frames are small
def test_train_validation_runs_the_model_at_train_val_scale(triplet_dir, monkeypatch, scale, expected):
    """``train.val_scale`` reaches every model call of a validation, the VMAF clip's too."""
    monkeypatch.setattr(validation, "clip_vmaf", lambda pairs: float(len(list(pairs))))
    model = RecordingModel()
    scores, _ = validation.validate(model, triplet_dir, 2, Accelerator(cpu=True), vmaf_triplets=1, scale=scale)
    assert scores["val/vmaf"] == 1.0 and model.calls and {call[-1] for call in model.calls} == {expected}


def test_train_validation_scores_vmaf_on_the_first_rows_as_a_clip(triplet_dir, monkeypatch):
    """val/vmaf: the predictions of the first ``vmaf_triplets`` rows, rounded as the PSNR's are, in manifest order
    against their targets (clip_vmaf itself is tested in test_segments.py)."""
    seen: list[tuple[np.ndarray, np.ndarray]] = []

    def fake_clip_vmaf(pairs):
        seen.extend(pairs)
        return 42.0

    monkeypatch.setattr(validation, "clip_vmaf", fake_clip_vmaf)
    model, accelerator = RecordingModel(), Accelerator(cpu=True)
    scores, psnrs = validation.validate(model, triplet_dir, 2, accelerator)
    assert "val/vmaf" not in scores and not seen and len(psnrs) == 4
    scores, psnrs = validation.validate(model, triplet_dir, 2, accelerator, vmaf_triplets=3)
    assert scores["val/vmaf"] == 42.0 and len(psnrs) == 4 and len(seen) == 3 and model.training
    predict = model_predictor(RecordingModel(), torch.device("cpu"))
    for (pred, truth), (_, row) in zip(seen, triplet_dir.head(3).iterrows(), strict=True):
        img0, target, img1 = read_triplet(row)
        expected = prediction_to_255(predict(img0[None], img1[None], row.timestep)[0])
        assert pred.dtype == np.uint8 and np.array_equal(pred, expected) and np.array_equal(truth, target)


def fake_table(gains: list[float], clips: list[str], gaps: list[int] | None = None) -> pd.DataFrame:
    n = len(gains)
    rows = pd.DataFrame({"triplet": range(n), "clip": clips, "gap": gaps or 1, "frame0": 0, "frame_t": 1, "frame1": 2,
                         "timestep": 0.5, "height": 8, "width": 8, "motion": np.linspace(0.01, 0.05, n)})
    pretrained = np.linspace(30, 35, n)
    scores = pd.DataFrame({"finetuned_psnr": pretrained + gains, "finetuned_ssim": 0.9,
                           "pretrained_psnr": pretrained, "pretrained_ssim": 0.9})
    return triplet_table(rows, scores)


def evaluate_cfg(params_dict: dict, **changes) -> params_module.Evaluate:
    values = {**params_dict["evaluate"], "methods": ["finetuned", "pretrained"], "metrics": ["psnr", "ssim"],
              "bootstrap_samples": 200, **changes}
    return params_module.build(params_module.Evaluate, values, "evaluate.")


def test_summary_gain_and_per_clip_breakdown(params_dict):
    table = fake_table([0.5, -0.2, 0.3, 0.1, 0.4, 0.0], ["x", "x", "x", "y", "y", "z"])
    summary = summarise(table, evaluate_cfg(params_dict, per_clip_max=2))
    gain = summary["finetuned_minus_pretrained"]
    assert gain["psnr"] == pytest.approx(np.mean([0.5, -0.2, 0.3, 0.1, 0.4, 0.0]))
    assert gain["psnr_ci95_low"] <= gain["psnr"] <= gain["psnr_ci95_high"]
    assert gain["share_improved"] == pytest.approx(4 / 6)
    assert list(summary["per_clip"]) == ["x", "y", OTHER_CLIPS]
    assert summary["per_clip"]["x"]["triplets"] == 3
    assert summary["per_clip"]["x"]["finetuned_minus_pretrained_psnr"] == pytest.approx(0.2)
    assert summary["per_clip"][OTHER_CLIPS]["clips"] == 1
    json.dumps(summary)  # plain JSON types only


HEADLINE = ["psnr.gain", "psnr.low", "psnr.high", "vmaf.gain", "vmaf.low", "vmaf.high",
            "improved", "pretrained.psnr", "pretrained.ssim", "triplets"]


def flat_keys(values: dict, prefix: str = "") -> list[str]:
    """The keys of nested ``values`` as DVC flattens them (``psnr.gain``), in order."""
    return [key for name, value in values.items()
            for key in (flat_keys(value, f"{prefix}{name}.") if isinstance(value, dict) else [f"{prefix}{name}"])]


def test_metrics_json_holds_the_headline_in_order_and_details_json_the_rest(tmp_path, monkeypatch, params_dict):
    monkeypatch.chdir(tmp_path)
    table = fake_table([0.5, -0.2, 0.3, 0.1], ["x", "x", "y", "y"])
    table = table.assign(finetuned_psnr_y=table.finetuned_psnr, pretrained_psnr_y=table.pretrained_psnr,
                         blend_psnr=25.0, blend_ssim=0.8, blend_psnr_y=25.5)
    summary = summarise(table, evaluate_cfg(params_dict, methods=["finetuned", "pretrained", "blend"],
                                            metrics=["psnr", "ssim", "psnr_y"]))
    summary["segments"] = {"segments": 1, "finetuned_minus_pretrained": {
        "block_frames": 10, "vmaf": -0.5, "vmaf_ci95_low": -0.9, "vmaf_ci95_high": -0.1, "psnr": 0.2,
        "psnr_ci95_low": 0.1, "psnr_ci95_high": 0.3}}
    write_tables(table, motion_buckets(table, evaluate_cfg(params_dict)), summary)
    metrics = json.loads((tmp_path / "results/evaluate/metrics.json").read_text())
    assert flat_keys(metrics) == HEADLINE
    gain = summary["finetuned_minus_pretrained"]
    assert metrics["psnr"]["gain"] == round(gain["psnr"], 4) == pytest.approx(0.175)  # 4 decimals
    assert (metrics["psnr"]["low"], metrics["psnr"]["high"]) == (round(gain["psnr_ci95_low"], 4),
                                                                 round(gain["psnr_ci95_high"], 4))
    assert metrics["vmaf"] == {"gain": -0.5, "low": -0.9, "high": -0.1}
    assert metrics["improved"] == 0.75 and metrics["triplets"] == 4
    assert metrics["pretrained"] == {"psnr": round(summary["pretrained"]["psnr"], 4),
                                     "ssim": round(summary["pretrained"]["ssim"], 4)}
    details = json.loads((tmp_path / "results/evaluate/details.json").read_text())
    assert details == json.loads(json.dumps(summary))  # everything, the baselines and breakdowns included
    assert {"blend", "per_clip", "per_gap", "segments"} <= set(details) and "psnr_y" in details["finetuned"]


def test_without_rebuilt_segments_the_headline_has_no_vmaf(params_dict):
    summary = summarise(fake_table([0.5, -0.2], ["x", "y"]), evaluate_cfg(params_dict))
    summary["segments"] = {"segments": 0}
    assert flat_keys(headline(summary)) == [key for key in HEADLINE if "vmaf" not in key]


def test_per_gap_breakdown_has_each_gap_with_its_interval(params_dict):
    table = fake_table([0.1, 0.1, 0.1, 0.5, 0.7, 0.6], ["x"] * 6, [1, 1, 1, 2, 2, 2])
    summary = summarise(table, evaluate_cfg(params_dict))
    assert list(summary["per_gap"]) == ["1", "2"]
    two = summary["per_gap"]["2"]
    assert two["triplets"] == 3 and two["finetuned_minus_pretrained_psnr"] == pytest.approx(0.6)
    assert two["finetuned_minus_pretrained_psnr_ci95_low"] <= 0.6 <= two["finetuned_minus_pretrained_psnr_ci95_high"]
    assert summary["per_gap"]["1"]["finetuned_minus_pretrained_psnr"] == pytest.approx(0.1)
    json.dumps(summary)


def test_pixel_exact_predictions_count_as_100_db(params_dict):
    table = fake_table([np.inf, 0.0], ["x", "x"])
    assert table.finetuned_psnr.max() == 100.0


def test_motion_buckets_have_equal_counts(params_dict):
    table = fake_table([0.1] * 9, ["x"] * 9)
    buckets = motion_buckets(table, evaluate_cfg(params_dict, motion_buckets=3))
    assert buckets.triplets.tolist() == [3, 3, 3] and buckets.motion.is_monotonic_increasing
    assert buckets.finetuned_minus_pretrained_psnr.tolist() == pytest.approx([0.1] * 3)
    assert len(motion_buckets(table.iloc[:2], evaluate_cfg(params_dict, motion_buckets=4))) == 2


def test_examples_are_the_extremes_and_never_repeat():
    table = fake_table([0.5, -0.2, 0.3, -0.6, 0.0], ["x"] * 5)
    assert pick_examples(table, 2) == [("improved_1", 0), ("improved_2", 2), ("degraded_1", 3), ("degraded_2", 1)]
    assert pick_examples(table.iloc[:2], 2) == [("improved_1", 0), ("degraded_1", 1)]


@pytest.mark.slow  # runs a stage or command in a subprocess, or several full networks
@pytest.mark.parametrize("key, value, message", [
    ("methods", ["pretrained", "blend"], "evaluate.methods = [pretrained, blend] lacks finetuned"),
    ("metrics", ["psnr", "psnr_y"], "evaluate.metrics = [psnr, psnr_y] lacks ssim"),
    ("metrics", ["psnr", "ssim", "lpips"], "evaluate.metrics[2] = 'lpips': expected one of: psnr, ssim"),
    ("scale", 0.3, "evaluate.scale = 0.3: expected one of: auto, 1.0, 0.5, 0.25"),
    ("scale", "half", "evaluate.scale = 'half': expected one of: auto, 1.0, 0.5, 0.25"),
    ("batch_size", 0, "evaluate.batch_size = 0: expected an integer >= 1"),
])
def test_bad_evaluate_params_are_named(tmp_path, params_dict, key, value, message):
    params_dict["evaluate"][key] = value
    write_params(tmp_path, params_dict)
    with pytest.raises(params_module.UserError, match=message.replace("[", r"\[").replace("]", r"\]")):
        load_params(tmp_path / "params.yaml")


@pytest.mark.slow  # runs a stage or command in a subprocess, or several full networks
@pytest.mark.parametrize("value", [0.5, "0.5", 1, "auto"])
def test_scale_reads_numbers_in_any_form(tmp_path, params_dict, value):
    params_dict["evaluate"]["scale"] = value
    write_params(tmp_path, params_dict)
    scale = load_params(tmp_path / "params.yaml").evaluate.scale
    assert scale == ("auto" if value == "auto" else float(value))


def test_the_stage_writes_every_output(tmp_path, params_dict, official_hdv3):
    """The real stage on a generated clip, with the official weights standing in for both checkpoints."""
    (tmp_path / "clips").mkdir()
    make_clip(tmp_path / "clips/a.avi", moving_texture(40, speed=3))
    params_dict["sources"]["videos"] = "clips"
    params_dict["extract"].update(max_per_clip=4, cut_threshold=0.2)  # 6 pixels in two frames is no cut
    params_dict["evaluate"].update(bootstrap_samples=200, examples=1, motion_buckets=2)
    write_params(tmp_path, params_dict)
    assert run_module("pipeline.extract", tmp_path).returncode == 0
    for name in ("pretrained", "finetuned"):
        (tmp_path / f"models/{name}").mkdir(parents=True)
        shutil.copy(official_hdv3, tmp_path / f"models/{name}/flownet.pkl")
    done = run_module("pipeline.evaluate", tmp_path)
    assert done.returncode == 0, done.stderr
    out = tmp_path / "results/evaluate"
    assert flat_keys(json.loads((out / "metrics.json").read_text())) == HEADLINE
    metrics = json.loads((out / "details.json").read_text())
    for method in params_module.METHODS:
        assert set(metrics[method]) == set(params_module.METRICS)
    assert metrics["finetuned_minus_pretrained"]["psnr"] == 0.0  # the same weights
    assert metrics["dis_flow"]["psnr"] > metrics["blend"]["psnr"]
    assert list(metrics["per_clip"]) == ["a.avi"]
    table = pd.read_csv(out / "per_triplet.csv")
    assert len(table) == metrics["triplets"] and {"motion", "timestep", "dis_flow_ssim_matlab",
                                                        "finetuned_sharpness"} <= set(table.columns)
    assert len(pd.read_csv(out / "motion_buckets.csv")) == 2
    assert sorted(p.name for p in (out / "examples").iterdir()) == ["degraded_1.png", "improved_1.png"]
    assert (out / "summary.png").stat().st_size > 10_000
    assert "evaluate: 100%" in done.stderr  # the progress bar over triplets
    # the test segment rebuilt (every other frame kept), scored per frame and with VMAF, and its videos
    segments = metrics["segments"]
    frames = pd.read_csv(out / "segment_frames.csv")
    assert segments["segments"] == 1 and segments["frames"] == len(frames) >= 3 and segments["cuts"] == 0
    assert (frames["frame"] % 2 != frames["frame"].iloc[0] % 2).sum() == 0  # every other frame interpolated
    for method in params_module.METHODS:
        assert 0 <= segments[method]["vmaf"] <= 100 and f"{method}_vmaf" in frames.columns
    assert segments["finetuned_minus_pretrained"]["vmaf"] == 0.0  # the same weights
    assert segments["dis_flow"]["psnr"] > segments["blend"]["psnr"]
    assert segments["ffmpeg_mci"]["psnr"] > segments["blend"]["psnr"]  # a plain translation: easy for block motion
    assert [p.name for p in (out / "videos").iterdir()] == ["a.avi.mkv"]
    assert [p.name for p in (out / "preview").iterdir()] == ["a.avi.png"]
    assert "segments: 100%" in done.stderr


@pytest.mark.slow  # runs a stage or command in a subprocess, or several full networks
def test_the_stage_refuses_an_empty_test_split(tmp_path, params_dict):
    root = tmp_path / "data/triplets"
    root.mkdir(parents=True)
    pd.DataFrame(columns=["clip", "split", "status"]).to_csv(root / "manifest.csv", index=False)
    write_params(tmp_path, params_dict)
    assert_user_error(run_module("pipeline.evaluate", tmp_path), "no test triplet")


def test_every_method_has_a_column_for_the_charts_even_when_not_run():
    """dvc.yaml's charts name every method's column; a run of the two models gets empty ones (no line drawn)."""
    buckets = pd.DataFrame({"motion": [0.1, 0.2], "finetuned_psnr": [30.0, 31.0], "pretrained_psnr": [29.0, 30.5]})
    full = with_every_method(buckets, ("psnr",))
    assert list(full.columns[:3]) == ["motion", "finetuned_psnr", "pretrained_psnr"]
    assert full.finetuned_psnr.tolist() == [30.0, 31.0]
    assert {f"{name}_psnr" for name in METHODS} <= set(full.columns)
    assert full[[f"{name}_psnr" for name in METHODS if name not in ("finetuned", "pretrained")]].isna().all().all()
