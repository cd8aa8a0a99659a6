"""Resumable training state: ``accelerator.save_state`` every N steps, written atomically.

A state is only resumed by a run with the same fingerprint (params, data and starting weights), so a
changed learning rate starts afresh instead of continuing someone else's run.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from pathlib import Path

from accelerate import Accelerator

from pipeline.core.paths import TRAIN_STATE

log = logging.getLogger("pipeline.training.resume")

LATEST = "latest"


def fingerprint(*parts: object, files: tuple[Path, ...] = ()) -> str:
    """A hash of JSON-able ``parts`` and the contents of ``files``."""
    digest = hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode())
    for path in files:
        with open(path, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()


class TrainState:
    def __init__(self, accelerator: Accelerator, key: str, directory: Path = TRAIN_STATE) -> None:
        self.accelerator = accelerator
        self.key = key
        self.directory = directory

    def restore(self) -> int:
        """Load the latest matching state into the prepared objects; the optimizer step to continue from."""
        latest = self.directory / LATEST
        step_file = latest / "step.json"
        if not step_file.is_file() or json.loads(step_file.read_text()).get("key") != self.key:
            if latest.exists() and self.accelerator.is_main_process:
                log.info("ignoring %s: it belongs to a run with other params or data", latest)
            return 0
        self.accelerator.load_state(str(latest))
        step = int(json.loads(step_file.read_text())["step"])
        log.info("resuming from %s at step %d", latest, step)
        return step

    def save(self, step: int) -> None:
        tmp = self.directory / f".{LATEST}.tmp"
        if self.accelerator.is_main_process and tmp.exists():
            shutil.rmtree(tmp)
        self.accelerator.wait_for_everyone()
        self.accelerator.save_state(str(tmp))
        self.accelerator.wait_for_everyone()
        if self.accelerator.is_main_process:
            (tmp / "step.json").write_text(json.dumps({"step": step, "key": self.key}))
            old = self.directory / f".{LATEST}.old"
            if (self.directory / LATEST).exists():
                os.replace(self.directory / LATEST, old)
            os.replace(tmp, self.directory / LATEST)
            shutil.rmtree(old, ignore_errors=True)
        self.accelerator.wait_for_everyone()

    def clear(self) -> None:
        if self.accelerator.is_main_process:
            shutil.rmtree(self.directory, ignore_errors=True)
