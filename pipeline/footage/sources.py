"""Finding the footage under a source folder: video files, folders of numbered images, and Vimeo-90K.

Any mix may sit under the folder. A folder that holds ``tri_trainlist.txt`` or ``tri_testlist.txt`` next
to ``sequences/`` is read as Vimeo-90K (its entries are ready-made triplets, split as the lists say); any
other folder that directly holds images is one clip of numbered frames; every video file is one clip.
Problems found here (a gap in numbering, a list naming a missing file) are :class:`UserError` s naming the
file; ``collect`` turns them into skipped items when the user asked for that.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from itertools import pairwise
from pathlib import Path
from typing import TypeVar

import numpy as np

from pipeline.core.errors import UserError
from pipeline.footage.video import decode, probe, read_bgr

VIDEO_EXTENSIONS = (".mp4", ".mov", ".mkv", ".avi", ".webm")
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".tif", ".tiff")
VIMEO_LISTS = {"train": "tri_trainlist.txt", "test": "tri_testlist.txt"}
VIMEO_FRAMES = ("im1.png", "im2.png", "im3.png")
NUMBERED = re.compile(r"^(?P<prefix>.*?)(?P<number>\d+)(?P<suffix>\D*)$")

T = TypeVar("T")


@dataclass(frozen=True)
class Timing:
    """How a clip's frames are counted and timed: ``frames``, exact for image folders and the container's count
    for videos (decoding may find a few more or fewer); ``unit``, frame periods per unit of the stamps
    :meth:`Clip.iter_frames` gives (1 for image folders: numbered frames are evenly spaced)."""

    frames: int
    unit: Fraction


@dataclass(frozen=True)
class Clip:
    """One continuous shot: a video file, or a folder of numbered frames (``frames`` in order)."""

    name: str
    path: Path
    frames: tuple[Path, ...] = ()

    @property
    def kind(self) -> str:
        return "images" if self.frames else "video"

    def timing(self) -> Timing:
        """The frame count and the frame periods per stamp unit (a video's rate times its time base)."""
        if self.frames:
            return Timing(len(self.frames), Fraction(1))
        info = probe(self.path)
        return Timing(info.frames, info.rate * info.time_base)

    def iter_frames(self) -> Iterator[tuple[np.ndarray, Path | None, int]]:
        """Each frame as BGR uint8 (OpenCV's order), with the image file it came from (None for video) and its
        stamp (a video's timestamp; an image's place in the folder)."""
        if self.frames:
            for index, path in enumerate(self.frames):
                yield read_bgr(path), path, index
        else:
            for frame in decode(self.path, "bgr24"):
                yield frame.image, None, frame.pts


@dataclass(frozen=True)
class VimeoEntry:
    """One Vimeo-90K triplet: ``sequences/<entry>/im1..3.png``; ``group`` is the entry's first part."""

    name: str
    files: tuple[Path, Path, Path]
    listed_as: str
    group: str


@dataclass
class Footage:
    clips: list[Clip] = field(default_factory=list)
    vimeo: list[VimeoEntry] = field(default_factory=list)
    skipped: list[dict] = field(default_factory=list)


def collect(skipped: list[dict] | None, path: Path, build: Callable[[], T]) -> T | None:
    """``build()``, or None with the problem recorded when ``skipped`` is a list (skip_unreadable)."""
    try:
        return build()
    except UserError as error:
        if skipped is None:
            raise
        skipped.append({"file": str(path), "problem": str(error)})
        return None


def clip_name(path: Path, source: Path) -> str:
    rel = path.relative_to(source).as_posix()
    return source.name if rel == "." else rel


def numbered_frames(folder: Path, images: list[Path]) -> tuple[Path, ...]:
    """``images`` in frame order; one naming pattern, consecutive numbers, nothing twice."""
    parsed = []
    for path in images:
        match = NUMBERED.match(path.stem)
        if match is None:
            raise UserError(f"{path}: no frame number in the file name; an image folder holds numbered frames "
                            "(e.g. frame_0001.png)")
        parsed.append((int(match["number"]), match["prefix"], match["suffix"], path))
    patterns = sorted({(prefix, suffix) for _, prefix, suffix, _ in parsed})
    if len(patterns) > 1:
        examples = ", ".join(f"{p}<n>{s}" for p, s in patterns[:3])
        raise UserError(f"{folder}: frames named in more than one pattern ({examples}); "
                        "put each sequence in its own folder")
    parsed.sort(key=lambda item: item[0])
    for (n0, _, _, a), (n1, _, _, b) in pairwise(parsed):
        if n1 == n0:
            raise UserError(f"{folder}: frame number {n0} appears twice ({a.name}, {b.name})")
        if n1 != n0 + 1:
            raise UserError(f"{folder}: frame numbering jumps from {a.name} to {b.name} "
                            f"({n1 - n0 - 1} frame(s) missing)")
    return tuple(path for *_, path in parsed)


def vimeo_entries(root: Path, source: Path, skipped: list[dict] | None) -> list[VimeoEntry]:
    """Entries of ``tri_trainlist.txt`` / ``tri_testlist.txt`` under ``root``; an entry with a missing frame
    is an error, or is left out and recorded in ``skipped`` when that is a list."""
    entries: dict[str, VimeoEntry] = {}
    prefix = clip_name(root, source)
    for split, list_name in VIMEO_LISTS.items():
        list_file = root / list_name
        if not list_file.is_file():
            continue
        for number, line in enumerate(list_file.read_text().splitlines(), start=1):
            entry = line.strip()
            if not entry:
                continue
            if entry in entries:
                raise UserError(f"{list_file}:{number}: {entry} is already listed in "
                                f"{VIMEO_LISTS[entries[entry].listed_as]}")
            files = tuple(root / "sequences" / entry / name for name in VIMEO_FRAMES)
            missing = [f for f in files if not f.is_file()]
            if missing:
                problem = f"{list_file}:{number}: {entry}: {missing[0]} is missing"
                if skipped is None:
                    raise UserError(problem)
                skipped.append({"file": str(missing[0]), "problem": problem})
                continue
            entries[entry] = VimeoEntry(name=f"{prefix}/{entry}", files=files, listed_as=split,
                                        group=entry.split("/")[0])
    return list(entries.values())


def is_vimeo_root(folder: Path, files: list[str], dirs: list[str]) -> bool:
    return "sequences" in dirs and any(name in files for name in VIMEO_LISTS.values())


def discover(source: Path, skip_unreadable: bool) -> Footage:
    """Every clip and Vimeo entry under ``source``, in a stable order."""
    footage = Footage()
    skipped = footage.skipped if skip_unreadable else None
    for top, dirs, files in os.walk(source):
        folder = Path(top)
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        files = sorted(f for f in files if not f.startswith("."))
        if is_vimeo_root(folder, files, dirs):
            dirs[:] = []
            footage.vimeo.extend(vimeo_entries(folder, source, skipped))
            continue
        for name in files:
            if Path(name).suffix.lower() in VIDEO_EXTENSIONS:
                footage.clips.append(Clip(clip_name(folder / name, source), folder / name))
        images = [folder / f for f in files if Path(f).suffix.lower() in IMAGE_EXTENSIONS]
        if images:
            frames = collect(skipped, folder, lambda folder=folder, images=images: numbered_frames(folder, images))
            if frames:
                footage.clips.append(Clip(clip_name(folder, source), folder, frames))
    footage.clips.sort(key=lambda clip: clip.name)
    return footage
