"""Where ``interpolate`` writes: its OUTPUT checked before any work, and the folder of numbered PNG frames.

OUTPUT is replaced only when it is something interpolate itself writes: a video file, or a folder holding nothing
but numbered frames (``000000.png``, ``000001.png``, …). It is never the input video (by any path: ``./``,
a symbolic or a hard link), never the input's folder or a folder above it, and never a folder holding any other
file, whatever ``--overwrite`` says.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np

from pipeline.core.atomic import check_creatable
from pipeline.core.errors import UserError
from pipeline.footage.video import write_bgr

FRAME_NAME = re.compile(r"\d{6}\.png")  # what PngSink names its frames
SHOWN = 3  # foreign entries named in the error line


class PngSink:
    """Numbered lossless PNGs in a folder (timestamps are not kept: a folder of frames has none)."""

    def __init__(self, folder: Path) -> None:
        self.folder, self.count = folder, 0

    def write(self, rgb: np.ndarray, pts: int) -> None:
        write_bgr(self.folder / f"{self.count:06d}.png", np.ascontiguousarray(rgb[:, :, ::-1]))
        self.count += 1


def foreign_entries(folder: Path) -> list[str]:
    """Names in ``folder`` that :class:`PngSink` does not write (sorted)."""
    return sorted(entry.name for entry in os.scandir(folder)
                  if not (FRAME_NAME.fullmatch(entry.name) and entry.is_file(follow_symlinks=False)))


def is_input(output: Path, source: Path) -> bool:
    """Whether ``output`` names the file ``source`` (the same path resolved, or a link to the same file)."""
    return output.resolve() == source.resolve() or (output.exists() and os.path.samefile(output, source))


def check_frame_folder(output: Path, source: Path) -> None:
    """PNG output: refuse a file, a link, the input's folder or one above it, and a folder holding other files."""
    target = output.resolve()
    if source.resolve().is_relative_to(target):
        suggestion = source.parent / f"{source.stem}_frames"
        raise UserError(f"{output}: holds the input video {source}; PNG frames go to a folder of their own "
                        f"(e.g. {suggestion})")
    if Path.cwd().resolve().is_relative_to(target):
        raise UserError(f"{output}: is the current folder or holds it; PNG frames go to a folder of their own")
    if output.is_symlink():
        raise UserError(f"{output}: is a symbolic link; give the folder for the PNG frames itself")
    if output.is_file():
        raise UserError(f"{output}: is a file; PNG frames go to a folder (or give a video suffix)")
    if output.is_dir():
        foreign = foreign_entries(output)
        if foreign:
            more = f", … {len(foreign)} in all" if len(foreign) > SHOWN else ""
            raise UserError(f"{output}: holds files interpolate did not write ({', '.join(foreign[:SHOWN])}{more}); "
                            "PNG frames go to a new folder, or replace an earlier PNG output of interpolate")


def check_output(source: Path, output: Path, overwrite: bool) -> None:
    """Everything about OUTPUT that can be checked before any work (see the module's docstring)."""
    if not source.is_file():
        raise UserError(f"{source}: no such video file")
    if is_input(output, source):
        raise UserError(f"{output}: is the input video; choose another output path")
    if not output.suffix:
        check_frame_folder(output, source)
    elif output.is_dir():
        raise UserError(f"{output}: is a folder; a video goes to a file (a name without a suffix writes PNG frames)")
    if output.exists() and not overwrite:
        raise UserError(f"{output}: exists; pass --overwrite to replace it")
    check_creatable(output.parent, str(output))
