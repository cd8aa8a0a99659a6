"""Scoring the test split: every kept test triplet by every method, and each clip's rebuilt test segment
(:mod:`pipeline.scoring.segments`). A triplet that is also an interval of a segment is predicted there, once;
only ``ffmpeg_mci`` scores it apart (on its two frames)."""

from __future__ import annotations

import logging
from contextlib import ExitStack

import numpy as np
import pandas as pd

from pipeline.core.atomic import atomic_dir
from pipeline.core.params import Params
from pipeline.core.paths import EVALUATE_RESULTS
from pipeline.scoring.batches import Predictor, score_triplets
from pipeline.scoring.segment_plan import Segment
from pipeline.scoring.segments import SEQUENCE_METHOD, Rebuilder, Rebuilt
from pipeline.scoring.watch import fill_empty_previews

log = logging.getLogger("pipeline.evaluate")


def triplet_keys(rows: pd.DataFrame) -> list[tuple[str, int, int, float]]:
    return [(c, int(f0), int(f1), round(float(t), 6)) for c, f0, f1, t in
            zip(rows["clip"], rows["frame0"], rows["frame1"], rows["timestep"], strict=True)]


def score_with_segments(rows: pd.DataFrame, predictors: dict[str, Predictor], params: Params,
                        segments: list[Segment], seconds: dict[str, float]) -> tuple[pd.DataFrame, Rebuilt]:
    """Scores of every triplet (as :func:`score_triplets`) and the rebuilt segments. A triplet that is also an
    interval of a segment is predicted there, once; only ``ffmpeg_mci`` scores it apart (on its two frames)."""
    cfg = params.evaluate
    planned = {key for seg in segments for key in seg.keys()}
    shared = np.array([key in planned for key in triplet_keys(rows)], dtype=bool)
    log.info("%d rebuilt segment(s), %d interpolated frames; %d of the %d triplets are rebuilt intervals",
             len(segments), sum(s.pairs * (s.step - 1) for s in segments), shared.sum(), len(rows))
    rest = score_triplets(rows[~shared], predictors, cfg.metrics, cfg.round_prediction, cfg.batch_size,
                          progress=True, seconds=seconds)
    with ExitStack() as stack:
        videos = stack.enter_context(atomic_dir(EVALUATE_RESULTS / "videos"))
        previews = stack.enter_context(atomic_dir(EVALUATE_RESULTS / "preview"))
        rebuilt = Rebuilder(predictors, params, set(triplet_keys(rows[shared])), videos, previews,
                            seconds).run(segments)
        fill_empty_previews(previews, cfg.videos)
    parts = [rest]
    if shared.any():
        from_segments = pd.DataFrame([rebuilt.triplet_scores[k] for k in triplet_keys(rows[shared])],
                                     index=rows.index[shared])
        if SEQUENCE_METHOD in predictors:
            mci = score_triplets(rows[shared], {SEQUENCE_METHOD: predictors[SEQUENCE_METHOD]}, cfg.metrics,
                                 cfg.round_prediction, cfg.batch_size, seconds=seconds)
            from_segments = pd.concat([from_segments, mci], axis=1)
        parts.append(from_segments)
    columns = [f"{m}_{k}" for m in predictors for k in cfg.metrics]
    return pd.concat(parts).loc[rows.index, columns], rebuilt
