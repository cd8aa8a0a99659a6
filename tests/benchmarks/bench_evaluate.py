"""Benchmark of the evaluate stage (run on demand, not part of the test suite):

    python -m tests.benchmarks.bench_evaluate [--triplets 8] [--repeats 2]

Needs ``data/triplets`` (the demo's ``bigbuckbunny.mp4``, 1280x720) and both checkpoints (``dvc repro train``).
Prints, all measured in the same run on the same real 1280x720 triplets:

1. triplets/s of each method of ``evaluate.methods`` through the stage's scoring loop (``score_triplets``: read
   the PNGs, predict in batches of ``evaluate.batch_size``, round, every metric of ``evaluate.metrics``);
2. the bare reference for the same work with the frames already in memory: the method alone (for the models,
   ``model.interpolate`` on ready tensors) plus the metric functions alone on ready uint8 arrays, and the ratio
   stage / reference (1.0: the stage adds nothing; target >= 0.9);
3. all methods together, as the stage runs them (the frames are read once for all);
4. peak memory and time of the stage's scoring loop (every method, every metric) on two 3840x2160 triplets (the
   1280x720 frames upscaled), at ``scale: auto`` (0.5 at this size) and at 1.0.

Stage and reference are timed in turn, best of ``--repeats`` each, after one warm-up pass, so that load from
other processes hits both alike.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import torch
import yaml

from pipeline.core.params import Params, load_params
from pipeline.core.paths import FINETUNED, PRETRAINED
from pipeline.footage.triplets import read_triplet, split_triplets
from pipeline.models import load_checkpoint, to_batch
from pipeline.scoring.batches import model_scale, read_chunk, same_size_chunks, score_triplets
from pipeline.scoring.interpolators import build_methods
from pipeline.scoring.metrics import METRICS, prediction_to_255

ROOT = Path(__file__).resolve().parents[2]
CLIP = "bigbuckbunny.mp4"  # the demo clip at 1280x720
CHECKPOINTS = {"finetuned": FINETUNED, "pretrained": PRETRAINED}

PEAK_4K = """
import resource, sys, time
import torch
from pipeline.footage.triplets import split_triplets
from pipeline.scoring.batches import score_triplets
from pipeline.scoring.interpolators import build_methods
from pipeline.core.params import load_params
params = load_params()
cfg = params.evaluate
rows = split_triplets("test")
predictors = build_methods(cfg.methods, params, torch.device("cpu"))
began = time.perf_counter()
score_triplets(rows, predictors, cfg.metrics, cfg.round_prediction, cfg.batch_size)
print(time.perf_counter() - began, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def clip_rows(count: int) -> pd.DataFrame:
    """``count`` kept triplets of the 1280x720 clip, from every split (the test split alone has few), spread evenly."""
    rows = pd.concat([split_triplets(s) for s in ("train", "val", "test")], ignore_index=True)
    rows = rows[rows["clip"] == CLIP].reset_index(drop=True)
    if rows.empty:
        sys.exit(f"data/triplets has no triplet of {CLIP}: run `dvc repro extract` on the demo corpus")
    picked = np.linspace(0, len(rows) - 1, min(count, len(rows))).round().astype(int)
    return rows.iloc[picked].reset_index(drop=True)


def best_seconds(repeats: int, *works: Callable[[], object]) -> list[float]:
    """Best time of each of ``works``, run in turn ``repeats`` times after one untimed warm-up pass."""
    best = [float("inf")] * len(works)
    for repeat in range(repeats + 1):
        for i, work in enumerate(works):
            began = time.perf_counter()
            work()
            if repeat:
                best[i] = min(best[i], time.perf_counter() - began)
    return best


def bare_prediction(name: str, params: Params, predictors: dict) -> Callable[[np.ndarray, np.ndarray, float], object]:
    """The method without the stage around it; for a model, ``interpolate`` on tensors prepared beforehand."""
    if name not in CHECKPOINTS:
        return predictors[name]
    model = load_checkpoint(CHECKPOINTS[name], params.train.arch)
    tensors: dict[int, torch.Tensor] = {}

    @torch.inference_mode()
    def forward(img0: np.ndarray, img1: np.ndarray, timestep: float) -> torch.Tensor:
        key = id(img0)
        if key not in tensors:  # converted once, outside the timed repeats
            tensors[key] = to_batch(img0), to_batch(img1)
        batch0, batch1 = tensors[key]
        return model.interpolate(batch0, batch1, timestep=timestep,
                                 scale=model_scale(params.evaluate.scale, *img0.shape[1:3]))

    return forward


def time_method(name: str, rows: pd.DataFrame, params: Params, predictors: dict, repeats: int) -> dict[str, float]:
    """Seconds for all ``rows``: the stage's loop, the bare method and the bare metrics."""
    cfg = params.evaluate
    chunks = [read_chunk(c) for c in same_size_chunks(rows, cfg.batch_size)]  # decoded beforehand
    predict = bare_prediction(name, params, predictors)
    preds = [[prediction_to_255(p, cfg.round_prediction) for p in predictors[name](img0, img1, 0.5)]
             for img0, _, img1 in chunks]
    stage, bare, metrics = best_seconds(
        repeats,
        lambda: score_triplets(rows, {name: predictors[name]}, cfg.metrics, cfg.round_prediction, cfg.batch_size),
        lambda: [predict(img0, img1, 0.5) for img0, _, img1 in chunks],
        lambda: [METRICS[key](p, t) for (_, truth, _), ps in zip(chunks, preds, strict=True)
                 for p, t in zip(ps, truth, strict=True)
                 for key in cfg.metrics])
    return {"stage": stage, "bare": bare, "metrics": metrics}


def peak_4k(scale: str, rows: pd.DataFrame) -> tuple[float, float]:
    """(seconds, peak RSS in MB) of a fresh process scoring two 3840x2160 triplets with every method and metric,
    in a scratch project whose test split holds them."""
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        frames = work / "data/triplets/frames"
        frames.mkdir(parents=True)
        records = []
        for i, (_, row) in enumerate(rows.head(2).iterrows()):
            names = [f"frames/{i}_{k}.png" for k in range(3)]
            for name, frame in zip(names, read_triplet(row), strict=True):
                big = cv2.resize(frame, (3840, 2160), interpolation=cv2.INTER_CUBIC)
                cv2.imwrite(str(work / "data/triplets" / name), cv2.cvtColor(big, cv2.COLOR_RGB2BGR))
            records.append({**row.to_dict(), "split": "test", "height": 2160, "width": 3840, "path0": names[0],
                            "path_t": names[1], "path1": names[2]})
        pd.DataFrame(records).to_csv(work / "data/triplets/manifest.csv", index=False)
        os.symlink(ROOT / "models", work / "models")
        params = yaml.safe_load((ROOT / "params.yaml").read_text())
        params["evaluate"]["scale"] = scale
        (work / "params.yaml").write_text(yaml.safe_dump(params))
        done = subprocess.run([sys.executable, "-c", PEAK_4K], cwd=work, capture_output=True, text=True,
                              env={**os.environ, "PYTHONPATH": str(ROOT)})
    if done.returncode:
        sys.exit(done.stderr[-3000:])
    seconds, rss_kb = done.stdout.split()
    return float(seconds), int(rss_kb) / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--triplets", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=2, help="best of this many timings of each measurement")
    parser.add_argument("--skip-4k", action="store_true")
    args = parser.parse_args()
    os.chdir(ROOT)
    params = load_params()
    cfg = params.evaluate
    rows = clip_rows(args.triplets)
    predictors = build_methods(cfg.methods, params, torch.device("cpu"))
    print(f"{len(rows)} triplets of {CLIP} (1280x720), batches of {cfg.batch_size}, metrics {', '.join(cfg.metrics)}, "
          f"{torch.get_num_threads()} torch threads, load average {os.getloadavg()[0]:.2f}")
    n = len(rows)
    for name in cfg.methods:
        t = time_method(name, rows, params, predictors, args.repeats)
        reference = t["bare"] + t["metrics"]
        print(f"{name:>10}: stage {n / t['stage']:6.2f} triplets/s | bare {name} {n / t['bare']:7.2f}/s + bare "
              f"metrics {n / t['metrics']:5.2f}/s = {n / reference:6.2f} triplets/s | ratio "
              f"{reference / t['stage']:.2f} (target >= 0.9)")
    (all_s,) = best_seconds(1, lambda: score_triplets(rows, predictors, cfg.metrics, cfg.round_prediction,
                                                       cfg.batch_size))
    print(f"all {len(cfg.methods)} methods as the stage runs them: {n / all_s:.3f} triplets/s "
          f"({all_s / n:.2f} s per triplet)")
    if not args.skip_4k:
        for scale in ("auto", 1.0):
            seconds, rss = peak_4k(scale, rows)
            print(f"two 3840x2160 triplets, every method and metric, scale {scale}: {seconds / 2:.1f} s per triplet, "
                  f"peak RSS {rss:.0f} MB")

if __name__ == "__main__":
    main()
