"""``python -m pipeline.interpolate``: a checkpoint applied to a video, run as a user runs it."""

from __future__ import annotations

import dataclasses
import os
from fractions import Fraction
from itertools import pairwise
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
import torch

from pipeline import interpolate as interpolate_cli
from pipeline.core.errors import UserError
from pipeline.footage.encoder import CODECS, MASTER, VideoWriter
from pipeline.footage.interpolation import interpolate_video
from pipeline.footage.video import decode, probe
from pipeline.models import create_model, expected_shapes, save_checkpoint
from tests.golden import seeded_state
from tests.helpers import (
    assert_user_error,
    decode_order_stamps,
    make_clip,
    moving_texture,
    packet_positions,
    run_main,
    run_module,
    tone_packets,
)

FRAMES = 5
CUT = ("--cut-threshold", "0.1")  # extract.cut_threshold's default; the test folder has no params.yaml


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    root = tmp_path_factory.mktemp("interp")
    make_clip(root / "clip.avi", moving_texture(FRAMES, height=72, width=100), fps=24.0)
    for arch in ("4.18", "hdv3"):
        model = create_model(arch)
        model.load_state_dict(seeded_state(expected_shapes(arch)))
        save_checkpoint(model, root / f"{arch}.pkl")
    return root


def interpolate(work: Path, *args: str):
    return run_module("pipeline.interpolate", work, *args, *CUT)


def images(path: Path) -> list[np.ndarray]:
    return [frame.image for frame in decode(path)]


def times(path: Path) -> list[float]:
    with av.open(str(path)) as container:
        return [float(frame.time) for frame in container.decode(video=0)]


@pytest.mark.slow
def test_three_times_the_frames_at_three_times_the_rate(work):
    done = interpolate(work, "clip.avi", "out.mp4", "--checkpoint", "4.18.pkl", "--multi", "3")
    assert done.returncode == 0, done.stderr
    assert "RIFE 4.18" in done.stderr and "interpolate" in done.stderr  # the log line and the progress bar
    assert "0 scene cut(s)" in done.stderr
    info = probe(work / "out.mp4")
    assert (info.rate, info.frames, info.height, info.width) == (72, (FRAMES - 1) * 3 + 1, 72, 100)
    assert info.pix_fmt == "yuv420p"  # the default: what browsers, phones and QuickTime play


@pytest.mark.slow
def test_png_frames_keep_the_originals_and_put_the_predictions_between(work):
    done = interpolate(work, "clip.avi", "frames", "--checkpoint", "hdv3.pkl", "--multi", "4")
    assert done.returncode == 0, done.stderr
    written = sorted((work / "frames").glob("*.png"))
    assert len(written) == (FRAMES - 1) * 4 + 1
    originals = moving_texture(FRAMES, height=72, width=100)
    for i, original in enumerate(originals):
        assert np.array_equal(cv2.imread(str(written[4 * i]))[:, :, ::-1], original)
    between = cv2.imread(str(written[2]))[:, :, ::-1].astype(int)
    assert 0 < np.abs(between - originals[0]).mean() and 0 < np.abs(between - originals[1]).mean()


@pytest.mark.slow
def test_ffv1_is_bit_exact_and_matches_the_png_frames(work):
    done = interpolate(work, "clip.avi", "exact.mkv", "--checkpoint", "hdv3.pkl", "--multi", "4", "--codec", "ffv1")
    assert done.returncode == 0, done.stderr
    if not (work / "frames").exists():
        assert interpolate(work, "clip.avi", "frames", "--checkpoint", "hdv3.pkl", "--multi", "4").returncode == 0
    pngs = [cv2.imread(str(p))[:, :, ::-1] for p in sorted((work / "frames").glob("*.png"))]
    decoded = images(work / "exact.mkv")
    assert len(decoded) == len(pngs) and all(np.array_equal(a, b) for a, b in zip(decoded, pngs, strict=True))


@pytest.mark.slow
def test_rational_rate_timestamps_and_audio_are_kept(tmp_path, work):
    make_clip(tmp_path / "ntsc.mp4", moving_texture(4, height=64, width=96), fps=Fraction(30000, 1001),
              codec="libx264", audio_seconds=0.4)
    done = interpolate(tmp_path, "ntsc.mp4", "out.mp4", "--checkpoint", str(work / "4.18.pkl"))
    assert done.returncode == 0, done.stderr
    info = probe(tmp_path / "out.mp4")
    assert info.rate == Fraction(60000, 1001) and info.frames == 7 and info.has_audio
    source = times(tmp_path / "ntsc.mp4")
    expected = [t for a, b in pairwise(source) for t in (a, (a + b) / 2)] + source[-1:]
    assert np.allclose(times(tmp_path / "out.mp4"), expected, atol=1e-4)
    with av.open(str(tmp_path / "ntsc.mp4")) as a, av.open(str(tmp_path / "out.mp4")) as b:
        packets_in = [bytes(p) for p in a.demux(audio=0) if p.size]
        packets_out = [bytes(p) for p in b.demux(audio=0) if p.size]
        assert b.streams.audio[0].codec_context.name == "aac"
    assert packets_in == packets_out  # copied, not re-encoded


@pytest.mark.slow  # runs a stage or command in a subprocess, or several full networks
def test_variable_frame_rate_keeps_its_timing(tmp_path, work):
    pts = [0, 1, 3, 4, 8]  # in 1/25 s: gaps of 1, 2, 1 and 4 frames
    make_clip(tmp_path / "vfr.mkv", moving_texture(5, height=64, width=96), fps=25, pts=pts,
              time_base=Fraction(1, 25))
    done = interpolate(tmp_path, "vfr.mkv", "out.mkv", "--checkpoint", str(work / "4.18.pkl"), "--codec", "ffv1")
    assert done.returncode == 0, done.stderr
    expected = [t / 50 for a, b in pairwise(pts) for t in (2 * a, a + b)] + [pts[-1] / 25]
    assert np.allclose(times(tmp_path / "out.mkv"), expected, atol=1e-3)


@pytest.mark.slow  # runs a stage or command in a subprocess, or several full networks
def test_no_interpolation_across_a_scene_cut(tmp_path, work):
    shot_a = moving_texture(3, height=64, width=96, seed=1)
    shot_b = [255 - f for f in moving_texture(3, height=64, width=96, seed=2)]
    make_clip(tmp_path / "cut.mkv", shot_a + shot_b, fps=25)
    done = interpolate(tmp_path, "cut.mkv", "out.mkv", "--checkpoint", str(work / "4.18.pkl"), "--codec", "ffv1",
                       "--multi", "3")
    assert done.returncode == 0, done.stderr
    assert "1 scene cut(s)" in done.stderr
    out = images(tmp_path / "out.mkv")
    assert len(out) == 16
    # frames 6 and 7 lie between the last frame of shot A (out[6]) and the first of shot B (out[9])
    assert np.array_equal(out[7], shot_a[-1]) and np.array_equal(out[8], shot_b[0])
    assert not np.array_equal(out[4], shot_a[1]) and not np.array_equal(out[4], shot_a[2])  # inside a shot: predicted


@pytest.mark.slow
def test_rotated_phone_video_comes_out_upright(tmp_path, work):
    frames = moving_texture(3, height=64, width=96)
    make_clip(tmp_path / "phone.mp4", frames, codec="libx264", pix_fmt="yuv444p", rotation=90)
    done = interpolate(tmp_path, "phone.mp4", "up.mkv", "--checkpoint", str(work / "4.18.pkl"), "--codec", "ffv1")
    assert done.returncode == 0, done.stderr
    first = images(tmp_path / "up.mkv")[0].astype(int)
    assert first.shape == (96, 64, 3)
    upright, other_way = (np.abs(first - np.rot90(frames[0], k)).mean() for k in (1, -1))
    assert upright < 6 < 3 * upright < other_way  # turned 90 degrees counter-clockwise, as stated (x264 is lossy)


class Average:
    """A stand-in network (the mean of the two frames): enough to see what interpolate does with the timing."""

    arch, supports_timestep = "average", True

    def in_between(self, img0, img1, count, scale=1.0):
        return [(img0 + img1) / 2] * count


class Recorder:
    """A sink that keeps what interpolate writes."""

    def __init__(self) -> None:
        self.count, self.frames = 0, []

    def write(self, rgb: np.ndarray, pts: int) -> None:
        self.frames.append((rgb, pts))
        self.count += 1


def run_average(source: Path) -> Recorder:
    sink = Recorder()
    interpolate_video(Average(), source, sink, 2, 1.0, 1.0, torch.device("cpu"), probe(source).frames)
    return sink


def test_a_truncated_input_stops_interpolate(tmp_path):
    make_clip(tmp_path / "whole.mp4", moving_texture(30, height=48, width=64), codec="libx264",
              options={"movflags": "faststart"})
    half = tmp_path / "half.mp4"
    half.write_bytes((tmp_path / "whole.mp4").read_bytes()[:packet_positions(tmp_path / "whole.mp4")[15]])
    with pytest.raises(UserError, match=r"half\.mp4: truncated or damaged: decoded 15 of 30 frames"):
        run_average(half)


def test_b_frames_stamped_in_decode_order_are_interpolated_in_display_order(tmp_path):
    make_clip(tmp_path / "whole.mp4", moving_texture(12, height=48, width=64), codec="libx264")
    decode_order_stamps(tmp_path / "whole.mp4", tmp_path / "camera.mp4", period=512)
    written = run_average(tmp_path / "camera.mp4").frames
    period = 2 / (25 * probe(tmp_path / "camera.mp4").time_base)  # at twice the rate, in the output's time base
    assert [pts for _, pts in written] == [round(n * period / 2) for n in range(23)]
    originals = [frame.image for frame in decode(tmp_path / "whole.mp4")]
    assert all(np.array_equal(rgb, original) for (rgb, _), original in zip(written[::2], originals, strict=True))


def test_ffv1_decodes_to_exactly_the_frames_encoded(tmp_path):
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 256, (48, 80, 3), dtype=np.uint8) for _ in range(3)]
    writer = VideoWriter(tmp_path / "exact.mkv", CODECS["ffv1"][MASTER], None, (48, 80), Fraction(25), Fraction(1, 25))
    for i, frame in enumerate(frames):
        writer.write(frame, i)
    writer.close()
    decoded = images(tmp_path / "exact.mkv")
    assert len(decoded) == 3 and all(np.array_equal(a, b) for a, b in zip(decoded, frames, strict=True))


def test_ten_bit_input_is_read_without_clipping(tmp_path):
    ramp = np.broadcast_to(np.linspace(0, 255, 96).astype(np.uint8)[None, :, None], (64, 96, 3)).copy()
    make_clip(tmp_path / "deep.mkv", [ramp, ramp[:, ::-1].copy()], codec="ffv1", pix_fmt="gbrp10le")
    assert probe(tmp_path / "deep.mkv").pix_fmt == "gbrp10le"
    decoded = images(tmp_path / "deep.mkv")
    assert np.abs(decoded[0].astype(int) - ramp).max() <= 1
    assert np.abs(decoded[1].astype(int) - ramp[:, ::-1]).max() <= 1


@pytest.fixture(scope="module")
def odd_files(work):
    (work / "notes.mp4").write_text("these are my notes, not a video\n")
    cv2.imwrite(str(work / "img.png"), np.zeros((16, 16, 3), np.uint8))
    (work / "img.mp4").write_bytes((work / "img.png").read_bytes())
    with av.open(str(work / "sound.m4a"), "w") as container:
        stream = container.add_stream("aac", rate=48000)
        for packet in tone_packets(stream, 0.2):
            container.mux(packet)
    (work / "foreign.onnx").write_bytes(b"\x08\x07")
    (work / "a_file").write_text("x")
    make_clip(work / "whole.mp4", moving_texture(40, height=48, width=64), codec="libx264",
              options={"movflags": "faststart"})
    (work / "half.mp4").write_bytes((work / "whole.mp4").read_bytes()[:packet_positions(work / "whole.mp4")[20]])
    return work


@pytest.mark.parametrize("args, fragment", [
    (["clip.avi", "clip.avi", "--checkpoint", "4.18.pkl"], "clip.avi: is the input video"),
    (["clip.avi", "taken.mp4", "--checkpoint", "4.18.pkl"], "taken.mp4: exists; pass --overwrite"),
    (["clip.avi", "out.webm", "--checkpoint", "4.18.pkl"], "out.webm: cannot write .webm videos"),
    (["missing.avi", "x.mp4", "--checkpoint", "4.18.pkl"], "missing.avi: no such video file"),
    (["clip.avi", "x.mp4", "--checkpoint", "hdv3.pkl", "--multi", "3"], "--multi 3: hdv3.pkl is RIFE hdv3"),
    (["clip.avi", "x.mp4", "--checkpoint", "4.18.pkl", "--multi", "1"], "--multi 1: the frame rate multiplier"),
    (["clip.avi", "x.mp4", "--checkpoint", "clip.avi"], "clip.avi: not a readable PyTorch file"),
    (["clip.avi", "x.mp4", "--checkpoint", "4.18.pkl", "--codec", "vp9"], "--codec vp9: unknown codec"),
    (["clip.avi", "x.mp4", "--checkpoint", "4.18.pkl", "--crf", "60"], "--crf 60: out of range for h264 (1 to 51"),
    (["clip.avi", "x.mp4", "--checkpoint", "4.18.pkl", "--crf", "0"],
     "--crf 0: out of range for h264 (1 to 51; lower is better quality; lossless: --quality master)"),
    (["clip.avi", "x.mkv", "--checkpoint", "4.18.pkl", "--codec", "ffv1", "--crf", "3"], "ffv1 is lossless"),
    (["clip.avi", "x.mp4", "--checkpoint", "4.18.pkl", "--codec", "ffv1"], "ffv1 cannot go in a .mp4 file"),
    (["clip.avi", "a_file/x.mp4", "--checkpoint", "4.18.pkl"], "a_file/x.mp4: cannot be written"),
    (["clip.avi", "x.mp4", "--onnx", "foreign.onnx"], "foreign.onnx: not a readable ONNX model"),
    (["notes.mp4", "x.mp4", "--checkpoint", "4.18.pkl"], "notes.mp4: not a video: it is a text file"),
    (["img.mp4", "x.mp4", "--checkpoint", "4.18.pkl"], "img.mp4: not a video: it is a PNG image"),
    (["sound.m4a", "x.mp4", "--checkpoint", "4.18.pkl"],
     "sound.m4a: the container has no video stream (it holds audio)"),
    (["clip.avi", "x.mkv", "--checkpoint", "4.18.pkl", "--codec", "ffv1", "--quality", "delivery"],
     "--quality delivery: ffv1 has no delivery setting"),
    (["half.mp4", "x.mp4", "--checkpoint", "4.18.pkl"], "half.mp4: truncated or damaged: decoded 20 of 40 frames"),
])
def test_bad_requests_stop_with_one_line_and_write_nothing(odd_files, args, fragment, monkeypatch):
    """The command's ``main`` in this process (a new interpreter would spend 2 s importing torch for each case; the
    next test runs the command as a user does)."""
    work = odd_files
    monkeypatch.chdir(work)
    (work / "taken.mp4").write_bytes(b"keep me")
    assert_user_error(run_here(*args), fragment)
    assert (work / "taken.mp4").read_bytes() == b"keep me"
    assert not (work / "x.mp4").exists() and not (work / "x.mkv").exists() and not list(work.glob(".*.tmp*"))


@pytest.mark.slow  # runs a stage or command in a subprocess, or several full networks
def test_png_output_onto_an_existing_file_is_refused(work):
    (work / "notes").write_text("keep")
    assert_user_error(interpolate(work, "clip.avi", "notes", "--checkpoint", "4.18.pkl", "--overwrite"),
                      "notes: is a file; PNG frames go to a folder")
    assert (work / "notes").read_text() == "keep"


class Blend:
    """A stand-in network (the average of the two frames), so path checks run in-process in a fraction of a second."""

    arch, supports_timestep = "blend", True

    def in_between(self, img0, img1, count, scale=1.0):
        return [(img0 + img1) / 2] * count


@pytest.fixture()
def folder(tmp_path, monkeypatch):
    """``vids/small.mp4`` (3 frames) beside an unrelated ``vids/notes.txt``, in the current folder."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(interpolate_cli, "load_model", lambda args, device: Blend())
    (tmp_path / "vids").mkdir()
    make_clip(tmp_path / "vids/small.mp4", moving_texture(3, height=32, width=48))
    (tmp_path / "vids/notes.txt").write_text("mine")
    (tmp_path / "other").mkdir()
    (tmp_path / "other/keep.txt").write_text("mine too")
    return tmp_path


def run_here(*args: str):
    return run_main(interpolate_cli.main, *args, *CUT)


def assert_refused(done, fragment: str, root: Path, clip: bytes) -> None:
    """Exit 2 with one ``error:`` line holding ``fragment``; the input and the unrelated files untouched."""
    assert_user_error(done, fragment)
    assert sum(line.startswith("error:") for line in done.stderr.splitlines()) == 1
    assert (root / "vids/small.mp4").read_bytes() == clip
    assert (root / "vids/notes.txt").read_text() == "mine" and (root / "other/keep.txt").read_text() == "mine too"
    assert sorted(p.name for p in (root / "vids").iterdir()) == ["notes.txt", "small.mp4"]


@pytest.mark.parametrize("output, fragment", [
    ("vids", "vids: holds the input video vids/small.mp4"),
    ("vids/.", "vids: holds the input video vids/small.mp4"),
    ("vids/../vids", "vids/../vids: holds the input video vids/small.mp4"),
    (".", ".: holds the input video vids/small.mp4"),
    ("other", "other: holds files interpolate did not write (keep.txt)"),
])
def test_png_output_never_replaces_a_folder_holding_the_input_or_other_files(folder, output, fragment):
    clip = (folder / "vids/small.mp4").read_bytes()
    for overwrite in ((), ("--overwrite",)):
        assert_refused(run_here("vids/small.mp4", output, *overwrite), fragment, folder, clip)


def test_an_earlier_png_output_is_replaced_with_overwrite(folder):
    assert run_here("vids/small.mp4", "frames").returncode == 0
    assert sorted(p.name for p in (folder / "frames").iterdir()) == [f"{i:06d}.png" for i in range(5)]
    assert_user_error(run_here("vids/small.mp4", "frames"), "frames: exists; pass --overwrite")
    done = run_here("vids/small.mp4", "frames", "--overwrite", "--multi", "3")
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in (folder / "frames").iterdir()) == [f"{i:06d}.png" for i in range(7)]
    (folder / "frames/extra.txt").write_text("added by hand")
    assert_user_error(run_here("vids/small.mp4", "frames", "--overwrite"),
                      "frames: holds files interpolate did not write (extra.txt)")
    assert (folder / "frames/extra.txt").read_text() == "added by hand"


@pytest.mark.parametrize("make_output, output", [
    (lambda root: None, "./vids/small.mp4"),
    (lambda root: (root / "link.mp4").symlink_to(root / "vids/small.mp4"), "link.mp4"),
    (lambda root: os.link(root / "vids/small.mp4", root / "hard.mp4"), "hard.mp4"),
])
def test_a_video_output_is_never_the_input(folder, make_output, output):
    make_output(folder)
    clip = (folder / "vids/small.mp4").read_bytes()
    assert_refused(run_here("vids/small.mp4", output, "--overwrite"), f"{Path(output)}: is the input video", folder,
                   clip)


def test_a_video_output_onto_a_folder_is_refused(folder):
    (folder / "out.mp4").mkdir()
    (folder / "out.mp4/keep.txt").write_text("kept")
    assert_user_error(run_here("vids/small.mp4", "out.mp4", "--overwrite"), "out.mp4: is a folder")
    assert (folder / "out.mp4/keep.txt").read_text() == "kept"


def test_a_one_frame_video_is_refused(folder, monkeypatch):
    make_clip(folder / "one.mkv", moving_texture(1, height=32, width=48))
    assert_user_error(run_here("one.mkv", "one_2x.mkv", "--codec", "ffv1"),
                      "one.mkv: has 1 frame; interpolation needs at least two")
    # a container that states more frames than it holds is caught once decoded, and nothing is written
    monkeypatch.setattr(interpolate_cli, "probe", lambda path: dataclasses.replace(probe(path), frames=2))
    assert_user_error(run_here("one.mkv", "one_2x.mkv", "--codec", "ffv1"),
                      "one.mkv: has 1 frame; interpolation needs at least two")
    assert not (folder / "one_2x.mkv").exists() and not list(folder.glob(".*.tmp*"))
