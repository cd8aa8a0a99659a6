"""Stage augment: transform identities, identical transforms on the three frames, seeded byte-identical output."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pipeline.augment import (augment_triplet, channel_reverse, crop_for, downscale, hflip, jitter, rotate,
                              temporal_reverse, vflip)
from pipeline.core.params import Augment, build
from tests.helpers import assert_user_error, make_clip, moving_texture, run_module, tree_digest, write_params

FRAMES = np.random.default_rng(0).integers(0, 256, (3, 8, 10, 3), dtype=np.uint8)


def augment_cfg(params_dict: dict, **changes) -> Augment:
    return build(Augment, {**params_dict["augment"], **changes}, "augment.")


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
def test_augment_is_byte_identical_for_the_same_seed(tmp_path, params_dict):
    (tmp_path / "clips").mkdir()
    make_clip(tmp_path / "clips/a.avi", moving_texture(30))
    params_dict["sources"]["videos"] = "clips"
    params_dict["augment"].update(crop=64, jitter=0.5)
    write_params(tmp_path, params_dict)
    assert run_module("pipeline.extract", tmp_path).returncode == 0
    digests = []
    for _ in range(2):
        done = run_module("pipeline.augment", tmp_path)
        assert done.returncode == 0, done.stderr
        digests.append(tree_digest(tmp_path / "data/augmented"))
    assert digests[0] == digests[1]
    samples = np.load(tmp_path / "data/augmented/samples_64.npy")
    manifest = pd.read_csv(tmp_path / "data/augmented/manifest.csv")
    assert samples.shape[1:] == (3, 64, 64, 3) and len(manifest) == len(samples)
    assert {"hflip", "vflip", "channel_reverse", "reversed", "rotation", "brightness", "contrast",
            "timestep"} <= set(manifest.columns)
    assert (manifest.brightness != 1.0).any() and set(manifest.timestep) == {0.5}


@pytest.mark.slow  # runs a stage or command in a subprocess, or several full networks
def test_crop_is_an_upper_bound_and_clips_of_two_sizes_give_two_arrays(tmp_path, params_dict):
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
    manifest = pd.read_csv(tmp_path / "data/augmented/manifest.csv")
    assert set(manifest[manifest["clip"] == "small.avi"].crop) == {96}
    assert set(manifest[manifest["clip"] == "large.avi"].crop) == {128}
    for side in (96, 128):
        stored = np.load(tmp_path / f"data/augmented/samples_{side}.npy")
        assert stored.shape == ((manifest.crop == side).sum(), 3, side, side, 3)


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
