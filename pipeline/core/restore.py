"""Putting a stage's previous outputs back after it failed under ``dvc repro``.

``dvc repro`` deletes a stage's outputs before it runs the command, so a stage that then fails would leave
nothing behind. When a stage run by DVC (``DVC_STAGE`` is set) fails, the outputs recorded for it in
``dvc.lock`` (the last successful run) are copied back from the DVC cache. Every output is in that cache: data
and models are cached outputs, and DVC's run-cache commits the git-tracked metrics and plots there as well.
A stage may show a preview of its run in progress in place of its outputs (training's curves): it lists them in
a :data:`PREVIEW_MARKER` file beside them, and they are removed before the restore.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path

import yaml

from pipeline.core.atomic import atomic_dir, atomic_path

log = logging.getLogger(__name__)

DVC_STAGE = "DVC_STAGE"  # set by dvc for the command of the stage it runs
DVC_ROOT = "DVC_ROOT"
# The pid of the process that restores for a stage run in several processes: the stage's own process (training's
# launcher) sets it before it starts its workers, which then leave the restore to it (it restores once they end).
RESTORER = "PIPELINE_RESTORER_PID"


# A file in an output's folder that lists the outputs a stage has written as a preview of the run in progress
# (training's curves, under dvc repro): they are removed, so put back, if the stage fails.
PREVIEW_MARKER = ".preview"


def mark_preview(folder: Path, outputs: list[str]) -> None:
    """Say that ``outputs`` (paths from the project's root) hold a preview of the run in progress."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / PREVIEW_MARKER).write_text("".join(f"{out}\n" for out in outputs))


def drop_previews(outputs: set[str], root: Path) -> None:
    """Remove what the preview markers beside ``outputs`` list (and the markers): what a failed run previewed is
    not its result."""
    for marker in {(root / path).parent / PREVIEW_MARKER for path in outputs}:
        if not marker.is_file():
            continue
        for line in marker.read_text().splitlines():
            path = root / line
            if path.is_dir():
                shutil.rmtree(path)
            elif path.exists():
                path.unlink()
        marker.unlink()


def reports_here() -> bool:
    """Whether this process puts the outputs back and says how the stage ended: yes, unless a launcher of ours
    started it (that launcher does both, once, after its workers end: a worker's own last line can be lost, as
    Accelerate's launcher kills a worker still unwinding 5 s after a SIGTERM)."""
    return os.environ.get(RESTORER, str(os.getpid())) == str(os.getpid())


def locked_outputs(stage: str, root: Path) -> list[dict]:
    """The ``outs`` that ``dvc.lock`` records for ``stage`` (empty before its first successful run)."""
    lock = root / "dvc.lock"
    if not lock.is_file():
        return []
    stages = (yaml.safe_load(lock.read_text()) or {}).get("stages", {})
    return list(stages.get(stage, {}).get("outs", []))


def git_tracked_outputs(stage: str, root: Path) -> set[str]:
    """Outputs of ``stage`` that dvc.yaml keeps out of the DVC cache (``cache: false``): git tracks those."""
    dvc_yaml = root / "dvc.yaml"
    if not dvc_yaml.is_file():
        return set()
    definition = (yaml.safe_load(dvc_yaml.read_text()) or {}).get("stages", {}).get(stage, {})
    return {path for kind in ("outs", "metrics", "plots") for entry in definition.get(kind) or []
            if isinstance(entry, dict) for path, options in entry.items()
            if isinstance(options, dict) and options.get("cache") is False}


def how_to_bring_back(stage: str, paths: list[str], tracked: set[str]) -> str:
    """What brings ``paths`` back: ``dvc checkout <stage>`` for DVC-cached outputs, ``git checkout`` for the rest."""
    cached = [path for path in paths if path not in tracked]
    committed = [path for path in paths if path in tracked]
    ways = []
    if cached:
        ways.append(f"`dvc checkout {stage}` puts back {', '.join(cached)} once the cache holds them (`dvc pull "
                    f"{stage}` fetches them from a DVC remote)")
    if committed:
        ways.append(f"`git checkout -- {' '.join(committed)}` puts back the committed copy")
    return "; ".join(ways)


def cache_dir(root: Path) -> Path:
    """The DVC cache's ``files/md5`` folder, as the project's DVC config sets it."""
    from dvc.repo import Repo  # imported here: only a failing stage under dvc pays for it

    with Repo(str(root)) as repo:
        return Path(repo.cache.local.path)


def object_path(cache: Path, md5: str) -> Path:
    return cache / md5[:2] / md5[2:]


def copy_object(cache: Path, md5: str, target: Path) -> None:
    with atomic_path(target) as tmp:
        shutil.copyfile(object_path(cache, md5), tmp)


def restore_output(out: dict, cache: Path, root: Path) -> bool:
    """Copy one recorded output back from the cache; False where the cache does not hold all of it."""
    md5, target = out.get("md5", ""), root / out["path"]
    if not md5 or not object_path(cache, md5).is_file():
        return False
    if not md5.endswith(".dir"):
        copy_object(cache, md5, target)
        return True
    entries = json.loads(object_path(cache, md5).read_text())
    if not all(object_path(cache, e["md5"]).is_file() for e in entries):
        return False
    with atomic_dir(target) as tmp:
        for entry in entries:
            dest = tmp / entry["relpath"]
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(object_path(cache, entry["md5"]), dest)
    return True


def restore_after_failure() -> None:
    """Under ``dvc repro``: put back each output of the failed stage that is missing now (logged, never raises)."""
    stage = os.environ.get(DVC_STAGE)
    if not stage or not reports_here():
        return  # the launcher that started this process restores after it ends
    if os.environ.get("LOCAL_RANK", "0") != "0":  # one process per machine restores
        return
    root = Path(os.environ.get(DVC_ROOT, "."))
    try:
        drop_previews(git_tracked_outputs(stage, root), root)
        missing = [out for out in locked_outputs(stage, root) if not (root / out["path"]).exists()]
        if not missing:
            return
        tracked = git_tracked_outputs(stage, root)
        cache = cache_dir(root)
        restored = [out["path"] for out in missing if restore_output(out, cache, root)]
    except Exception as err:  # restoring is a courtesy: never hide the stage's own error behind another
        log.warning("could not restore the previous outputs of %s (%s); `dvc checkout %s` brings back what the DVC "
                    "cache holds, `git checkout -- <file>` the git-tracked metrics and plots", stage, err, stage)
        return
    lost = [out["path"] for out in missing if out["path"] not in restored]
    if restored:
        log.info("restored the previous outputs of %s from the DVC cache: %s", stage, ", ".join(restored))
    if lost:
        log.warning("not in the DVC cache, so not restored: %s; %s", ", ".join(lost),
                    how_to_bring_back(stage, lost, tracked))
