"""Streaming access to video files and frame images (RGB uint8, HxWx3)."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import cv2
import numpy as np

from pipeline.errors import UserError

VIDEO_EXTENSIONS = (".mp4", ".mov", ".mkv", ".avi", ".webm")
THUMB_SIDE = 160  # longer side of the thumbnails that motion, cut and duplicate scores are computed on


def list_videos(folder: Path) -> list[Path]:
    """Video files under ``folder`` (recursively), in a stable order."""
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in VIDEO_EXTENSIONS)


def iter_frames(path: Path) -> Iterator[np.ndarray]:
    """Decode ``path`` one frame at a time; memory does not grow with the clip's length."""
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise UserError(f"{path}: cannot be opened as a video (corrupt or unsupported format)")
    try:
        count = 0
        while True:
            ok, bgr = cap.read()
            if not ok:
                break
            count += 1
            yield cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        if count == 0:
            raise UserError(f"{path}: no frame could be decoded (empty or corrupt video)")
    finally:
        cap.release()


def thumbnail(frame: np.ndarray) -> np.ndarray:
    """A small float32 copy in [0, 1] for cheap frame comparisons."""
    height, width = frame.shape[:2]
    factor = THUMB_SIDE / max(height, width)
    if factor < 1:
        frame = cv2.resize(frame, (max(1, round(width * factor)), max(1, round(height * factor))),
                           interpolation=cv2.INTER_AREA)
    return frame.astype(np.float32) / 255.0


def read_image(path: Path) -> np.ndarray:
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise UserError(f"{path}: cannot be read as an image")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def write_image(path: Path, rgb: np.ndarray) -> None:
    """Write ``rgb`` losslessly (PNG)."""
    if not cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)):
        raise OSError(f"could not write {path}")
