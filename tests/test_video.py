"""Reading video files: a truncated or damaged file is one error naming it, never fewer frames without a word;
frames an encoder left out on purpose (variable frame rate) are no shortfall; stamps come out in display order."""

from __future__ import annotations

import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from pipeline.core.errors import UserError
from pipeline.footage.video import decode, probe
from tests.helpers import ROOT, decode_order_stamps, make_clip, moving_texture, packet_positions

FRAMES = 40
FASTSTART = {"movflags": "faststart"}  # the index (moov) before the pictures, as phones and web exports write it
MATROSKA_CLUSTER = b"\x1f\x43\xb6\x75"  # the ID of a Cluster element, which holds the pictures


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("video")
    frames = moving_texture(FRAMES, height=48, width=64)
    make_clip(root / "whole.mp4", frames, codec="libx264", options=FASTSTART)
    make_clip(root / "whole.mkv", frames)
    return root


def cut(source: Path, dest: Path, size: int) -> Path:
    dest.write_bytes(source.read_bytes()[:size])
    return dest


def stamps(path: Path) -> list[int]:
    return [frame.pts for frame in decode(path)]


# ---------------------------------------------------------------- truncated files


def test_an_mp4_cut_after_half_its_frames_is_truncated(clips, tmp_path):
    half = cut(clips / "whole.mp4", tmp_path / "half.mp4", packet_positions(clips / "whole.mp4")[FRAMES // 2])
    assert probe(half).frames == FRAMES  # the index at the front still declares every frame
    with pytest.raises(UserError) as caught:
        stamps(half)
    assert str(caught.value) == (f"{half}: truncated or damaged: decoded 20 of 40 frames (they end at 0.84 s, "
                                 "the container declares 1.60 s)")


def test_a_matroska_file_cut_in_half_is_truncated(clips, tmp_path):
    size = (clips / "whole.mkv").stat().st_size
    half = cut(clips / "whole.mkv", tmp_path / "half.mkv", size // 2)
    with pytest.raises(UserError) as caught:
        stamps(half)
    assert str(caught.value) == (f"{half}: truncated or damaged: decoded 20 of about 40 frames (they end at 0.80 s, "
                                 "the container declares 1.60 s; FFmpeg: File ended prematurely)")


def test_an_mp4_cut_inside_its_first_frame_is_named_not_a_traceback(clips, tmp_path):
    first = packet_positions(clips / "whole.mp4")[0]
    stub = cut(clips / "whole.mp4", tmp_path / "stub.mp4", first + 100)
    with pytest.raises(UserError, match=r"stub\.mp4: truncated or damaged"):
        probe(stub)


def test_an_mp4_without_its_index_says_it_is_a_damaged_video(tmp_path):
    make_clip(tmp_path / "whole.mp4", moving_texture(10, height=48, width=64), codec="libx264")  # moov at the end
    half = cut(tmp_path / "whole.mp4", tmp_path / "half.mp4", (tmp_path / "whole.mp4").stat().st_size // 2)
    with pytest.raises(UserError, match=r"half\.mp4: truncated or damaged: an MP4/QuickTime video FFmpeg cannot "
                                        r"open"):
        probe(half)


@pytest.mark.parametrize("suffix, codec", [(".mkv", "ffv1"), (".mp4", "libx264"), (".avi", "ffv1")])
def test_frames_left_out_on_purpose_are_no_shortfall(tmp_path, suffix, codec):
    pts = [0, 1, 3, 4, 8, 9, 10, 15, 16, 17]  # in 1/25 s: gaps of 2, 4 and 5 frame periods
    path = tmp_path / f"vfr{suffix}"
    make_clip(path, moving_texture(len(pts), height=48, width=64), codec=codec, pts=pts, time_base=Fraction(1, 25))
    info = probe(path)
    got = [Fraction(p) * info.time_base * 25 for p in stamps(path)]
    assert got == pts
    if suffix == ".avi":  # AVI stores an empty chunk for every frame left out: it declares 18 frames, 10 are pictures
        assert info.frames == 18


def test_two_frames_at_one_time_are_damage(tmp_path):
    path = tmp_path / "twice.mkv"
    make_clip(path, moving_texture(5, height=48, width=64), pts=[0, 1, 2, 2, 3], time_base=Fraction(1, 25))
    with pytest.raises(UserError) as caught:
        stamps(path)
    assert str(caught.value) == (f"{path}: damaged: timestamps do not increase (frame 2 at 80, frame 3 at 80, "
                                 "in units of 1/1000)")


# ---------------------------------------------------------------- stamps in decode order


@pytest.mark.parametrize("suffix", [".mp4", ".mkv"])
def test_b_frames_stamped_in_decode_order_come_out_in_display_order(clips, tmp_path, suffix):
    shuffled = tmp_path / f"camera{suffix}"
    decode_order_stamps(clips / "whole.mp4", shuffled, period=512)  # 1/25 s in whole.mp4's 1/12800
    with av.open(str(shuffled)) as container:
        raw = [frame.pts for frame in container.decode(video=0)]
    assert raw != sorted(raw)  # what the decoder hands out
    info = probe(shuffled)
    period = 1 / (25 * info.time_base)
    assert stamps(shuffled) == [round(n * period) for n in range(FRAMES)]
    for a, b in zip(decode(shuffled), decode(clips / "whole.mp4"), strict=True):
        assert np.array_equal(a.image, b.image)  # the pictures in the order the decoder shows them


# ---------------------------------------------------------------- any damage: an error or no silent shortfall


def seconds(path: Path) -> list[Fraction]:
    """What extract and interpolate do with a file: probe it, then decode every frame; the frames' times."""
    time_base = probe(path).time_base
    return [pts * time_base for pts in stamps(path)]


@settings(max_examples=25, deadline=None, phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.shrink],
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data(), name=st.sampled_from(["whole.mp4", "whole.mkv"]), truncate=st.booleans())
def test_a_damaged_file_is_an_error_naming_it_never_a_silent_shortfall(clips, data, name, truncate):
    """Cut anywhere, or up to four bytes of the container's header changed: either one error naming the file, or
    times that increase, and every frame, or only frames missing inside the clip, each leaving a gap in time (as a
    frame the container itself leaves out does: extract drops the triplets around it as uneven timing)."""
    source = (clips / name).read_bytes()
    # the header: an MP4's index (moov) and mdat box header; what a Matroska file holds before its first Cluster
    # (a Cluster whose size field shrinks loses its frames without a word from FFmpeg: not caught)
    header = packet_positions(clips / name)[0] if name.endswith(".mp4") else source.index(MATROSKA_CLUSTER)
    if truncate:
        damaged = source[:data.draw(st.integers(0, len(source) - 1), label="size")]
    else:
        spots = data.draw(st.dictionaries(st.integers(0, header - 1), st.integers(0, 255), min_size=1, max_size=4),
                          label="bytes")
        damaged = bytes(spots.get(i, byte) for i, byte in enumerate(source))
    path = clips / f"damaged{Path(name).suffix}"
    path.write_bytes(damaged)
    try:
        got = seconds(path)
    except UserError as error:
        assert str(error).startswith(f"{path}: ")
        return
    assert all(a < b for a, b in zip(got, got[1:], strict=False))
    if len(got) != FRAMES:
        whole = seconds(clips / name)
        assert set(got) <= set(whole) and (got[0], got[-1]) == (whole[0], whole[-1])


def test_a_clip_cut_before_its_first_keyframe_decodes_from_the_first_picture_it_can(tmp_path, caplog):
    """Cut out of a longer clip without re-encoding: its first pictures need a keyframe that is not in the file.
    They are logged, not called damage; the pictures that do come out keep their own times."""
    source, cut_clip = tmp_path / "source.mp4", tmp_path / "cut.mp4"
    with av.open(str(source), "w") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        stream.codec_context.gop_size = 10
        for i, image in enumerate(moving_texture(40, 48, 64)):
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts = i
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    with av.open(str(source)) as src, av.open(str(cut_clip), "w") as dst:
        out = dst.add_stream_from_template(src.streams.video[0])
        for i, packet in enumerate(p for p in src.demux(video=0) if p.size):
            if i >= 3:  # the keyframe and the two pictures after it are not in the cut
                packet.stream = out
                dst.mux(packet)
    frames = list(decode(cut_clip))
    assert len(frames) == 30  # from the next keyframe on (frame 10)
    assert "7 of 37 coded pictures gave no picture" in caplog.text


STOP_EARLY = """
import sys
from pathlib import Path

import av.logging

from pipeline.core.errors import UserError
from pipeline.footage.video import decode

av.logging.set_level(av.logging.ERROR)  # a caller's own level, put back after each read
for i in range(int(sys.argv[2])):
    frames = decode(Path(sys.argv[1]))
    try:
        for _ in range(1 + i % 5):
            next(frames)
    except UserError:  # damage FFmpeg gives up on: the read ends with its one line
        pass
    frames.close()
    assert av.logging.get_level() == av.logging.ERROR
print("read", sys.argv[2])
"""


def test_reads_stopped_early_on_a_damaged_threaded_stream_always_end(tmp_path):
    """A reader that stops after a few frames frees the decoder with pictures in flight; with the damage, its
    threads log as they decode them. The log callback takes the GIL, so freeing the decoder while one of them logs
    could wait for ever: each read must end, and the caller's FFmpeg log level comes back."""
    make_clip(tmp_path / "clean.mp4", moving_texture(24, height=240, width=320), codec="libx264")
    rng = np.random.default_rng(0)
    with av.open(str(tmp_path / "clean.mp4")) as src, av.open(str(tmp_path / "damaged.mp4"), "w") as out:
        stream = out.add_stream_from_template(src.streams.video[0])
        for n, packet in enumerate(p for p in src.demux(video=0) if p.size):
            data = bytearray(bytes(packet))
            if n:  # every picture after the first damaged in its second half
                for pos in rng.integers(len(data) // 2, len(data), 3):
                    data[pos] ^= 0xFF
            damaged = av.Packet(bytes(data))
            damaged.pts, damaged.dts, damaged.time_base = packet.pts, packet.dts, packet.time_base
            damaged.is_keyframe, damaged.stream = packet.is_keyframe, stream
            out.mux(damaged)
    done = subprocess.run([sys.executable, "-c", STOP_EARLY, str(tmp_path / "damaged.mp4"), "100"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "read 100" in done.stdout, done.stderr[-2000:]
    assert done.stderr.strip()  # the decoder's threads logged about the damage (the reader's own lines are captured)
