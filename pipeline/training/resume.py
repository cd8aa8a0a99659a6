"""Resumable training state: ``accelerator.save_state`` every N steps, written atomically.

A state is only resumed by a run with the same fingerprint (params, data and starting weights), so a
changed learning rate starts afresh instead of continuing someone else's run.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
from pathlib import Path

from accelerate import Accelerator
from accelerate.utils import gather_object

from pipeline.core.errors import UserError
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
    """The checkpoints of one run in ``state/train``. Over several machines, the main process writes the model,
    optimizer and step, each process its own random state: a run resumes only where ``state/`` is on a
    filesystem every machine shares; elsewhere every process starts afresh together."""

    def __init__(self, accelerator: Accelerator, key: str, directory: Path = TRAIN_STATE) -> None:
        self.accelerator = accelerator
        self.key = key
        self.directory = directory
        keys = set(gather_object([key]))
        if len(keys) > 1:
            raise UserError(f"the {accelerator.num_processes} training processes read different params.yaml, "
                            f"data/augmented or pretrained weights ({len(keys)} versions): check out the same "
                            "commit and run `dvc pull` on every machine")

    def restore(self) -> int:
        """Load the latest matching state into the prepared objects; the optimizer step to continue from (the
        same on every process)."""
        latest = self.directory / LATEST
        step_file = latest / "step.json"
        saved = json.loads(step_file.read_text()) if step_file.is_file() else {}
        step = int(saved["step"]) if saved.get("key") == self.key else None
        found = gather_object([step])
        if len(set(found)) > 1:
            if self.accelerator.is_main_process:
                seen = ", ".join("none" if s is None else f"step {s}" for s in found)
                log.warning("%s differs between the processes (%s; state/ is not on a filesystem all machines "
                            "share): starting afresh", latest, seen)
            return 0
        if step is None:
            if latest.exists() and self.accelerator.is_main_process:
                log.info("ignoring %s: it belongs to a run with other params or data", latest)
            return 0
        self.accelerator.load_state(str(latest))
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
        """Remove the state once the run is complete. Another machine's main process removes the checkpoints its
        processes wrote (their random states) but not the curves, which only the main process uses."""
        if self.accelerator.is_main_process:
            shutil.rmtree(self.directory, ignore_errors=True)
        elif self.accelerator.is_local_main_process:
            for name in (f".{LATEST}.tmp", LATEST):
                shutil.rmtree(self.directory / name, ignore_errors=True)
            with contextlib.suppress(OSError):
                self.directory.rmdir()  # only if nothing else is in it
