"""Stage extract: every input kind, every cleaning rule, leak-free splits and every bad input."""

from __future__ import annotations

import json
import os
import shutil
import sys
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from pipeline import extract as extract_stage
from pipeline.core.errors import EXIT_INTERRUPTED, UserError
from pipeline.core.params import Extract, build
from pipeline.footage.extraction import extract_clip, run_clip
from pipeline.footage.sources import Clip, numbered_frames
from pipeline.footage.windows import (
    Blocks,
    Cap,
    deal_blocks,
    deal_clips,
    min_clip_frames,
    segments_for,
    targets,
    timing_error,
    whole_clip,
)
from tests.helpers import (
    ROOT,
    assert_user_error,
    decode_order_stamps,
    make_clip,
    moving_texture,
    packet_positions,
    run_module,
    run_stage_main,
    stop_when,
    tree_digest,
    write_params,
)


def extract_cfg(params_dict: dict, **changes) -> Extract:
    return build(Extract, {**params_dict["extract"], **changes}, "extract.")


def run_extract(tmp_path: Path, params_dict: dict, **changes):
    params_dict["sources"]["videos"] = "clips"
    params_dict["extract"].update(changes)
    write_params(tmp_path, params_dict)
    return run_stage_main(tmp_path, extract_stage.main)


def manifest_of(tmp_path: Path) -> pd.DataFrame:
    return pd.read_csv(tmp_path / "data/triplets/manifest.csv")


def report_of(tmp_path: Path) -> dict:
    return json.loads((tmp_path / "data/triplets/report.json").read_text())


def write_frames(folder: Path, frames: list[np.ndarray], pattern: str = "frame_{:04d}.png", first: int = 1) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i, frame in enumerate(frames):
        cv2.imwrite(str(folder / pattern.format(first + i)), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))


def write_vimeo(root: Path, train: list[str], test: list[str], seed: int = 0) -> None:
    for number, entry in enumerate(train + test):
        write_frames(root / "sequences" / entry, moving_texture(3, speed=4, seed=seed + number), "im{}.png")
    (root / "tri_trainlist.txt").write_text("\n".join(train) + "\n")
    (root / "tri_testlist.txt").write_text("\n".join(test) + "\n")


# ---------------------------------------------------------------- sampling rules


def test_segments_leave_guard_frames_between_splits(params_dict):
    seg = segments_for(100, extract_cfg(params_dict, val_fraction=0.1, test_fraction=0.2, guard_frames=2))
    assert (seg.train, seg.val, seg.test[0]) == ((0, 66), (68, 78), 80)
    assert seg.split_of(64, 66) is None  # touches the guard
    assert seg.split_of(76, 77) == "val"
    assert seg.split_of(99, 101) == "test"  # frames past the container's count stay in test


def test_cap_keeps_the_first_clean_window_of_each_bin(params_dict):
    cfg = extract_cfg(params_dict, max_per_clip=10, stride=1, gap=1)
    cap = Cap(whole_clip("train"), 102, cfg, 1)  # 100 candidate windows, 10 bins of 10
    assert cap.count("train") == 100 and cap.starts["train"][0] == 0
    admitted = [start for start in range(100) if start % 10 != 0 and cap.admit("train", start)]
    assert admitted == [1, 11, 21, 31, 41, 51, 61, 71, 81, 91]  # the window at 0, 10, ... was unclean here
    assert Cap(whole_clip("train"), 12, cfg, 1).admit("train", 3)  # fewer candidates than the cap: all kept


def test_blocks_leave_their_guard_frames_to_no_split():
    blocks = Blocks(size=10, guard=2, splits=("train", "test", "val"))
    assert blocks.split_of(0, 7) == "train" and blocks.split_of(6, 8) is None  # frame 8 is a guard
    assert blocks.split_of(8, 10) is None and blocks.split_of(10, 12) == "test"  # no window straddles two blocks
    assert blocks.split_of(20, 40) == "val"  # the last block runs past the container's count
    assert blocks.ranges("test") == [(10, 18)] and blocks.ranges("val") == [(20, 2**62)]


def test_dealing_blocks_is_seeded_per_clip_and_keeps_every_split(params_dict):
    cfg = extract_cfg(params_dict, split_by="blocks", block_frames=20, val_fraction=0.1, test_fraction=0.2)
    first = deal_blocks(200, "a.mp4", cfg, seed=1)
    assert first == deal_blocks(200, "a.mp4", cfg, seed=1)  # seeded
    assert sorted(first.splits) == ["test"] * 2 + ["train"] * 7 + ["val"]
    others = {deal_blocks(200, name, cfg, seed=1).splits for name in ("b.mp4", "c.mp4", "d.mp4")}
    assert len(others | {first.splits}) > 1  # each clip gets its own shuffle
    assert sorted(deal_blocks(30, "a.mp4", cfg, seed=1).splits) == ["test", "train"]  # two blocks: no val


def test_a_clip_too_short_for_three_blocks_is_split_by_time(params_dict):
    from pipeline.footage.windows import MIN_BLOCKS, clip_splits
    cfg = extract_cfg(params_dict, split_by="blocks", block_frames=30)
    clip = "short.mp4"
    assert clip_splits(clip, None, MIN_BLOCKS * 30 - 1, cfg, seed=1) == segments_for(MIN_BLOCKS * 30 - 1, cfg)
    assert isinstance(clip_splits(clip, None, MIN_BLOCKS * 30, cfg, seed=1), Blocks)


def test_cap_over_several_ranges_spreads_over_all_of_them(params_dict):
    cfg = extract_cfg(params_dict, max_per_clip=4, stride=1)
    blocks = Blocks(size=20, guard=2, splits=("train", "test", "train", "test"))
    cap = Cap(blocks, 80, cfg, 1)
    assert cap.count("train") == 32  # two blocks of 18 usable frames: 16 windows each
    admitted = [start for start in range(80) if blocks.split_of(start, start + 2) == "train"
                and cap.admit("train", start)]
    assert admitted == [0, 8, 40, 48]


@pytest.mark.parametrize("changes", [{}, {"gap": [2, 3]}, {"stride": 7}, {"guard_frames": 0, "val_fraction": 0.0},
                                     {"split_by": "time", "test_fraction": 0.5}])
def test_min_clip_frames_is_the_fewest_that_give_a_train_and_a_test_window(params_dict, changes):
    cfg = extract_cfg(params_dict, **changes)
    needed = min_clip_frames(cfg)

    def windows(frames: int) -> tuple[int, int]:
        cap = Cap(segments_for(frames, cfg), frames, cfg, min(cfg.gap))
        return cap.count("train"), cap.count("test")

    assert min(windows(needed)) > 0 and min(windows(needed - 1)) == 0
    assert all(min(windows(n)) == 0 for n in range(2 * min(cfg.gap) + 1, needed))


def test_targets_inside_a_gap(params_dict):
    assert targets(extract_cfg(params_dict, timesteps="middle"), 2) == [(2, 0.5)]
    assert targets(extract_cfg(params_dict, timesteps="all"), 2) == [(1, 0.25), (2, 0.5), (3, 0.75)]


def test_dealing_whole_clips_is_seeded_and_leaves_training_clips(params_dict):
    cfg = extract_cfg(params_dict, split_by="clip", val_fraction=0.2, test_fraction=0.2)
    names = [f"clip{i}.mp4" for i in range(10)]
    dealt = deal_clips(names, cfg, seed=1)
    assert dealt == deal_clips(list(reversed(names)), cfg, seed=1)
    assert sorted(dealt.values()).count("test") == 2 and sorted(dealt.values()).count("val") == 2
    assert dealt != deal_clips(names, cfg, seed=2)
    with pytest.raises(UserError, match="leaves none for training"):
        deal_clips(names[:1], cfg, seed=1)


def test_image_frames_sort_naturally_and_must_be_consecutive(tmp_path):
    files = [tmp_path / f"f{n}.png" for n in (10, 9, 11, 8)]
    assert [p.name for p in numbered_frames(tmp_path, files)] == ["f8.png", "f9.png", "f10.png", "f11.png"]
    with pytest.raises(UserError, match=r"jumps from f9.png to f11.png \(1 frame"):
        numbered_frames(tmp_path, [tmp_path / "f9.png", tmp_path / "f11.png"])
    with pytest.raises(UserError, match="more than one pattern"):
        numbered_frames(tmp_path, [tmp_path / "a1.png", tmp_path / "b2.png"])
    with pytest.raises(UserError, match="appears twice"):
        numbered_frames(tmp_path, [tmp_path / "f01.png", tmp_path / "f1.png"])


# ---------------------------------------------------------------- real and generated footage


@pytest.mark.parametrize("split_by", ["blocks", "time"])
def test_extract_demo_splits_are_leak_free(tmp_path, params_dict, demo_clips, split_by):
    shutil.copytree(demo_clips, tmp_path / "data/demo")
    params_dict["extract"].update(max_per_clip=3, split_by=split_by)
    write_params(tmp_path, params_dict)
    done = run_module("pipeline.extract", tmp_path)
    assert done.returncode == 0, done.stderr
    manifest = manifest_of(tmp_path)
    kept = manifest[manifest.status == "kept"]
    assert set(kept.split) == {"train", "val", "test"}
    assert (kept.groupby(["clip", "split"]).size() <= 3).all()
    guard = params_dict["extract"]["guard_frames"]
    for clip, rows in kept.groupby("clip"):
        windows = list(zip(rows.split, rows.frame0, rows.frame1, strict=True))
        for split_a, first_a, last_a in windows:  # windows of two splits never come within guard frames
            for split_b, first_b, _ in windows:
                if split_a != split_b and first_b > first_a:
                    assert last_a + guard < first_b, (clip, split_a, last_a, split_b, first_b)
        if split_by == "time":  # one segment each, in order
            spans = {s: (r.frame0.min(), r.frame1.max()) for s, r in rows.groupby("split")}
            assert spans["train"][1] + guard < spans["val"][0] and spans["val"][1] + guard < spans["test"][0]
    for column in ("path0", "path_t", "path1"):
        assert all((tmp_path / "data/triplets" / p).is_file() for p in kept[column])
    # bikes.mp4 has hard cuts, bigbuckbunny.mp4 repeats frames: both cleaning rules must fire on the real clips
    assert {"scene_cut", "duplicate_frame"} <= set(manifest.status)
    assert [c["frames"] for c in report_of(tmp_path)["clips"]] == [132, 250]


def test_each_cleaning_rule_drops_its_known_defect(tmp_path, params_dict):
    frames = moving_texture(60, speed=1)
    frames[10] = frames[9].copy()  # a duplicated frame
    noise = np.random.default_rng(0).integers(0, 2, (6, *frames[30].shape), dtype=np.uint8)
    frames[30:36] = list(frames[30] + noise)  # a near-static run: sensor noise, no motion
    frames[45:] = moving_texture(15, speed=1, seed=5)  # a hard cut between frames 44 and 45
    write_frames(tmp_path / "clips/synthetic", frames)  # lossless, so the scores are the designed ones
    done = run_extract(tmp_path, params_dict, max_per_clip=0, val_fraction=0.0, test_fraction=0.2, guard_frames=1)
    assert done.returncode == 0, done.stderr
    status = manifest_of(tmp_path).set_index("frame0")["status"]
    assert status[8] == status[9] == "duplicate_frame"
    assert status[30] == status[31] == status[33] == "static"  # I0 and I1 inside the still run
    assert status[43] == status[44] == "scene_cut"
    assert status[0] == status[20] == "kept"
    report = report_of(tmp_path)
    assert {"duplicate_frame", "static", "scene_cut"} <= set(report["dropped"])


def test_image_folders_and_vimeo_and_video_in_one_source(tmp_path, params_dict):
    write_frames(tmp_path / "clips/shot_a", moving_texture(30, seed=1), "frame_{}.png")  # unpadded numbers
    write_frames(tmp_path / "clips/shot_b", moving_texture(30, seed=2), "{:05d}.jpg", first=0)
    make_clip(tmp_path / "clips/video.avi", moving_texture(30, seed=3))
    write_vimeo(tmp_path / "clips/vimeo", [f"0000{g}/000{e}" for g in (1, 2, 3, 4) for e in (1, 2)],
                ["00005/0001", "00005/0002"])
    done = run_extract(tmp_path, params_dict, max_per_clip=0, val_fraction=0.25)
    assert done.returncode == 0, done.stderr
    manifest = manifest_of(tmp_path)
    kinds = {c["clip"]: c["kind"] for c in report_of(tmp_path)["clips"]}
    assert kinds == {"shot_a": "images", "shot_b": "images", "video.avi": "video", "vimeo": "vimeo"}
    # natural order: frame 10 of shot_a is frame_11.png, stored as the same pixels (PNG sources are copied)
    row = manifest[(manifest["clip"] == "shot_a") & (manifest.frame0 == 10)].iloc[0]
    stored = (tmp_path / "data/triplets" / row.path0).read_bytes()
    assert stored == (tmp_path / "clips/shot_a/frame_11.png").read_bytes()
    vimeo = manifest[manifest["clip"].str.startswith("vimeo/")]
    assert set(vimeo[vimeo["clip"].str.startswith("vimeo/00005")].split) == {"test"}
    assert (vimeo[vimeo.split == "test"].status == "kept").all()  # the official test list is kept whole
    groups = vimeo[vimeo.split != "test"].groupby(vimeo["clip"].str.split("/").str[1])["split"].nunique()
    assert (groups == 1).all() and "val" in set(vimeo.split)  # val holds whole groups of the train list


def test_timing_error_reads_stamps_in_frame_periods(params_dict):
    middle = extract_cfg(params_dict, timesteps="middle")
    assert timing_error([0, 1, 2], Fraction(1), middle, 1) == 0
    assert timing_error([0, 6, 13], Fraction(1), middle, 1) == pytest.approx(0.5 - 6 / 13)  # 6 and 7 periods: 0.46
    assert timing_error([0, 5, 10], Fraction(1), middle, 1) == 0  # far apart, but the middle frame is at t = 0.5
    # 120 fps in Matroska's milliseconds: stamps rounded to 8 or 9 ms apart are whole periods
    assert timing_error([0, 8, 17], Fraction(120, 1000), middle, 1) == 0
    assert timing_error([0, 1, 1], Fraction(1), middle, 1) == 0.5
    every = extract_cfg(params_dict, timesteps="all")
    assert timing_error([0, 1, 2, 4, 5], Fraction(1), every, 2) == pytest.approx(0.1)  # 1/5, 2/5, 4/5 for 1/4, 2/4, 3/4


def clip_rows(tmp_path: Path, params_dict: dict, name: str, **changes) -> tuple[pd.DataFrame, dict]:
    """``extract_clip`` on ``name`` with the whole clip in train: the manifest rows by I0 and the clip's summary."""
    cfg = extract_cfg(params_dict, max_per_clip=0, **changes)
    result = extract_clip(Clip(name, tmp_path / name), "train", cfg, tmp_path / "out")
    return pd.DataFrame(result["rows"]).set_index("frame0"), result["clips"][0]


def test_frames_far_apart_in_time_are_not_used_as_neighbours(tmp_path, params_dict):
    pts = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 11, 12, 14, 15, 16, 17, 18, 19, 21, 23, 25]  # in 1/15 s, as an AVI stores
    make_clip(tmp_path / "dropped.avi", moving_texture(len(pts), height=48, width=64), fps=15, pts=pts,
              time_base=Fraction(1, 15))
    rows, summary = clip_rows(tmp_path, params_dict, "dropped.avi")
    uneven = [8, 9, 10, 11, 16]  # I0, It, I1 at 8 9 11, 9 11 12, 11 12 14, 12 14 15 and 18 19 21 fifteenths
    assert list(rows.index[rows.status == "uneven_timing"]) == uneven
    assert (rows.drop(uneven).status == "kept").all()  # 0 1 2, ..., and 19 21 23, 21 23 25: t = 0.5
    assert (rows.timestep == 0.5).all()
    assert summary["dropped"] == {"uneven_timing": 5}
    stored = sorted(int(p.stem) for p in (tmp_path / "out/frames/dropped.avi").glob("*.png"))
    assert 10 not in stored  # picture 10 (at 11/15 s) is in no kept triplet


def test_the_tolerance_decides_how_uneven_a_triplet_may_be(tmp_path, params_dict):
    pts = [0, 30, 62, 92, 122]  # in 1/900 s at 30 fps: the third frame 2/900 s late
    make_clip(tmp_path / "phone.mp4", moving_texture(5, height=48, width=64), codec="libx264", fps=30, pts=pts,
              time_base=Fraction(1, 900))
    rows, summary = clip_rows(tmp_path, params_dict, "phone.mp4")  # t = 30/62, 32/62, 30/60: off by 0.016 at most
    assert list(rows.status) == ["kept"] * 3 and summary["dropped"] == {}
    rows, summary = clip_rows(tmp_path, params_dict, "phone.mp4", timestep_tolerance=0.01)
    assert list(rows.status) == ["uneven_timing", "uneven_timing", "kept"]
    assert summary["dropped"] == {"uneven_timing": 2}


def test_matroska_milliseconds_of_120_fps_are_even(tmp_path, params_dict):
    pts = [round(k * 1000 / 120) for k in range(12)]  # 0, 8, 17, 25, 33, ... ms
    make_clip(tmp_path / "slowmo.mkv", moving_texture(12, height=48, width=64), fps=120, pts=pts,
              time_base=Fraction(1, 1000))
    rows, summary = clip_rows(tmp_path, params_dict, "slowmo.mkv", gap=[1, 2], timesteps="all")
    assert set(rows.status) == {"kept"} and summary["dropped"] == {}


def test_b_frames_stamped_in_decode_order_are_evenly_spaced_triplets(tmp_path, params_dict):
    make_clip(tmp_path / "whole.mp4", moving_texture(20, height=48, width=64), codec="libx264")
    decode_order_stamps(tmp_path / "whole.mp4", tmp_path / "camera.mp4", period=512)
    rows, _ = clip_rows(tmp_path, params_dict, "camera.mp4")
    assert len(rows) == 18 and set(rows.status) == {"kept"}


def test_all_timesteps_store_each_frame_once(tmp_path, params_dict):
    (tmp_path / "clips").mkdir()
    make_clip(tmp_path / "clips/a.avi", moving_texture(40, speed=2))
    done = run_extract(tmp_path, params_dict, gap=2, timesteps="all", max_per_clip=0)
    assert done.returncode == 0, done.stderr
    kept = manifest_of(tmp_path).query("status == 'kept'")
    first = kept[kept.frame0 == 0]
    assert list(first.frame_t) == [1, 2, 3] and list(first.timestep) == [0.25, 0.5, 0.75]
    assert (first.frame1 == 4).all()
    used = set(kept.path0) | set(kept.path_t) | set(kept.path1)
    assert sorted(p.relative_to(tmp_path / "data/triplets").as_posix()
                  for p in (tmp_path / "data/triplets/frames").rglob("*.png")) == sorted(used)


def test_a_list_of_gaps_gives_windows_of_each_gap_with_the_gap_recorded(tmp_path, params_dict):
    (tmp_path / "clips").mkdir()
    make_clip(tmp_path / "clips/a.avi", moving_texture(40, speed=2))
    done = run_extract(tmp_path, params_dict, gap=[1, 2], max_per_clip=5)
    assert done.returncode == 0, done.stderr
    manifest = manifest_of(tmp_path)
    kept = manifest.query("status == 'kept'")
    assert set(kept.gap) == {1, 2}
    assert ((kept.frame1 - kept.frame0) == 2 * kept.gap).all() and ((kept.frame_t - kept.frame0) == kept.gap).all()
    per_split = kept.groupby(["gap", "split"]).size()
    assert (per_split <= 5).all() and per_split.loc[(2, "train")] == 5  # the cap holds for each gap on its own
    assert (manifest[manifest.gap == 2].motion.mean() > manifest[manifest.gap == 1].motion.mean())


def test_split_by_blocks_keeps_every_window_inside_one_block(tmp_path, params_dict):
    (tmp_path / "clips").mkdir()
    make_clip(tmp_path / "clips/a.avi", moving_texture(100, speed=2))
    done = run_extract(tmp_path, params_dict, split_by="blocks", block_frames=20, guard_frames=2, gap=[1, 2],
                       max_per_clip=0)
    assert done.returncode == 0, done.stderr
    kept = manifest_of(tmp_path).query("status == 'kept'")
    assert set(kept.split) == {"train", "val", "test"}
    assert (kept.frame0 // 20 == kept.frame1 // 20).all()  # no triplet straddles two blocks
    assert (kept[kept.frame0 < 80].frame1 % 20 < 18).all()  # nor touches a guard frame (the last block has none)
    assert (kept.groupby(kept.frame0 // 20).split.nunique() == 1).all()  # a block belongs to one split


@pytest.mark.slow  # runs a stage or command in a subprocess, or several full networks
def test_split_by_clip_keeps_each_clip_in_one_split_and_repeats_byte_for_byte(tmp_path, params_dict):
    (tmp_path / "clips").mkdir()
    for i in range(5):
        make_clip(tmp_path / f"clips/c{i}.avi", moving_texture(20, seed=i))
    done = run_extract(tmp_path, params_dict, split_by="clip", val_fraction=0.2, test_fraction=0.2, max_per_clip=0)
    assert done.returncode == 0, done.stderr
    kept = manifest_of(tmp_path).query("status == 'kept'")
    assert (kept.groupby("clip").split.nunique() == 1).all()
    assert sorted(kept.groupby("clip").split.first()) == ["test", "train", "train", "train", "val"]
    first = tree_digest(tmp_path / "data/triplets")
    assert run_module("pipeline.extract", tmp_path).returncode == 0
    assert tree_digest(tmp_path / "data/triplets") == first


@pytest.mark.slow  # extracts several clips in worker processes
@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="extract runs its clips in workers only on 2+ cores")
def test_ctrl_c_while_workers_extract_is_one_line_and_leaves_nothing(tmp_path, params_dict):
    """Ctrl-C in a terminal reaches every process of the group: the workers leave without a word (before: a
    KeyboardInterrupt traceback from each), the main process says it was interrupted, and no output is left."""
    (tmp_path / "clips").mkdir()
    for i in range(4):
        make_clip(tmp_path / f"clips/c{i}.avi", moving_texture(150, 240, 320, seed=i))
    params_dict["sources"]["videos"] = "clips"
    write_params(tmp_path, params_dict)
    code, err = stop_when(tmp_path, [sys.executable, "-m", "pipeline.extract"],  # once a worker has written frames
                          lambda _: any(p.is_file() for p in (tmp_path / "data").glob(".triplets.*.tmp/**/*")),
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, wait_s=120)
    assert code == EXIT_INTERRUPTED, err[-2000:]
    assert "Traceback" not in err, err[-4000:]
    assert err.strip().splitlines()[-1].startswith("interrupted")
    assert not (tmp_path / "data/triplets").exists() and not list((tmp_path / "data").glob(".triplets.*"))


# ---------------------------------------------------------------- bad input


def corrupt_video(clips: Path) -> str:
    (clips / "broken.mp4").write_bytes(b"\x00" * 1000)
    return "broken.mp4: not a video: it is data FFmpeg does not recognise", "broken.mp4"


def text_as_video(clips: Path) -> str:
    (clips / "notes.mp4").write_text("shot list: beach, harbour\n")
    return "notes.mp4: not a video: it is a text file", "notes.mp4"


def png_as_video(clips: Path) -> str:
    cv2.imwrite(str(clips / "img.mp4.png"), moving_texture(1)[0])
    (clips / "img.mp4.png").rename(clips / "img.mp4")
    return "img.mp4: not a video: it is a PNG image", "img.mp4"


def empty_video(clips: Path) -> str:
    (clips / "empty.mov").write_bytes(b"")
    return "empty.mov: empty file (0 bytes)", "empty.mov"


def truncated_video(clips: Path) -> str:
    make_clip(clips / "whole.mp4", moving_texture(30), codec="libx264", options={"movflags": "faststart"})
    data = (clips / "whole.mp4").read_bytes()
    (clips / "half.mp4").write_bytes(data[:packet_positions(clips / "whole.mp4")[15]])
    (clips / "whole.mp4").unlink()
    return "half.mp4: truncated or damaged: decoded 15 of 30 frames", "half.mp4"


def short_clip(clips: Path) -> str:
    make_clip(clips / "short.avi", moving_texture(2))
    return "short.avi: 2 frames, a triplet with gap 1 needs at least 3", "short.avi"


def mixed_sizes(clips: Path) -> str:
    write_frames(clips / "mixed", moving_texture(6))
    cv2.imwrite(str(clips / "mixed/frame_0004.png"), np.zeros((50, 60, 3), np.uint8))
    return "mixed/frame_0004.png: frame 3 is 60x50, earlier frames 128x96", "mixed"


def numbering_gap(clips: Path) -> str:
    write_frames(clips / "gappy", moving_texture(6))
    (clips / "gappy/frame_0003.png").unlink()
    return "gappy: frame numbering jumps from frame_0002.png to frame_0004.png", "gappy"


def vimeo_missing_file(clips: Path) -> str:
    write_vimeo(clips / "vimeo", ["00001/0001"], ["00002/0001"])
    (clips / "vimeo/sequences/00001/0001/im2.png").unlink()
    return "tri_trainlist.txt:1: 00001/0001: ", "vimeo/00001/0001"


BAD_INPUTS = [corrupt_video, text_as_video, png_as_video, empty_video, truncated_video, short_clip, mixed_sizes,
              numbering_gap, vimeo_missing_file]


@pytest.mark.slow  # 9 extracts of two clips each, in worker processes
@pytest.mark.parametrize("make_bad", BAD_INPUTS, ids=lambda f: f.__name__)
def test_bad_input_stops_with_one_line_and_keeps_old_outputs(tmp_path, params_dict, make_bad):
    (tmp_path / "clips").mkdir()
    make_clip(tmp_path / "clips/good.avi", moving_texture(40))
    message, _ = make_bad(tmp_path / "clips")
    old = tmp_path / "data/triplets/manifest.csv"
    old.parent.mkdir(parents=True)
    old.write_text("previous output")
    assert_user_error(run_extract(tmp_path, params_dict), message)
    assert old.read_text() == "previous output"


@pytest.mark.slow  # 9 extracts of two clips each, in worker processes
@pytest.mark.parametrize("make_bad", BAD_INPUTS, ids=lambda f: f.__name__)
def test_skip_unreadable_skips_and_reports_the_bad_input(tmp_path, params_dict, make_bad):
    (tmp_path / "clips").mkdir()
    make_clip(tmp_path / "clips/good.avi", moving_texture(40))
    message, name = make_bad(tmp_path / "clips")
    done = run_extract(tmp_path, params_dict, skip_unreadable=True)
    assert done.returncode == 0, done.stderr
    skipped = report_of(tmp_path)["skipped"]
    assert len(skipped) == 1 and message in skipped[0]["problem"]
    manifest = manifest_of(tmp_path)
    assert "good.avi" in set(manifest.query("status == 'kept'")["clip"]) and name not in set(manifest["clip"])
    assert not (tmp_path / "data/triplets/frames" / name).exists()


def test_a_truncated_video_stops_extract_or_is_a_reported_skip(tmp_path, params_dict):
    (tmp_path / "clips").mkdir()
    message, name = truncated_video(tmp_path / "clips")
    clip, out = Clip(name, tmp_path / "clips" / name), tmp_path / "out"
    with pytest.raises(UserError) as caught:
        run_clip(clip, None, extract_cfg(params_dict), 1, 0, out)
    assert str(caught.value) == (f"{clip.path}: {message.split(': ', 1)[1]} (they end at 0.68 s, "
                                 "the container declares 1.20 s)")
    skipped = run_clip(clip, None, extract_cfg(params_dict, skip_unreadable=True), 1, 0, out)
    assert skipped == {"rows": [], "clips": [], "skipped": [{"file": str(clip.path), "problem": str(caught.value)}]}
    assert not (out / "frames" / name).exists()


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads every file whatever its permissions")
def test_unreadable_file_is_named(tmp_path, params_dict):
    (tmp_path / "clips").mkdir()
    make_clip(tmp_path / "clips/locked.avi", moving_texture(40))
    (tmp_path / "clips/locked.avi").chmod(0)
    assert_user_error(run_extract(tmp_path, params_dict), "locked.avi: not readable")


@pytest.mark.slow  # extracts two clips in worker processes
@pytest.mark.parametrize("skip", [False, True])
def test_footage_without_a_usable_triplet_is_always_an_error(tmp_path, params_dict, skip):
    (tmp_path / "clips").mkdir()
    make_clip(tmp_path / "clips/still.avi", [moving_texture(1)[0]] * 30)
    (tmp_path / "clips/broken.mp4").write_bytes(b"\x00" * 1000)
    done = run_extract(tmp_path, params_dict, skip_unreadable=skip)
    assert_user_error(done, "clips: no usable train triplet" if skip else "broken.mp4")


def test_footage_too_short_for_a_train_and_a_test_triplet_says_so(tmp_path, params_dict):
    """Before: "add footage or relax the extract thresholds", which no threshold could mend."""
    (tmp_path / "clips").mkdir()
    make_clip(tmp_path / "clips/four.avi", moving_texture(4, speed=4))
    assert_user_error(run_extract(tmp_path, params_dict),
                      "clips: the footage is too short: four.avi has 4 frames, and a clip needs at least 13 for a "
                      "train and a test triplet (extract.gap 1, test_fraction 0.2, val_fraction 0.1, guard_frames 2); "
                      "add longer footage")
    make_clip(tmp_path / "clips/eight.avi", moving_texture(8, speed=4))
    assert_user_error(run_extract(tmp_path, params_dict), "its 2 clips have at most 8 frames (eight.avi)")


def test_a_folder_without_footage_is_an_error(tmp_path, params_dict):
    (tmp_path / "clips").mkdir()
    (tmp_path / "clips/notes.txt").write_text("no clips here")
    assert_user_error(run_extract(tmp_path, params_dict), "sources.videos clips: no footage found")
