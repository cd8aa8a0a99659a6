"""The two paths a user names in ``params.yaml``'s ``sources``, checked before any stage touches an output.

``dvc repro`` deletes a stage's outputs before it finds that one of the stage's dependencies is missing, and then
stops with a bare ``[Errno 2]``: a typo in ``sources.checkpoint`` or ``sources.videos`` would cost the user
``data/demo``, ``models/pretrained`` or ``data/triplets``. The stage ``check_sources`` runs these checks first
whenever ``sources`` changes, so such a mistake stops there, in one line, with every output still in place.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from pipeline.core.errors import UserError
from pipeline.core.paths import DEMO_DIR, REGISTRY_DIR

KEPT_NOTE = "nothing was changed"
URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")  # https://, s3://, hf://: not fetched at run time


def known_checkpoints() -> str:
    """The registry entries in ``checkpoints/`` (checkpoints fetch knows how to download), comma-separated."""
    return ", ".join(str(p) for p in sorted(REGISTRY_DIR.glob("*.yaml"))) or "none"


def local_path(named: str | Path, label: str, expected: str = "a flownet.pkl file") -> Path:
    """``named`` (as the user wrote it) as a local path: one line for a URL, which nothing fetches at run time, and
    for a folder where ``expected`` is a file."""
    text = str(named)
    if URL.match(text):
        raise UserError(f"{label} {text}: a URL; URLs are not fetched at run time: download the file and give its "
                        "local path")
    path = Path(text)
    if path.is_dir():
        inside = f" such as {path / 'flownet.pkl'}" if (path / "flownet.pkl").is_file() else ""
        raise UserError(f"{label} {text}: is a folder; expected {expected}{inside}")
    return path


def check_checkpoint_path(raw: str) -> Path:
    """``sources.checkpoint`` as a path to a readable file: a ``flownet.pkl`` or a registry entry."""
    expected = f"the path of a flownet.pkl file, or one of the known checkpoints: {known_checkpoints()}"
    try:
        path = local_path(raw, "sources.checkpoint")
    except UserError as err:
        raise UserError(f"{err} ({KEPT_NOTE})") from None
    if not path.is_file():
        raise UserError(f"sources.checkpoint {raw}: no such file; expected {expected} ({KEPT_NOTE})")
    if not os.access(path, os.R_OK):
        raise UserError(f"sources.checkpoint {raw}: not readable ({KEPT_NOTE})")
    return path


def check_videos_path(raw: str) -> Path:
    """``sources.videos`` as a readable folder of clips (the demo folder is fetch's own output)."""
    expected = f"a folder of your clips, or {DEMO_DIR} for the demo"
    if URL.match(raw):
        raise UserError(f"sources.videos {raw}: a URL; URLs are not fetched at run time: download the clips and "
                        f"give their folder ({KEPT_NOTE})")
    path = Path(raw)
    if path == DEMO_DIR:
        return path
    if not path.exists():
        raise UserError(f"sources.videos {raw}: no such folder; expected {expected} ({KEPT_NOTE})")
    if not path.is_dir():
        raise UserError(f"sources.videos {raw}: a file; expected {expected} ({KEPT_NOTE})")
    if not os.access(path, os.R_OK | os.X_OK):
        raise UserError(f"sources.videos {raw}: not readable ({KEPT_NOTE})")
    return path
