"""The frames a clip's kept triplets use, stored once each as PNG under ``data/triplets/frames/<clip>/``."""

from __future__ import annotations

import shutil
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import numpy as np

from pipeline.footage.video import write_bgr

PENDING_PER_WRITER = 2  # frames queued per writer thread; bounds memory while PNG encoding overlaps decoding


class FrameStore:
    """Stores each frame of one clip once, as PNG, on background threads (PNG encoding releases the GIL, so it
    overlaps decoding); PNG sources are copied as they are."""

    def __init__(self, folder: Path, writers: int = 1) -> None:
        self.folder = folder
        self.written: set[int] = set()
        self.pool = ThreadPoolExecutor(max_workers=writers)
        self.max_pending = PENDING_PER_WRITER * writers
        self.pending: deque[Future] = deque()

    def add(self, index: int, frame: np.ndarray, source: Path | None) -> None:
        if index in self.written:
            return
        self.written.add(index)
        self.folder.mkdir(parents=True, exist_ok=True)
        while len(self.pending) >= self.max_pending:
            self.pending.popleft().result()
        self.pending.append(self.pool.submit(self._write, self.folder / f"{index:06d}.png", frame, source))

    @staticmethod
    def _write(dest: Path, frame: np.ndarray, source: Path | None) -> None:
        if source is not None and source.suffix.lower() == ".png":
            shutil.copyfile(source, dest)
        else:
            write_bgr(dest, frame)

    def close(self) -> None:
        try:
            while self.pending:
                self.pending.popleft().result()
        finally:
            self.pool.shutdown()
