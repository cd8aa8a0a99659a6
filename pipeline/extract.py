"""Stage ``extract``: cut the footage into (I0, It, I1) triplets with leak-free train/val/test splits.

Reads: everything under the folder ``sources.videos`` names (video files, folders of numbered images,
Vimeo-90K; read in place, never copied whole); params ``sources.videos``, ``extract``.
Writes: ``data/triplets/`` with ``frames/<clip>/<index>.png`` (each frame a kept triplet uses, stored once,
lossless), ``manifest.csv`` (every candidate triplet, kept or not, with its scores and the reason) and
``report.json`` (counts per split and per reason, each clip, and any skipped file).

How a clip is cut: :mod:`pipeline.footage.extraction` (windows, scores, the frames stored) and
:mod:`pipeline.footage.windows` (splits, reasons to drop, the per-clip cap); clips run in parallel
(:mod:`pipeline.footage.corpus`).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from pipeline.core.atomic import atomic_dir
from pipeline.core.errors import UserError
from pipeline.core.params import load_params
from pipeline.core.paths import TRIPLETS_DIR
from pipeline.core.runner import user_facing
from pipeline.footage.corpus import build_manifest, plan_tasks, run_tasks, summarise

log = logging.getLogger("pipeline.extract")

# the params this stage reads: its `params:` in dvc.yaml (their cross-field checks run here)
PARAMS = ("sources.videos", "extract")


@user_facing
def main() -> None:
    params = load_params(sections=PARAMS)
    source = Path(params.sources.videos)
    if not source.is_dir():
        raise UserError(f"sources.videos {source}: no such folder")
    tasks, skipped = plan_tasks(source, params.extract, params.extract.split_seed)
    with atomic_dir(TRIPLETS_DIR) as tmp:
        results = run_tasks(tasks, tmp)
        manifest = build_manifest([row for result in results for row in result["rows"]])
        report = summarise(manifest, source, results, skipped, params.extract)
        manifest.to_csv(tmp / "manifest.csv", index=False, float_format="%.6g")
        (tmp / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    for problem in report["skipped"]:
        log.warning("skipped %s: %s", problem["file"], problem["problem"])
    log.info("kept %s triplets; dropped %s", report["kept"], report["dropped"])


if __name__ == "__main__":
    main()
