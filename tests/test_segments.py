"""Rebuilt test segments: FFmpeg's minterpolate and libvmaf through pipes, the block bootstrap, the test runs of the
manifest, the side-by-side video, and the promise that no model runs twice over one pair."""

from __future__ import annotations

import hashlib
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from pipeline.core.errors import UserError
from pipeline.core.params import Evaluate, VideosOpts, load_params
from pipeline.core.schema import build
from pipeline.footage.sources import Clip
from pipeline.footage.triplets import split_spans, split_triplets
from pipeline.footage.video import decode
from pipeline.scoring.batches import score_triplets
from pipeline.scoring.evaluation import score_with_segments
from pipeline.scoring.ffmpeg import MinterpolateStream, VmafStream, clip_vmaf, minterpolate_pair
from pipeline.scoring.interpolators import blend
from pipeline.scoring.metrics import block_bootstrap, paired_difference, psnr
from pipeline.scoring.segment_plan import Segment, interval_frames, plan_segments
from pipeline.scoring.segment_summary import summarise_segments
from pipeline.scoring.segments import Rebuilt
from pipeline.scoring.watch import (
    LABEL_HEIGHT,
    NO_PREVIEW,
    ClipMovie,
    best_window,
    fill_empty_previews,
    no_preview_reason,
)
from tests.helpers import make_clip, moving_texture, run_module, write_params


def test_minterpolate_follows_motion_and_honours_the_timestep():
    frames = moving_texture(5, speed=2)
    middle = minterpolate_pair(frames[0], frames[2], 0.5)
    as_uint8 = np.round(middle * 255).astype(np.uint8)
    blended = np.round(blend(frames[0], frames[2], 0.5) * 255).astype(np.uint8)
    assert psnr(as_uint8, frames[1]) > psnr(blended, frames[1]) + 3
    quarter = np.round(minterpolate_pair(frames[0], frames[4], 0.25) * 255).astype(np.uint8)
    assert psnr(quarter, frames[1]) > psnr(quarter, frames[3]) + 3


def test_minterpolate_stream_gives_every_frame_of_the_rebuilt_sequence():
    frames = moving_texture(7, speed=3)
    stream = MinterpolateStream(frames[0].shape[1], frames[0].shape[0], 2)
    for kept in frames[::2]:
        stream.push(kept)
    stream.close()
    rebuilt = [stream.pop() for _ in frames]
    stream.finish()
    for index in (0, 2, 4, 6):  # kept frames come back through the filter's 4:4:4 YUV round trip only
        assert psnr(rebuilt[index], frames[index]) > 45
    for index in (1, 3, 5):  # the frames between follow the motion: closer to the truth than a cross-fade
        blended = np.round(blend(frames[index - 1], frames[index + 1], 0.5) * 255).astype(np.uint8)
        assert psnr(rebuilt[index], frames[index]) > psnr(blended, frames[index]) + 3


def test_vmaf_of_a_copy_is_near_100_and_of_a_blurred_copy_lower():
    frames = moving_texture(6, height=96, width=128)
    scores = {}
    for name, distort in (("copy", lambda f: f), ("blurred", lambda f: cv2.GaussianBlur(f, (0, 0), 2))):
        stream = VmafStream(128, 96)
        for frame in frames:
            stream.write(distort(frame), frame)
        scores[name] = stream.close()
    assert len(scores["copy"]) == len(scores["blurred"]) == 6
    assert scores["copy"][1:].min() > 90 and scores["blurred"].max() < scores["copy"][1:].min() - 20


def test_clip_vmaf_pools_every_frame_of_every_size_in_order():
    """Frames of two sizes, interleaved: each size is one clip (as VmafStream scores it), the frames pooled."""
    small, large = moving_texture(4, height=96, width=128), moving_texture(3, height=112, width=144, seed=1)

    def blurred(frame: np.ndarray) -> np.ndarray:
        return cv2.GaussianBlur(frame, (0, 0), 2)

    order = [*(f for pair in zip(small[:3], large, strict=True) for f in pair), small[3]]
    pairs = [(blurred(f), f) for f in order]
    per_size = []
    for frames in (small, large):
        stream = VmafStream(frames[0].shape[1], frames[0].shape[0])
        for frame in frames:
            stream.write(blurred(frame), frame)
        per_size.append(stream.close())
    assert clip_vmaf(pairs) == pytest.approx(np.concatenate(per_size).mean(), abs=1e-9)
    assert clip_vmaf((f, f) for f in small) > clip_vmaf((blurred(f), f) for f in small) + 20
    with pytest.raises(ValueError, match="at least one frame"):
        clip_vmaf([])


def test_block_bootstrap_is_wider_than_the_frame_bootstrap_on_correlated_frames():
    rng = np.random.default_rng(0)
    drift = np.cumsum(rng.normal(size=200)) * 0.1  # neighbouring values alike, like per-frame VMAF differences
    series = [drift[:120], drift[120:]]
    blocks = block_bootstrap(series, 10, 2000, 0)
    frames = paired_difference(drift, np.zeros_like(drift), 2000, 0)
    assert blocks["mean"] == pytest.approx(frames["mean"])
    assert blocks["ci95_high"] - blocks["ci95_low"] > 2 * (frames["ci95_high"] - frames["ci95_low"])
    constant = block_bootstrap([np.full(7, 0.5), np.full(30, 0.5)], 10, 500, 1)
    assert constant == pytest.approx({"mean": 0.5, "ci95_low": 0.5, "ci95_high": 0.5})


def test_split_spans_cover_every_status_and_split_at_gaps(tmp_path):
    rows = [("a", "test", "kept", 10, 12), ("a", "test", "static", 11, 13), ("a", "test", "kept", 12, 14),
            ("a", "test", "kept", 30, 32), ("a", "val", "kept", 2, 4), ("b", "test", "scene_cut", 5, 7)]
    pd.DataFrame(rows, columns=["clip", "split", "status", "frame0", "frame1"]).assign(gap=1).to_csv(
        tmp_path / "manifest.csv", index=False)
    assert split_spans("test", 1, tmp_path) == [("a", 10, 14), ("a", 30, 32), ("b", 5, 7)]
    assert split_spans("test", 2, tmp_path) == []


@pytest.mark.parametrize("section, key, value, message", [
    ("videos", "codec", "vp9", r"evaluate\.videos\.codec = 'vp9': expected one of: ffv1, h264"),
    ("segments", "block_frames", 0, r"evaluate\.segments\.block_frames = 0: expected an integer >= 1"),
    ("segments", "seconds", -1, r"evaluate\.segments\.seconds = -1: expected a number >= 0"),
])
def test_bad_segment_and_video_params_are_named(tmp_path, params_dict, section, key, value, message):
    params_dict["evaluate"][section][key] = value
    write_params(tmp_path, params_dict)
    with pytest.raises(UserError, match=message):
        load_params(tmp_path / "params.yaml")


def test_best_window_finds_the_planted_region():
    gain = np.zeros((60, 80))
    gain[20:30, 50:60] = 4.0
    assert best_window(gain, 10) == (4.0, 20, 50)


def test_side_by_side_video_is_lossless(tmp_path, params_dict):
    truth, pre, fine = moving_texture(3, height=64, width=96, speed=4)
    seg = Segment(Clip("sub/x.mkv", tmp_path / "x.mkv"), first=10, pairs=1, step=2, rate=Fraction(25),
                  size=(64, 96), video_pairs=1)
    opts = build(VideosOpts, params_dict["evaluate"]["videos"], "evaluate.videos.")
    for folder in (tmp_path, tmp_path / "again"):
        folder.mkdir(exist_ok=True)
        movie = ClipMovie(seg, opts, folder, folder)
        movie.frame(11, truth, {"pretrained": pre, "finetuned": fine}, interpolated=True)
        movie.close()
    for name in ("sub__x.mkv.mkv", "sub__x.mkv.png"):  # the same frames, the same bytes (DVC caches by content)
        assert (tmp_path / name).read_bytes() == (tmp_path / "again" / name).read_bytes()
    (frame,) = [f.image for f in decode(tmp_path / "sub__x.mkv.mkv")]
    assert frame.shape == (2 * (64 + LABEL_HEIGHT), 3 * 96, 3)
    assert np.array_equal(frame[LABEL_HEIGHT:LABEL_HEIGHT + 64, 96:192], pre)
    assert np.array_equal(frame[LABEL_HEIGHT:LABEL_HEIGHT + 64, 192:], fine)
    assert (tmp_path / "sub__x.mkv.png").is_file()


class Counting:
    """A predictor that records every (I0, I1, t) it is asked for, by the frames' bytes."""

    def __init__(self, weight: float) -> None:
        self.weight, self.calls = weight, []

    def __call__(self, img0: np.ndarray, img1: np.ndarray, timestep: float) -> np.ndarray:
        for a, b in zip(img0, img1, strict=True):
            self.calls.append((hashlib.md5(a.tobytes()).hexdigest(), hashlib.md5(b.tobytes()).hexdigest(), timestep))
        return blend(img0, img1, timestep) * self.weight


def extracted_clip(tmp_path: Path, params_dict: dict, monkeypatch, arch: str = "hdv3", extract: dict = (),
                   evaluate: dict = ()):
    """A 40-frame moving clip extracted under ``tmp_path`` (then the working folder) with these params changes;
    ``arch`` stands for what evaluate resolves from the checkpoint. Returns the params as evaluate reads them."""
    (tmp_path / "clips").mkdir()
    make_clip(tmp_path / "clips/a.avi", moving_texture(40, speed=1))
    params_dict["sources"]["videos"] = "clips"
    params_dict["extract"].update(extract)
    params_dict["evaluate"].update(evaluate)
    params_dict["train"]["arch"] = arch
    write_params(tmp_path, params_dict)
    assert run_module("pipeline.extract", tmp_path).returncode == 0
    monkeypatch.chdir(tmp_path)
    return load_params()


@pytest.mark.slow  # runs extract in a subprocess
def test_no_pair_is_predicted_twice_and_shared_triplets_score_as_alone(tmp_path, params_dict, monkeypatch):
    params = extracted_clip(tmp_path, params_dict, monkeypatch, evaluate={"methods": ["finetuned", "pretrained"]})
    rows = split_triplets("test")
    segments = plan_segments(rows, params)
    assert len(segments) == 1 and segments[0].pairs >= 3
    predictors = {"finetuned": Counting(0.99), "pretrained": Counting(1.0)}
    scores, rebuilt = score_with_segments(rows, predictors, params, segments, {})
    for predictor in predictors.values():
        assert len(predictor.calls) == len(set(predictor.calls))  # every pair once, triplets and segment together
        assert len(predictor.calls) == len(rows) + segments[0].pairs - len(rebuilt.triplet_scores)
    alone = score_triplets(rows, {n: Counting(p.weight) for n, p in predictors.items()}, params.evaluate.metrics,
                           params.evaluate.round_prediction)
    pd.testing.assert_frame_equal(scores, alone[scores.columns])
    assert len(rebuilt.triplet_scores) >= 2
    assert Path("results/evaluate/videos/a.avi.mkv").is_file()
    # the footage changed since extract, or is gone: one line naming the clip
    make_clip(Path("clips/a.avi"), moving_texture(40, speed=1, seed=5))
    with pytest.raises(UserError, match=r"clips/a.avi: frame \d+ differs from .*\(the footage changed since extract\)"):
        next(interval_frames(plan_segments(rows, params)[0]))
    Path("clips/a.avi").unlink()
    make_clip(Path("clips/b.avi"), moving_texture(40, speed=1))
    with pytest.raises(UserError, match="clip a.avi of data/triplets/manifest.csv is not there any more"):
        plan_segments(rows, params)


@pytest.mark.slow  # runs extract in a subprocess
@pytest.mark.parametrize("arch, step", [("hdv3", 2), ("4.18", 4)])
def test_segments_of_gap_2_keep_what_the_model_can_rebuild(tmp_path, params_dict, monkeypatch, arch, step):
    params = extracted_clip(tmp_path, params_dict, monkeypatch, arch, extract={"gap": 2})
    segments = plan_segments(split_triplets("test"), params)
    assert segments and segments[0].step == step  # HDv3 predicts only t = 0.5: one frame in two
    assert segments[0].timesteps == [k / step for k in range(1, step)]


@pytest.mark.parametrize("step", [2, 4])
def test_minterpolate_gives_out_an_interval_within_the_lookahead_the_rebuild_waits_for(step):
    from pipeline.scoring.segments import MCI_LOOKAHEAD
    stream = MinterpolateStream(64, 48, step)
    frames = [np.full((48, 64, 3), 20 * i, np.uint8) for i in range(MCI_LOOKAHEAD + 3)]
    try:
        for i, frame in enumerate(frames):
            stream.push(frame)
            stream.proc.process.stdin.flush()
            if i >= MCI_LOOKAHEAD:  # the rebuild now takes interval i - MCI_LOOKAHEAD: kept frame and in-betweens
                for _ in range(step):
                    stream.out.get(timeout=30)  # waiting longer would be the deadlock of a too short lookahead
    finally:
        stream.kill()


@pytest.mark.slow  # runs extract in a subprocess
@pytest.mark.parametrize("batch_size", [1, 2])
def test_a_segment_with_minterpolate_rebuilds_whatever_the_batch(tmp_path, params_dict, monkeypatch, batch_size):
    """Intervals come from the models a batch at a time; minterpolate gives out an interval only after later kept
    frames went in. Batches of one, or a last batch of one, once left the rebuild waiting on the pipe forever."""
    import threading

    from pipeline.scoring.ffmpeg import ffmpeg_mci
    params = extracted_clip(tmp_path, params_dict, monkeypatch, evaluate={
        "methods": ["finetuned", "pretrained", "ffmpeg_mci"], "batch_size": batch_size})
    rows = split_triplets("test")
    segments = plan_segments(rows, params)
    assert segments[0].pairs % batch_size == 1 or batch_size == 1, segments[0].pairs  # a last batch of one
    predictors = {"finetuned": Counting(0.99), "pretrained": Counting(1.0), "ffmpeg_mci": ffmpeg_mci}
    done: list = []
    worker = threading.Thread(target=lambda: done.append(score_with_segments(rows, predictors, params, segments, {})),
                              daemon=True)
    worker.start()
    worker.join(timeout=120)
    assert done, "the rebuild did not finish: it waits on minterpolate"
    rebuilt = done[0][1]
    assert len(rebuilt.frames) == segments[0].pairs * (segments[0].step - 1)


@pytest.mark.parametrize("change, reason", [({"seconds": 0}, "evaluate.videos.seconds is 0"),
                                            ({"max_clips": 0}, "evaluate.videos.max_clips is 0")])
def test_no_preview_leaves_an_image_saying_why_not_an_empty_folder(tmp_path, params_dict, change, reason):
    """An empty preview/ is not carried by git, so a fresh clone saw evaluate as changed; none.png is carried."""
    opts = build(VideosOpts, {**params_dict["evaluate"]["videos"], **change}, "evaluate.videos.")
    assert no_preview_reason(opts) == reason
    fill_empty_previews(tmp_path, opts)
    assert [p.name for p in tmp_path.iterdir()] == [NO_PREVIEW]
    image = cv2.imread(str(tmp_path / NO_PREVIEW))
    assert image.shape == (3 * LABEL_HEIGHT, 480, 3) and len(np.unique(image)) > 2  # text on the background


def test_a_folder_with_a_preview_gets_no_placeholder(tmp_path, params_dict):
    opts = build(VideosOpts, params_dict["evaluate"]["videos"], "evaluate.videos.")
    (tmp_path / "clip.mp4.png").write_bytes(b"png")
    fill_empty_previews(tmp_path, opts)
    assert [p.name for p in tmp_path.iterdir()] == ["clip.mp4.png"]


def test_segment_means_skip_a_nan_sharpness(params_dict):
    """Every chosen metric has its mean over the interpolated frames; a frame with a flat truth (NaN sharpness)
    is left out of that mean only."""
    cfg = build(Evaluate, {**params_dict["evaluate"], "methods": ["finetuned", "pretrained"],
                           "metrics": ["psnr", "ssim", "sharpness"], "bootstrap_samples": 200}, "evaluate.")
    table = pd.DataFrame({"clip": "a", "segment": 0, "finetuned_psnr": [30.0, 32.0, 34.0],
                          "pretrained_psnr": [29.0, 31.0, 33.0], "finetuned_ssim": 0.9, "pretrained_ssim": 0.8,
                          "finetuned_sharpness": [0.8, np.nan, 0.6], "pretrained_sharpness": [1.0, np.nan, 0.9]})
    vmaf = [{"finetuned": np.array([90.0, 91.0, 92.0, 93.0]), "pretrained": np.array([91.0, 92.0, 93.0, 94.0])}]
    summary = summarise_segments(Rebuilt(("finetuned", "pretrained"), vmaf=vmaf), table, cfg)
    assert summary["finetuned"]["sharpness"] == pytest.approx(0.7)
    assert summary["pretrained"]["sharpness"] == pytest.approx(0.95)
    assert summary["finetuned"]["psnr"] == pytest.approx(32.0) and summary["finetuned"]["vmaf"] == pytest.approx(91.5)
