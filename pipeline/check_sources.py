"""Stage ``check_sources``: the paths in ``sources`` exist and are what they should be, before anything else runs.

It reruns whenever ``sources`` changes and comes first (``fetch`` and ``extract`` depend on what it writes). DVC
deletes a stage's outputs before it notices a missing dependency, so without this stage a typo in
``sources.checkpoint`` or ``sources.videos`` would delete ``data/demo``, ``models/pretrained/flownet.pkl`` or
``data/triplets`` and end in DVC's bare ``[Errno 2]``; with it, the run stops here in one line and nothing else is
touched. See :mod:`pipeline.core.source_paths`. (A source deleted or moved while ``sources`` stays the same does
not rerun this stage: DVC then deletes those outputs and ``dvc checkout fetch extract`` brings them back.)

Reads: params ``sources``. Writes: ``data/sources.json`` (the two paths as given).
"""

from __future__ import annotations

import json
import logging

from pipeline.core.atomic import write_text
from pipeline.core.params import load_params
from pipeline.core.paths import SOURCES_RECORD
from pipeline.core.runner import user_facing
from pipeline.core.source_paths import check_checkpoint_path, check_videos_path

log = logging.getLogger("pipeline.check_sources")

PARAMS = ("sources",)  # the params dvc.yaml lists for this stage


@user_facing
def main() -> None:
    sources = load_params(sections=PARAMS).sources
    check_checkpoint_path(sources.checkpoint)
    check_videos_path(sources.videos)
    record = {"checkpoint": sources.checkpoint, "videos": sources.videos}
    write_text(SOURCES_RECORD, json.dumps(record, indent=2) + "\n")
    log.info("sources ok: checkpoint %s, videos %s", sources.checkpoint, sources.videos)


if __name__ == "__main__":
    main()
