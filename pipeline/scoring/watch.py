"""Videos to watch, for a clip's rebuilt test segment: a side-by-side video and an animated preview.

The video shows ground truth | pretrained | fine-tuned on top, each labelled, and beneath the two predictions
their error maps (mean |prediction - truth| over RGB) on one fixed scale, 0 to ERROR_MAP_MAX levels of 255, the
same in every frame, clip and run. Kept frames appear too (their errors are zero), so it plays at the clip's
rate. It is written with FFV1 by default: lossless, so every difference seen is the models', not the codec's.

The preview is an animated PNG (browsers and ``dvc plots show`` play it; a viewer without APNG support shows its
first frame): the square region of ``preview_size`` pixels where fine-tuning lowered the error most, over the
frames of the video, enlarged without smoothing, flipping between pretrained and fine-tuned. APNG rather than
GIF because a GIF's 256-colour palette would blur the very differences it is there to show, and ``dvc plots``
displays ``.png`` (not ``.webp``) files.
"""

from __future__ import annotations

import functools
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np

from pipeline.core.params import VideosOpts
from pipeline.footage.encoder import CODECS, MASTER, Codec, VideoWriter
from pipeline.scoring.metrics import psnr
from pipeline.scoring.plots import ERROR_COLORMAP, ERROR_MAP_MAX, abs_error

LABEL_HEIGHT = 28  # pixels of the label bar above each panel
FONT = cv2.FONT_HERSHEY_SIMPLEX
FONT_SCALE = 0.6
PREVIEW_MS = 800  # how long each of the two preview frames is shown
NO_PREVIEW = "none.png"  # written when no clip got a preview: git carries no empty folder, and DVC would see one
BACKGROUND = (32, 32, 32)
TEXT = (235, 235, 235)
PANELS = (("ground truth", None), ("pretrained", "pretrained"), ("fine-tuned", "finetuned"))
# evaluate.videos.codec: lossless FFV1, or x264 in 10-bit 4:4:4 at CRF 10, about ten times smaller
VIDEO_CODECS = {"ffv1": CODECS["ffv1"][MASTER],
                "h264": Codec("libx264", "yuv444p10le", 10, (0, 51), (".mkv",), (("preset", "medium"),))}


def file_stem(clip: str) -> str:
    """A clip's name as one file name (clips in sub-folders have slashes in their names)."""
    return clip.replace("/", "__")


@functools.lru_cache(maxsize=1)
def error_lut() -> np.ndarray:
    """The error colour map as a (256, 3) uint8 RGB table."""
    from matplotlib import colormaps
    return np.round(colormaps[ERROR_COLORMAP](np.linspace(0.0, 1.0, 256))[:, :3] * 255).astype(np.uint8)


def error_image(pred: np.ndarray, truth: np.ndarray) -> np.ndarray:
    level = np.clip(abs_error(pred, truth) * (255.0 / ERROR_MAP_MAX), 0, 255).astype(np.uint8)
    return error_lut()[level]


def labelled(image: np.ndarray, text: str) -> np.ndarray:
    """``image`` under a dark bar holding ``text``."""
    bar = np.full((LABEL_HEIGHT, image.shape[1], 3), BACKGROUND, np.uint8)
    cv2.putText(bar, text, (6, LABEL_HEIGHT - 9), FONT, FONT_SCALE, TEXT, 1, cv2.LINE_AA)
    return np.concatenate([bar, image], axis=0)


def legend(height: int, width: int, index: int, interpolated: bool) -> np.ndarray:
    """The bottom-left panel: the frame's number and kind, and the error maps' colour scale."""
    panel = np.full((height, width, 3), BACKGROUND, np.uint8)
    lines = [f"frame {index}: " + ("interpolated" if interpolated else "kept (input frame)"),
             "below: |prediction - truth|, mean over RGB", f"colour scale 0 to {ERROR_MAP_MAX}+ of 255"]
    for i, line in enumerate(lines):
        cv2.putText(panel, line, (10, 30 + 26 * i), FONT, FONT_SCALE, TEXT, 1, cv2.LINE_AA)
    top, bar_height = 30 + 26 * len(lines), max(8, min(40, height - 60 - 26 * len(lines)))
    ramp = error_lut()[np.linspace(0, 255, width - 20).astype(np.uint8)]
    panel[top:top + bar_height, 10:width - 10] = ramp[None]
    cv2.putText(panel, "0", (10, top + bar_height + 22), FONT, FONT_SCALE, TEXT, 1, cv2.LINE_AA)
    cv2.putText(panel, f"{ERROR_MAP_MAX}+", (width - 50, top + bar_height + 22), FONT, FONT_SCALE, TEXT, 1,
                cv2.LINE_AA)
    return panel


def best_window(gain: np.ndarray, side: int) -> tuple[float, int, int]:
    """(mean, top, left) of the ``side`` x ``side`` window of ``gain`` with the largest mean."""
    sums = cv2.integral(gain.astype(np.float64))
    windows = sums[side:, side:] - sums[:-side, side:] - sums[side:, :-side] + sums[:-side, :-side]
    top, left = np.unravel_index(int(np.argmax(windows)), windows.shape)
    return float(windows[top, left]) / side**2, int(top), int(left)


class ClipMovie:
    """The side-by-side video of one segment, written frame by frame, and its preview, written at the end."""

    def __init__(self, seg, opts: VideosOpts, videos: Path, previews: Path) -> None:
        height, width = seg.size
        shrink = min(1.0, opts.panel_width / width)
        self.panel = (2 * round(height * shrink / 2), 2 * round(width * shrink / 2))  # even sides for every codec
        self.clip, self.first, self.opts = seg.clip.name, seg.first, opts
        self.preview_path = previews / f"{file_stem(seg.clip.name)}.png"
        self.side = min(opts.preview_size, height, width)
        self.best: tuple[float, int, int, int, dict[str, np.ndarray]] | None = None
        size = (2 * (self.panel[0] + LABEL_HEIGHT), 3 * self.panel[1])
        self.writer = VideoWriter(videos / f"{file_stem(seg.clip.name)}.mkv", VIDEO_CODECS[opts.codec], None, size,
                                  seg.rate, 1 / Fraction(seg.rate))

    def _fit(self, image: np.ndarray) -> np.ndarray:
        if image.shape[:2] == self.panel:
            return image
        return cv2.resize(image, (self.panel[1], self.panel[0]), interpolation=cv2.INTER_AREA)

    def frame(self, index: int, truth: np.ndarray, shown: dict[str, np.ndarray], interpolated: bool) -> None:
        """Add frame ``index`` (``shown``: the pretrained and fine-tuned frames as uint8 RGB)."""
        images = {None: truth, **shown}
        top = [labelled(self._fit(images[key]), label) for label, key in PANELS]
        errors = [labelled(self._fit(error_image(shown[key], truth)), f"|{label} - truth|")
                  for label, key in PANELS[1:]]
        bottom = [labelled(legend(*self.panel, index, interpolated), "error scale"), *errors]
        self.writer.write(np.concatenate([np.concatenate(top, 1), np.concatenate(bottom, 1)], 0), index - self.first)
        if interpolated:
            self._track(index, truth, shown)

    def _track(self, index: int, truth: np.ndarray, shown: dict[str, np.ndarray]) -> None:
        gain = abs_error(shown["pretrained"], truth) - abs_error(shown["finetuned"], truth)
        score, top, left = best_window(gain, self.side)
        if self.best is None or score > self.best[0]:
            crop = (slice(top, top + self.side), slice(left, left + self.side))
            crops = {name: image[crop].copy() for name, image in (("truth", truth), *shown.items())}
            self.best = (score, index, top, left, crops)

    def write_preview(self) -> None:
        score, index, top, left, crops = self.best
        zoom = self.opts.preview_zoom
        frames = []
        for label, key in PANELS[1:]:
            big = cv2.resize(crops[key], None, fx=zoom, fy=zoom, interpolation=cv2.INTER_NEAREST)
            text = f"{label}: {psnr(crops[key], crops['truth']):.2f} dB"
            where = f"frame {index} x{left} y{top}: {score:+.2f}/255 better"
            frames.append(labelled(labelled(big, where), text))
        from PIL import Image
        first, *rest = (Image.fromarray(f) for f in frames)
        first.save(self.preview_path, format="PNG", save_all=True, append_images=rest, duration=PREVIEW_MS, loop=0)

    def close(self) -> None:
        self.writer.close()
        if self.best is not None:
            self.write_preview()

    def kill(self) -> None:
        self.writer.abort()


def no_preview_reason(opts: VideosOpts) -> str:
    if opts.seconds == 0:
        return "evaluate.videos.seconds is 0"
    if opts.max_clips == 0:
        return "evaluate.videos.max_clips is 0"
    return "no clip's test segment had an interpolated frame to show"


def fill_empty_previews(folder: Path, opts: VideosOpts) -> None:
    """Write :data:`NO_PREVIEW`, an image saying why there is no preview, into ``folder`` when it holds none, so
    the git-tracked folder exists in every clone (an empty one is not committed and shows the stage as changed)."""
    if any(folder.glob("*.png")):
        return
    lines = ["no animated preview:", no_preview_reason(opts)]
    image = np.full((LABEL_HEIGHT * (len(lines) + 1), 480, 3), BACKGROUND, np.uint8)
    for i, line in enumerate(lines):
        cv2.putText(image, line, (10, LABEL_HEIGHT * (i + 1)), FONT, FONT_SCALE, TEXT, 1, cv2.LINE_AA)
    cv2.imwrite(str(folder / NO_PREVIEW), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
