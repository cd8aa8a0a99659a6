"""What ``python -m pipeline.interpolate`` writes: by default a video that browsers, phones and QuickTime play
(8-bit 4:2:0 H.264 High, index first, the input's colour tags), and with ``--quality master`` one that holds
the original frames."""

from __future__ import annotations

import functools
import http.server
import json
import math
import re
import shutil
import struct
import subprocess
import threading
from pathlib import Path

import av
import numpy as np
import pytest
import torch

from pipeline import interpolate
from pipeline.core.errors import UserError
from pipeline.footage.encoder import CODECS, DELIVERY, MASTER, check_codec
from pipeline.footage.video import Colour, decode
from tests.helpers import make_clip

SIZE = (64, 96)  # height, width
FRAMES = 10
# BT.601 (SMPTE 170M) matrix, primaries and transfer in full range: every tag differs from the BT.709 limited
# range the output states when the input states nothing
TAGGED = Colour(matrix=6, primaries=6, transfer=6, range=2)
UNTAGGED_OUT = Colour(matrix=1, primaries=1, transfer=1, range=1)
PATCH_COLOURS = ((220, 30, 40), (30, 200, 60), (40, 50, 210), (230, 220, 30), (200, 40, 200), (128, 128, 128))


class Blend:
    """A stand-in for the network: the average of the two frames (the output's coding is what is tested)."""

    arch, supports_timestep = "blend", True

    def in_between(self, img0: torch.Tensor, img1: torch.Tensor, count: int, scale: float = 1.0) -> list:
        return [(img0 + img1) / 2] * count


def run_interpolate(monkeypatch, source: Path, target: Path, *args: str) -> None:
    """``python -m pipeline.interpolate SOURCE TARGET ARGS`` in this process, with :class:`Blend` as the model."""
    monkeypatch.setattr(interpolate, "load_model", lambda args, device: Blend())
    interpolate.main.__wrapped__([str(source), str(target), "--cut-threshold", "1", *args])


def patches() -> list[np.ndarray]:
    """Frames of flat saturated colour blocks (32 x 32, so 4:2:0 keeps their insides exact) that shift a little."""
    frames = []
    for shift in range(FRAMES):
        image = np.zeros((*SIZE, 3), np.uint8)
        for i, colour in enumerate(PATCH_COLOURS):
            top, left = 32 * (i // 3), 32 * (i % 3)
            image[top:top + 32, left:left + 32] = colour
        frames.append(np.roll(image, shift // 4, axis=1))
    return frames


def top_level_boxes(path: Path) -> list[str]:
    """The types of an MP4 file's top-level boxes, in file order."""
    data, boxes, at = path.read_bytes(), [], 0
    while at < len(data):
        size, kind = struct.unpack(">I4s", data[at:at + 8])
        if size == 1:  # a 64-bit size follows the type
            size = struct.unpack(">Q", data[at + 8:at + 16])[0]
        elif size == 0:  # the box runs to the end of the file
            size = len(data) - at
        boxes.append(kind.decode("latin-1"))
        at += size
    return boxes


def stream_facts(path: Path) -> dict:
    with av.open(str(path)) as container:
        context = container.streams.video[0].codec_context
        return {"codec": context.name, "profile": context.profile, "pix_fmt": context.pix_fmt,
                "colour": Colour(context.colorspace, context.color_primaries, context.color_trc,
                                 context.color_range)}


def centres(image: np.ndarray) -> np.ndarray:
    """The colour at the middle of each patch of :func:`patches` (frame 0's positions)."""
    return np.array([image[32 * (i // 3) + 16, 32 * (i % 3) + 16] for i in range(len(PATCH_COLOURS))], int)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b) ** 2))
    return math.inf if mse == 0 else 10 * math.log10(255.0**2 / mse)


@pytest.fixture(scope="module")
def tagged_clip(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("tagged") / "tagged.mp4"
    make_clip(path, patches(), codec="libx264", pix_fmt="yuv444p", colour=TAGGED)
    return path


def test_the_default_is_8_bit_4_2_0_h264_high_with_its_index_first_and_the_inputs_colours(
        tagged_clip, tmp_path, monkeypatch):
    run_interpolate(monkeypatch, tagged_clip, tmp_path / "out.mp4")
    facts = stream_facts(tmp_path / "out.mp4")
    # 8-bit 4:2:0; FFmpeg's decoder calls it yuvj420p in full range, and yuv420p in limited range (below)
    assert (facts["codec"], facts["profile"], facts["pix_fmt"]) == ("h264", "High", "yuvj420p")
    assert stream_facts(tagged_clip)["colour"] == TAGGED
    assert facts["colour"] == TAGGED
    boxes = top_level_boxes(tmp_path / "out.mp4")
    assert boxes.index("moov") < boxes.index("mdat"), boxes  # faststart: a browser can start before the end
    # converted with the matrix and range it states: the patches' colours come back as interpolate read them (a
    # BT.709 matrix or limited range in their place moves the most saturated of them by 13 to 27 levels)
    read = centres(next(iter(decode(tagged_clip))).image)
    assert np.abs(centres(next(iter(decode(tmp_path / "out.mp4"))).image) - read).max() <= 3


def test_an_input_without_colour_tags_gives_bt709_limited_range(tmp_path, monkeypatch):
    make_clip(tmp_path / "rgb.mkv", patches())  # FFV1 in RGB: no matrix, no range, no primaries
    run_interpolate(monkeypatch, tmp_path / "rgb.mkv", tmp_path / "out.mp4")
    facts = stream_facts(tmp_path / "out.mp4")
    assert (facts["codec"], facts["profile"], facts["pix_fmt"]) == ("h264", "High", "yuv420p")
    assert facts["colour"] == UNTAGGED_OUT
    first = next(iter(decode(tmp_path / "out.mp4"))).image
    assert np.abs(centres(first) - np.array(PATCH_COLOURS)).max() <= 3


def test_master_reads_back_the_original_frames_of_sharp_footage(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 256, (*SIZE, 3), dtype=np.uint8) for _ in range(FRAMES)]  # detail at every pixel
    make_clip(tmp_path / "sharp.mkv", frames)
    run_interpolate(monkeypatch, tmp_path / "sharp.mkv", tmp_path / "master.mp4", "--quality", "master")
    facts = stream_facts(tmp_path / "master.mp4")
    assert (facts["codec"], facts["pix_fmt"]) == ("h264", "yuv444p10le")
    originals = [frame.image for frame in decode(tmp_path / "master.mp4")][::2]
    assert len(originals) == FRAMES
    assert min(psnr(a, b) for a, b in zip(originals, frames, strict=True)) >= 45


def test_each_codec_has_its_qualities():
    assert check_codec("h264", None, None, Path("x.mp4")) is CODECS["h264"][DELIVERY]
    assert check_codec("h264", MASTER, None, Path("x.mov")) is CODECS["h264"][MASTER]
    assert check_codec("ffv1", None, None, Path("x.mkv")) is CODECS["ffv1"][MASTER]  # lossless only
    with pytest.raises(UserError, match=r"^--quality delivery: ffv1 has no delivery setting .*--codec h264 or h265"):
        check_codec("ffv1", DELIVERY, None, Path("x.mkv"))
    with pytest.raises(UserError, match=r"^--quality master: av1 has no master setting \(SVT-AV1 codes 4:2:0"):
        check_codec("av1", MASTER, None, Path("x.mp4"))
    with pytest.raises(UserError, match=r"^--crf 5: h264 is lossless at --quality master and takes no --crf$"):
        check_codec("h264", MASTER, 5, Path("x.mp4"))
    assert check_codec("h264", DELIVERY, 23, Path("x.mkv")) is CODECS["h264"][DELIVERY]


CHROMIUM = shutil.which("chromium")
PAGE = """<!doctype html><meta charset="utf-8"><pre id="result">{}</pre>
<video id="video" src="out.mp4" muted autoplay playsinline preload="auto"></video>
<script>
const video = document.getElementById('video'), seen = [];
function note(event) {
  if (event) seen.push(event.type);
  document.getElementById('result').textContent = JSON.stringify({duration: video.duration,
    readyState: video.readyState, currentTime: video.currentTime, error: video.error && video.error.code, seen});
}
for (const type of ['loadedmetadata', 'loadeddata', 'canplay', 'playing', 'timeupdate', 'error']) {
  video.addEventListener(type, note);
}
setInterval(note, 100);
video.play().catch(() => {});
</script>"""


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


@pytest.mark.slow  # starts a browser
@pytest.mark.skipif(CHROMIUM is None, reason="no chromium on this machine (Debian: apt-get install chromium); "
                    "the default video cannot be played in a browser")
def test_the_default_video_plays_in_chromium(tmp_path, monkeypatch):
    site = tmp_path / "site"
    site.mkdir()
    make_clip(tmp_path / "rgb.mkv", patches())  # the common case: BT.709 in limited range
    run_interpolate(monkeypatch, tmp_path / "rgb.mkv", site / "out.mp4")
    (site / "index.html").write_text(PAGE)
    handler = functools.partial(QuietHandler, directory=str(site))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)  # no range requests: faststart matters
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        done = subprocess.run(
            [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--disable-component-update", "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}",
             "--autoplay-policy=no-user-gesture-required", "--virtual-time-budget=5000", "--dump-dom",
             f"http://127.0.0.1:{server.server_address[1]}/index.html"],
            capture_output=True, text=True, timeout=120)
    finally:
        server.shutdown()
        server.server_close()
    found = re.search(r'<pre id="result">(.*?)</pre>', done.stdout, re.S)
    assert found and found.group(1) != "{}", done.stdout[-2000:] + done.stderr[-2000:]
    state = json.loads(found.group(1).replace("&quot;", '"').replace("&amp;", "&"))
    assert state["error"] is None, state
    assert isinstance(state["duration"], (int, float)) and 0 < state["duration"] < 10, state  # JSON: Infinity is null
    assert state["readyState"] >= 2, state  # a frame decoded: the browser's decoder takes the stream
