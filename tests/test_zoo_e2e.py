"""End to end with a 4.x checkpoint, for real: a user's RIFE 4.26 ``flownet.pkl`` (official layout, with the
training-only tensors the official file carries), ``train.arch: auto`` and targets at every timestep."""

from __future__ import annotations

import pandas as pd
import pytest
import torch

from pipeline.models import expected_shapes
from tests.golden import seeded_state
from tests.helpers import lr_curve, new_project, sh

pytestmark = [pytest.mark.slow, pytest.mark.network]  # dvc repro in a temporary repo; fetch downloads the demo clips

EXTRAS = {"teacher.conv0.0.0.weight": torch.ones(4), "caltime.0.weight": torch.ones(2)}


def test_a_4_26_checkpoint_fine_tunes_on_every_timestep_and_keeps_its_keys(tmp_path):
    root = new_project(tmp_path / "project", {"sources": {"checkpoint": "flownet_v4.26.pkl"},
                                              "extract": {"gap": 2, "timesteps": "all"}}, commit=False)
    state = {f"module.{k}": v for k, v in {**seeded_state(expected_shapes("4.26")), **EXTRAS}.items()}
    torch.save(state, root / "flownet_v4.26.pkl")
    sh(root, "git", "add", "-A")
    sh(root, "git", "commit", "-qm", "project")
    done = sh(root, "dvc", "repro", "train")
    assert "RIFE 4.26" in done.stdout + done.stderr  # fetch recognised it
    timesteps = set(pd.read_csv(root / "data/augmented/plan.csv")["timestep"].round(3))
    assert len(timesteps) > 1 and timesteps <= {0.25, 0.5, 0.75}
    saved = torch.load(root / "models/finetuned/flownet.pkl", weights_only=True)
    assert saved.keys() == state.keys()  # the user's own key set, training-only tensors included
    assert all(torch.equal(saved[f"module.{k}"], v) for k, v in EXTRAS.items())
    assert any(not torch.equal(saved[k], state[k]) for k in saved)  # and the network did train
    assert not lr_curve(root, "block4").empty
    assert lr_curve(root, "encode")["encode"].iloc[-1] > 0
