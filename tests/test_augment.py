"""Stage augment and the views it plans: transform identities, identical transforms on the three frames, a seeded
byte-identical plan, and views that a probability change does not move."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pipeline.augment import plan_views
from pipeline.core.params import Augment, build
from pipeline.footage.views import (
    apply_view,
    channel_reverse,
    crop_for,
    downscale,
    draw_view,
    hflip,
    jitter,
    rotate,
    temporal_reverse,
    vflip,
)
from tests.helpers import assert_user_error, make_clip, moving_texture, run_module, tree_digest, write_params

FRAMES = np.random.default_rng(0).integers(0, 256, (3, 8, 10, 3), dtype=np.uint8)


def augment_cfg(params_dict: dict, **changes) -> Augment:
    return build(Augment, {**params_dict["augment"], **changes}, "augment.")


def augment_triplet(frames: np.ndarray, timestep: float, cfg: Augment, rng: np.random.Generator,
                    size: int | None = None) -> tuple[np.ndarray, dict]:
    """A view drawn for ``frames`` and applied to them, as the training loader does."""
    view = draw_view(frames.shape[1], frames.shape[2], timestep, cfg, rng, size or cfg.crop)
    return apply_view(frames, view), view


@pytest.mark.parametrize("transform", [hflip, vflip, channel_reverse, lambda f: rotate(f, 2)],
                         ids=["hflip", "vflip", "channel_reverse", "rotate180"])
def test_involutions(transform):
    assert not np.array_equal(transform(FRAMES), FRAMES)
    assert np.array_equal(transform(transform(FRAMES)), FRAMES)


def test_four_quarter_turns_are_the_identity_and_one_turns_the_frame():
    turned = rotate(FRAMES, 1)
    assert turned.shape == (3, 10, 8, 3)
    assert np.array_equal(turned[1], np.rot90(FRAMES[1]))
    assert np.array_equal(rotate(rotate(turned, 1), 2), FRAMES)


def test_temporal_reversal_swaps_the_ends_and_the_timestep():
    reversed_frames, t = temporal_reverse(FRAMES, 0.25)
    assert t == 0.75
    assert np.array_equal(reversed_frames[0], FRAMES[2]) and np.array_equal(reversed_frames[2], FRAMES[0])
    assert np.array_equal(reversed_frames[1], FRAMES[1])


def test_jitter_with_unit_factors_is_the_identity_and_is_shared_by_the_frames():
    assert np.array_equal(jitter(FRAMES, 1.0, 1.0), FRAMES)
    same = np.stack([FRAMES[0]] * 3)
    brighter = jitter(same, 1.2, 0.8)
    assert np.array_equal(brighter[0], brighter[2]) and not np.array_equal(brighter[0], same[0])


def test_augmentation_applies_the_same_transform_to_all_frames(params_dict):
    cfg = augment_cfg(params_dict, hflip=1.0, vflip=1.0, channel_reverse=1.0, rotate=1.0, temporal_reverse=1.0)
    base = np.random.default_rng(1).integers(0, 256, (40, 50, 3), dtype=np.uint8)
    sample, record = augment_triplet(np.stack([base, base, base]), 0.25, cfg, np.random.default_rng(2), 32)
    top, left = record["top"], record["left"]
    expected = np.rot90(base[top:top + 32, left:left + 32][::-1, ::-1, ::-1], record["rotation"] // 90)
    assert all(np.array_equal(sample[i], expected) for i in range(3))
    assert record["hflip"] and record["vflip"] and record["reversed"] and record["channel_reverse"]
    assert record["rotation"] in (90, 180, 270) and record["timestep"] == 0.75


def test_a_probability_change_does_not_move_the_crops(params_dict):
    frames = np.random.default_rng(3).integers(0, 256, (3, 64, 80, 3), dtype=np.uint8)
    crops = []
    for flip in (0.0, 1.0):
        rng = np.random.default_rng(7)
        cfg = augment_cfg(params_dict, hflip=flip)
        crops.append([augment_triplet(frames, 0.5, cfg, rng, 32)[1]["top"] for _ in range(5)])
    assert crops[0] == crops[1]


@pytest.mark.slow  # runs a stage or command in a subprocess, or several full networks
def test_augment_writes_the_same_plan_for_the_same_seed_and_no_pixels(tmp_path, params_dict):
    (tmp_path / "clips").mkdir()
    make_clip(tmp_path / "clips/a.avi", moving_texture(30))
    params_dict["sources"]["videos"] = "clips"
    params_dict["augment"].update(crop=64, jitter=0.5, views_per_triplet=3)
    write_params(tmp_path, params_dict)
    assert run_module("pipeline.extract", tmp_path).returncode == 0
    digests = []
    for _ in range(2):
        done = run_module("pipeline.augment", tmp_path)
        assert done.returncode == 0, done.stderr
        digests.append(tree_digest(tmp_path / "data/augmented"))
    assert digests[0] == digests[1]
    assert [p.name for p in (tmp_path / "data/augmented").iterdir()] == ["plan.csv"]
    plan = pd.read_csv(tmp_path / "data/augmented/plan.csv")
    triplets = pd.read_csv(tmp_path / "data/triplets/manifest.csv")
    train = triplets[(triplets.split == "train") & (triplets.status == "kept")]
    assert len(plan) == 3 * len(train) and list(plan.view) == list(range(len(plan)))
    assert list(plan.triplet) == [t for t in train.triplet for _ in range(3)]
    assert {"path0", "path_t", "path1", "crop", "scale", "top", "left", "hflip", "vflip", "channel_reverse",
            "reversed", "rotation", "brightness", "contrast", "timestep"} <= set(plan.columns)
    assert (plan.brightness != 1.0).any() and set(plan.timestep) == {0.5} and set(plan.crop) == {64}
    assert plan.top.between(0, 96 - 64).all() and plan.left.between(0, 128 - 64).all()


@pytest.mark.slow  # runs a stage or command in a subprocess, or several full networks
def test_crop_is_an_upper_bound_and_each_clip_gets_the_largest_that_fits(tmp_path, params_dict):
    (tmp_path / "clips").mkdir()
    make_clip(tmp_path / "clips/small.avi", moving_texture(30))  # 128x96: cropped at 96
    make_clip(tmp_path / "clips/large.avi", moving_texture(30, height=160, width=192, seed=1))  # 160 fits 128
    params_dict["sources"]["videos"] = "clips"
    params_dict["augment"]["crop"] = 128
    write_params(tmp_path, params_dict)
    assert run_module("pipeline.extract", tmp_path).returncode == 0
    done = run_module("pipeline.augment", tmp_path)
    assert done.returncode == 0, done.stderr
    assert "small.avi is 128x96: cropped at 96x96" in done.stderr and "large.avi is" not in done.stderr
    plan = pd.read_csv(tmp_path / "data/augmented/plan.csv")
    assert set(plan[plan["clip"] == "small.avi"].crop) == {96}
    assert set(plan[plan["clip"] == "large.avi"].crop) == {128}


def test_the_old_key_crops_per_triplet_names_its_new_name(tmp_path, params_dict):
    (tmp_path / "clips").mkdir()
    params_dict["augment"]["crops_per_triplet"] = params_dict["augment"].pop("views_per_triplet")
    write_params(tmp_path, params_dict)
    assert_user_error(run_module("pipeline.augment", tmp_path), "augment.crops_per_triplet was renamed",
                      "augment.views_per_triplet")


def test_a_frame_under_64_pixels_names_the_clip(tmp_path, params_dict):
    (tmp_path / "clips").mkdir()
    make_clip(tmp_path / "clips/tiny.avi", moving_texture(30, height=48, width=96))
    params_dict["sources"]["videos"] = "clips"
    write_params(tmp_path, params_dict)
    assert run_module("pipeline.extract", tmp_path).returncode == 0
    assert_user_error(run_module("pipeline.augment", tmp_path), "tiny.avi", "96x48", "64x64")


def test_crop_for_takes_the_largest_multiple_of_32_that_fits():
    assert crop_for(144, 176, 224) == 128 and crop_for(240, 320, 224) == 224 and crop_for(360, 640, 224) == 224
    assert crop_for(272, 640, 256) == 256 and crop_for(64, 64, 224) == 64


def test_downscale_shrinks_all_frames_alike_and_never_below_the_crop():
    frames = np.stack([np.full((100, 200, 3), v, np.uint8) for v in (10, 20, 30)])
    small = downscale(frames, 0.5, 32)
    assert small.shape == (3, 50, 100, 3) and [int(f[0, 0, 0]) for f in small] == [10, 20, 30]
    assert downscale(frames, 0.1, 64).shape[1:3] == (64, 64)
    assert downscale(frames, 1.0, 64) is frames


def test_downscaled_views_are_recorded_and_a_probability_change_moves_no_other_draw(params_dict):
    frames = np.random.default_rng(3).integers(0, 256, (3, 256, 320, 3), dtype=np.uint8)
    records = {}
    for p in (0.0, 1.0):
        rng = np.random.default_rng(5)
        cfg = augment_cfg(params_dict, crop=64, downscale=p, downscale_min=0.5)
        records[p] = [augment_triplet(frames, 0.5, cfg, rng)[1] for _ in range(6)]
    assert all(r["scale"] == 1.0 for r in records[0.0])
    assert all(0.5 <= r["scale"] < 1.0 for r in records[1.0])
    flags = ("hflip", "vflip", "channel_reverse", "reversed", "rotation")
    assert [[r[k] for k in flags] for r in records[0.0]] == [[r[k] for k in flags] for r in records[1.0]]


@pytest.mark.parametrize("key, moved", [("hflip", {"hflip"}), ("vflip", {"vflip"}),
                                        ("channel_reverse", {"channel_reverse"}),
                                        ("temporal_reverse", {"reversed", "timestep"}), ("rotate", {"rotation"}),
                                        ("jitter", {"brightness", "contrast"})])
def test_a_probability_change_moves_no_other_view_of_the_plan(params_dict, key, moved):
    triplets = pd.DataFrame({"triplet": range(8), "clip": ["a"] * 4 + ["b"] * 4, "path0": "x", "path_t": "y",
                             "path1": "z", "height": [96] * 4 + [200] * 4, "width": [128] * 4 + [300] * 4,
                             "timestep": 0.25})
    plans = [plan_views(triplets, augment_cfg(params_dict, **{"crop": 64, "jitter": 0.0, key: p}), seed=3)
             for p in (0.3, 0.8)]
    kept = [c for c in plans[0].columns if c not in moved]
    pd.testing.assert_frame_equal(plans[0][kept], plans[1][kept])
    changed = plans[0][sorted(moved)] != plans[1][sorted(moved)]
    assert changed.any(axis=1).any()
    assert (changed.any(axis=1) == changed.all(axis=1)).all()  # a view whose transform fired in one plan only
