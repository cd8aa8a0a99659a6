"""Each stage on real or small generated footage, run as dvc.yaml runs it (``python -m pipeline.<stage>``)."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
import yaml

from pipeline.augment import augment_triplet, hflip, temporal_reverse, vflip
from pipeline.errors import EXIT_USER_ERROR
from pipeline.extract import Segments, segments_for
from pipeline.params import Augment, Extract, build
from tests.helpers import run_module


def write_params(workdir: Path, params: dict) -> None:
    (workdir / "params.yaml").write_text(yaml.safe_dump(params))


def make_clip(path: Path, frames: list[np.ndarray], fps: float = 25.0) -> None:
    """A lossless-enough MJPG AVI of RGB ``frames``."""
    height, width = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (width, height))
    for frame in frames:
        writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    writer.release()


def moving_texture(count: int, height: int = 96, width: int = 128, speed: int = 3, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    texture = cv2.GaussianBlur(rng.random((height, width + speed * count, 3)).astype(np.float32), (0, 0), 3)
    texture = ((texture - texture.min()) / (texture.max() - texture.min()) * 255).astype(np.uint8)
    return [np.ascontiguousarray(texture[:, i * speed:i * speed + width]) for i in range(count)]


def assert_user_error(done, *fragments: str) -> None:
    assert done.returncode == EXIT_USER_ERROR, done.stderr
    assert "Traceback" not in done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ")
    for fragment in fragments:
        assert fragment in last


def tree_digest(folder: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(path.relative_to(folder).as_posix().encode() + path.read_bytes())
    return digest.hexdigest()


# ---------------------------------------------------------------- fetch


def test_fetch_own_checkpoint_and_videos(tmp_path, params_dict, official_hdv3):
    (tmp_path / "raw").mkdir()
    shutil.copy(official_hdv3, tmp_path / "mine.pkl")
    params_dict["sources"] = {"videos": "raw", "checkpoint": "mine.pkl"}
    write_params(tmp_path, params_dict)
    done = run_module("pipeline.fetch", tmp_path)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "data/demo").is_dir() and not any((tmp_path / "data/demo").iterdir())
    from pipeline.models import read_state_dict
    assert read_state_dict(tmp_path / "models/pretrained/flownet.pkl").keys() == read_state_dict(official_hdv3).keys()


@pytest.mark.parametrize("sources, fragments", [
    ({"videos": "nowhere", "checkpoint": "rife-hdv3"}, ["sources.videos nowhere: no such folder"]),
    ({"videos": "raw", "checkpoint": "missing.pkl"}, ["sources.checkpoint missing.pkl: no such file", "rife-hdv3"]),
    ({"videos": "raw", "checkpoint": "params.yaml"}, ["checkpoint params.yaml: not a readable PyTorch file"]),
])
def test_fetch_bad_sources_leave_outputs_untouched(tmp_path, params_dict, sources, fragments):
    (tmp_path / "raw").mkdir()
    existing = tmp_path / "models/pretrained/flownet.pkl"
    existing.parent.mkdir(parents=True)
    existing.write_bytes(b"previous good output")
    params_dict["sources"] = sources
    write_params(tmp_path, params_dict)
    assert_user_error(run_module("pipeline.fetch", tmp_path), *fragments)
    assert existing.read_bytes() == b"previous good output"


def test_bad_params_stop_a_stage_with_one_line(tmp_path, params_dict):
    params_dict["train"]["batch_size"] = 0
    write_params(tmp_path, params_dict)
    assert_user_error(run_module("pipeline.fetch", tmp_path), "train.batch_size = 0", "integer >= 1")


# ---------------------------------------------------------------- extract


def test_segments_leave_guard_frames_between_splits(params_dict):
    cfg = build(Extract, {**params_dict["extract"], "val_fraction": 0.1, "test_fraction": 0.2, "guard_frames": 2},
                "extract.")
    seg = segments_for(100, cfg)
    assert seg == Segments(train=(0, 66), val=(68, 78), test=(80, 100))
    assert seg.split_of(64, 66) is None  # touches the guard
    assert seg.split_of(76, 77) == "val"


def test_extract_demo_splits_are_leak_free(tmp_path, params_dict, demo_clips):
    shutil.copytree(demo_clips, tmp_path / "data/demo")
    params_dict["extract"]["max_per_clip"] = 3
    write_params(tmp_path, params_dict)
    done = run_module("pipeline.extract", tmp_path)
    assert done.returncode == 0, done.stderr
    manifest = pd.read_csv(tmp_path / "data/triplets/manifest.csv")
    kept = manifest[manifest.status == "kept"]
    assert set(kept.split) == {"train", "val", "test"}
    assert (kept.groupby(["clip", "split"]).size() <= 3).all()
    guard = params_dict["extract"]["guard_frames"]
    for clip, rows in kept.groupby("clip"):
        spans = {s: (r.frame0.min(), r.frame1.max()) for s, r in rows.groupby("split")}
        assert spans["train"][1] + guard < spans["val"][0] and spans["val"][1] + guard < spans["test"][0]
    for column in ("path0", "path_t", "path1"):
        assert all((tmp_path / "data/triplets" / p).is_file() for p in kept[column])
    # bikes.mp4 has hard cuts, bigbuckbunny.mp4 repeats frames: both cleaning rules must fire on the real clips
    assert {"scene_cut", "duplicate_frame"} <= set(manifest.status)


def test_extract_drops_a_known_cut_and_duplicate(tmp_path, params_dict):
    frames = moving_texture(40)
    frames[10] = frames[9].copy()  # a duplicated frame
    other = moving_texture(20, seed=5)
    frames[25:] = other[:15]  # a hard cut between frames 24 and 25
    (tmp_path / "clips").mkdir()
    make_clip(tmp_path / "clips/synthetic.avi", frames)
    params_dict["sources"]["videos"] = "clips"
    params_dict["extract"].update(max_per_clip=0, val_fraction=0.0, test_fraction=0.25, guard_frames=1)
    write_params(tmp_path, params_dict)
    done = run_module("pipeline.extract", tmp_path)
    assert done.returncode == 0, done.stderr
    manifest = pd.read_csv(tmp_path / "data/triplets/manifest.csv").set_index("frame0")
    assert manifest.loc[23, "status"] == "scene_cut" and manifest.loc[24, "status"] == "scene_cut"
    assert manifest.loc[8, "status"] == "duplicate_frame" and manifest.loc[9, "status"] == "duplicate_frame"
    assert manifest.loc[0, "status"] == "kept"


def test_extract_without_usable_footage_is_an_error(tmp_path, params_dict):
    (tmp_path / "clips").mkdir()
    make_clip(tmp_path / "clips/still.avi", [moving_texture(1)[0]] * 30)
    params_dict["sources"]["videos"] = "clips"
    write_params(tmp_path, params_dict)
    (tmp_path / "data/triplets").mkdir(parents=True)
    (tmp_path / "data/triplets/manifest.csv").write_text("old")
    assert_user_error(run_module("pipeline.extract", tmp_path), "clips: no usable train triplet")
    assert (tmp_path / "data/triplets/manifest.csv").read_text() == "old"


def test_extract_corrupt_video_names_the_file(tmp_path, params_dict):
    (tmp_path / "clips").mkdir()
    (tmp_path / "clips/broken.mp4").write_bytes(b"\x00" * 1000)
    params_dict["sources"]["videos"] = "clips"
    write_params(tmp_path, params_dict)
    assert_user_error(run_module("pipeline.extract", tmp_path), "broken.mp4")


# ---------------------------------------------------------------- augment


def test_flips_and_reversal_are_involutions():
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (3, 8, 10, 3), dtype=np.uint8)
    assert np.array_equal(hflip(hflip(frames)), frames)
    assert np.array_equal(vflip(vflip(frames)), frames)
    reversed_frames, t = temporal_reverse(frames, 0.25)
    assert t == 0.75 and np.array_equal(reversed_frames[0], frames[2]) and np.array_equal(reversed_frames[2], frames[0])


def test_augmentation_applies_the_same_transform_to_all_frames(params_dict):
    cfg = build(Augment, {**params_dict["augment"], "crop": 32, "hflip": 1.0, "vflip": 1.0,
                          "temporal_reverse": 1.0}, "augment.")
    base = np.random.default_rng(1).integers(0, 256, (40, 50, 3), dtype=np.uint8)
    frames = np.stack([base, base, base])
    sample, record = augment_triplet(frames, 0.5, cfg, np.random.default_rng(2))
    top, left = record["top"], record["left"]
    expected = base[top:top + 32, left:left + 32][::-1, ::-1]
    assert all(np.array_equal(sample[i], expected) for i in range(3))
    assert record["hflip"] and record["vflip"] and record["reversed"] and record["timestep"] == 0.5


def test_augment_is_byte_identical_for_the_same_seed(tmp_path, params_dict):
    frames = moving_texture(30)
    (tmp_path / "clips").mkdir()
    make_clip(tmp_path / "clips/a.avi", frames)
    params_dict["sources"]["videos"] = "clips"
    params_dict["augment"]["crop"] = 64
    write_params(tmp_path, params_dict)
    assert run_module("pipeline.extract", tmp_path).returncode == 0
    digests = []
    for _ in range(2):
        done = run_module("pipeline.augment", tmp_path)
        assert done.returncode == 0, done.stderr
        digests.append(tree_digest(tmp_path / "data/augmented"))
    assert digests[0] == digests[1]
    samples = np.load(tmp_path / "data/augmented/samples.npy")
    assert samples.shape[1:] == (3, 64, 64, 3)


def test_crop_larger_than_the_footage_names_the_clip(tmp_path, params_dict):
    (tmp_path / "clips").mkdir()
    make_clip(tmp_path / "clips/small.avi", moving_texture(30))
    params_dict["sources"]["videos"] = "clips"
    params_dict["augment"]["crop"] = 256
    write_params(tmp_path, params_dict)
    assert run_module("pipeline.extract", tmp_path).returncode == 0
    assert_user_error(run_module("pipeline.augment", tmp_path), "augment.crop = 256", "small.avi", "128x96")
