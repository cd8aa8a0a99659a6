"""The ``dvc plots show`` page works offline: opened in headless Chromium with no network (no name resolves),
every chart is drawn, every image is loaded, and an animated PNG plays (it changes on screen). The same check
fails on a page without the local scripts (what DVC's own page amounts to offline)."""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from PIL import Image

from pipeline import plots_page
from pipeline.scoring.summary import with_every_method
from tests.helpers import ROOT, sh

pytestmark = pytest.mark.slow

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="no chromium on this machine (Debian: apt-get install "
                                    "chromium); the offline plots page cannot be opened")
OFFLINE_PAGE = ROOT / plots_page.OFFLINE_PAGE
SETTLE_S = 1.0  # after the page's load event, for vega-embed to draw
FLIP_S = 1.0  # between two screenshots of an image: longer than a frame of the preview animations (0.8 s)
# Whether each vega-embed target holds a drawn chart, and whether each image loaded.
STATE = """(() => ({
  charts: Array.from(document.querySelectorAll('.vega-embed')).map(d => ({id: d.id,
                                                                           drawn: !!d.querySelector('canvas, svg')})),
  images: Array.from(document.querySelectorAll('img')).map(img => ({src: img.getAttribute('src'),
                                                                    loaded: img.complete && img.naturalWidth > 0}))
}))()"""
LOADED = """new Promise(done => document.readyState === 'complete' ? done() : addEventListener('load', () => done()))"""
# Scroll image i to the top of the window (an image out of sight is not animated) and return where it is.
SHOW = """(i => { const img = document.querySelectorAll('img')[i]; img.scrollIntoView();
  const r = img.getBoundingClientRect();
  return {x: r.left + scrollX, y: r.top + scrollY, width: Math.min(r.width, innerWidth),
          height: Math.min(r.height, innerHeight)};
})(%d)"""


class Browser:
    """Headless Chromium with no network, driven over the DevTools protocol on a pipe (fds 3 and 4)."""

    def __init__(self) -> None:
        commands_read, self.commands = os.pipe()
        self.replies, replies_write = os.pipe()

        def child() -> None:  # the pipe ends become fds 3 and 4 of the browser (via copies, so none is lost)
            ours = os.dup(commands_read), os.dup(replies_write)
            os.dup2(ours[0], 3)
            os.dup2(ours[1], 4)

        self.proc = subprocess.Popen(
            [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--remote-debugging-pipe",
             "--host-resolver-rules=MAP * ~NOTFOUND", "--window-size=1280,900", "about:blank"],
            preexec_fn=child, close_fds=False, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.close(commands_read)
        os.close(replies_write)
        self.buffer, self.next_id, self.session = b"", 0, None

    def call(self, method: str, **params) -> dict:
        self.next_id += 1
        message = {"id": self.next_id, "method": method, "params": params}
        if self.session:
            message["sessionId"] = self.session
        os.write(self.commands, json.dumps(message).encode() + b"\0")
        while True:
            while b"\0" not in self.buffer:
                chunk = os.read(self.replies, 1 << 16)
                assert chunk, "chromium ended"
                self.buffer += chunk
            raw, self.buffer = self.buffer.split(b"\0", 1)
            reply = json.loads(raw)
            if reply.get("id") == self.next_id:
                assert "error" not in reply, reply["error"]
                return reply["result"]

    def evaluate(self, expression: str):
        result = self.call("Runtime.evaluate", expression=expression, awaitPromise=True, returnByValue=True)
        assert "exceptionDetails" not in result, result["exceptionDetails"]
        return result["result"].get("value")

    def open(self, url: str) -> None:
        target = self.call("Target.createTarget", url="about:blank")["targetId"]
        self.session = self.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        self.call("Page.enable")
        self.call("Page.navigate", url=url)
        self.evaluate(LOADED)
        time.sleep(SETTLE_S)

    def screenshot(self, clip: dict) -> bytes:
        return base64.b64decode(self.call("Page.captureScreenshot", format="png", clip={**clip, "scale": 1})["data"])

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait()
        os.close(self.commands)
        os.close(self.replies)


def open_page(page: Path, animations: bool = False) -> dict:
    """What Chromium shows of ``page`` with no network: each chart drawn or not, each image loaded or not, and
    with ``animations`` whether each image changed on screen within FLIP_S (an animation plays: FLIP_S per image)."""
    browser = Browser()
    try:
        browser.open(page.as_uri())
        state = browser.evaluate(STATE)
        for i, image in enumerate(state["images"] if animations else []):
            clip = browser.evaluate(SHOW % i)
            first = browser.screenshot(clip)
            time.sleep(FLIP_S)
            image["changed"] = browser.screenshot(clip) != first
        return state
    finally:
        browser.close()


def missing_charts(page: Path, state: dict) -> list[str]:
    """Ids of the page's vega-embed targets that hold no drawn chart (no canvas or svg)."""
    ids = re.findall(r"vegaEmbed\('#([^']+)'", page.read_text(encoding="utf8"))
    assert ids, "the page embeds no chart"
    drawn = {chart["id"] for chart in state["charts"] if chart["drawn"]}
    return [chart for chart in ids if chart not in drawn]


def small_project(root: Path) -> None:
    """A git + DVC project with a line plot of two fields, a scatter, an image and a two-frame animated PNG."""
    sh(root, "git", "init", "-q")
    sh(root, "dvc", "init", "-q")
    results = root / "results"
    (results / "images").mkdir(parents=True)
    steps = np.arange(20)
    lines = ["position,first,second"] + [f"{s},{np.sin(s / 3):.4f},{np.cos(s / 3):.4f}" for s in steps]
    (results / "curve.csv").write_text("\n".join(lines) + "\n")
    Image.fromarray(np.full((40, 60, 3), 90, np.uint8)).save(results / "images" / "still.png")
    frames = [Image.fromarray(np.full((40, 60, 3), level, np.uint8)) for level in (30, 220)]
    frames[0].save(results / "images" / "flip.png", format="PNG", save_all=True, append_images=frames[1:],
                   duration=400, loop=0)
    (root / "dvc.yaml").write_text("""plots:
  - results/curve.csv:
      x: position
      y: [first, second]
  - a scatter:
      template: scatter
      x: {results/curve.csv: first}
      y: {results/curve.csv: second}
  - results/images
""")


def render(root: Path, template: Path) -> Path:
    sh(root, "dvc", "plots", "show", "--html-template", str(template), "-o", "page")
    return root / "page" / "index.html"


def assert_all_rendered(page: Path, animations: bool = False) -> list[dict]:
    state = open_page(page, animations)
    assert not missing_charts(page, state), f"charts not drawn: {missing_charts(page, state)}"
    assert state["images"] and all(image["loaded"] for image in state["images"]), state["images"]
    return state["images"]


@needs_chromium
def test_small_project_page_draws_every_chart_and_plays_the_animation_offline(tmp_path):
    assert OFFLINE_PAGE.is_file(), "plots/offline.html is missing: run `make setup` (python -m pipeline.plots_page)"
    small_project(tmp_path)
    report = assert_all_rendered(render(tmp_path, OFFLINE_PAGE), animations=True)
    by_name = {Path(entry["src"]).name.split("_")[-1]: entry for entry in report}
    assert by_name["flip.png"]["changed"], "the animated PNG did not play"
    assert not by_name["still.png"]["changed"]


@needs_chromium
def test_the_check_fails_without_the_local_scripts(tmp_path):
    """Our template without the scripts inlined, as DVC's own page is offline: no chart is drawn."""
    small_project(tmp_path)
    page = render(tmp_path, ROOT / plots_page.TEMPLATE)
    assert len(missing_charts(page, open_page(page))) == 2


def two_method_results(results: Path) -> None:
    """``results`` as a run with ``evaluate.methods: [finetuned, pretrained]`` (the study's runs) writes them."""
    for name, metrics in (("motion_buckets.csv", ("psnr",)), ("segment_frames.csv", ("psnr", "vmaf"))):
        table = pd.read_csv(results / "evaluate" / name)
        baselines = [f"{method}_{metric}" for method in ("repeat", "blend", "dis_flow", "ffmpeg_mci")
                     for metric in ("psnr", "ssim", "psnr_y", "ssim_matlab", "sharpness", "vmaf")]
        table = table.drop(columns=[c for c in baselines if c in table])
        with_every_method(table, metrics).to_csv(results / "evaluate" / name, index=False)


@needs_chromium
@pytest.mark.parametrize("methods", ["all", "two"])
def test_the_projects_own_plots_render_offline(tmp_path, methods):
    """The committed dvc.yaml and results (training curves, per-triplet scatter, PSNR by motion, grids); and the
    same results as a run of the two models alone writes them: every chart is still drawn."""
    assert OFFLINE_PAGE.is_file(), "plots/offline.html is missing: run `make setup` (python -m pipeline.plots_page)"
    shutil.copy2(ROOT / "dvc.yaml", tmp_path / "dvc.yaml")
    shutil.copy2(ROOT / "params.yaml", tmp_path / "params.yaml")
    shutil.copytree(ROOT / "results", tmp_path / "results", ignore=shutil.ignore_patterns("videos"))
    if methods == "two":
        two_method_results(tmp_path / "results")
    sh(tmp_path, "git", "init", "-q")
    sh(tmp_path, "dvc", "init", "-q")
    shutil.copytree(ROOT / ".dvc/plots", tmp_path / ".dvc/plots")  # the template of the charts of several series
    page = render(tmp_path, OFFLINE_PAGE)
    assert_all_rendered(page)
    text = page.read_text(encoding="utf8")
    expected = stage_plot_titles(tmp_path)
    assert {"Learning rate per parameter group", "Training loss and its terms (before their weights)",
            "pretrained vs fine-tuned PSNR per test triplet",
            "test PSNR by motion (equal-count buckets, x = median motion of the bucket)",
            "PSNR and VMAF of every interpolated frame of the rebuilt test segments"} <= set(expected)
    assert [title for title in expected if text.count(title) != 1] == []  # each chart drawn, once


def stage_plot_titles(root: Path) -> list[str]:
    """The titles that dvc.yaml gives to plots its stages declare."""
    return [spec["title"] for stage in yaml.safe_load((root / "dvc.yaml").read_text())["stages"].values()
            for entry in stage.get("plots", []) if isinstance(entry, dict)
            for spec in entry.values() if spec and "title" in spec]


