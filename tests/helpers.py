"""Helpers for tests that run stages the way dvc.yaml does."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run_module(module: str, cwd: Path, *args: str) -> subprocess.CompletedProcess:
    """Run ``python -m module`` the way dvc.yaml does, in ``cwd``."""
    return subprocess.run([sys.executable, "-m", module, *args], cwd=cwd, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})


def copy_project(dest: Path) -> None:
    """The tracked project files a user's clone has (no data, no results)."""
    for name in ("pipeline", "dvc.yaml", "params.yaml", ".dvcignore"):
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, dest / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(src, dest / name)
