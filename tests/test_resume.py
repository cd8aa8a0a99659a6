"""Resumable training state (pipeline.training.resume): checkpoints written atomically, resumed only by a run with
the same fingerprint, cleared when the run completes."""

from __future__ import annotations

import json

import torch
from accelerate import Accelerator

from pipeline.training.resume import LATEST, TrainState, fingerprint


def prepared(seed: float) -> tuple[Accelerator, torch.nn.Module, torch.optim.Optimizer]:
    accelerator = Accelerator(cpu=True)
    model = torch.nn.Linear(2, 1)
    with torch.no_grad():
        model.weight.fill_(seed)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    model, optimizer = accelerator.prepare(model, optimizer)
    return accelerator, model, optimizer


def test_the_fingerprint_covers_params_and_file_contents(tmp_path):
    data = tmp_path / "plan.csv"
    data.write_text("a\n1\n")
    first = fingerprint(1e-4, {"seed": 1}, files=(data,))
    assert first == fingerprint(1e-4, {"seed": 1}, files=(data,))
    assert first != fingerprint(3e-5, {"seed": 1}, files=(data,))
    data.write_text("a\n2\n")
    assert first != fingerprint(1e-4, {"seed": 1}, files=(data,))


def test_a_saved_state_resumes_the_same_run_and_is_ignored_by_another(tmp_path):
    accelerator, model, _ = prepared(1.0)
    state = TrainState(accelerator, "run-a", tmp_path / "state")
    assert state.restore() == 0  # nothing saved yet
    state.save(40)
    assert json.loads((tmp_path / "state" / LATEST / "step.json").read_text()) == {"step": 40, "key": "run-a"}
    assert not list((tmp_path / "state").glob(".*"))  # the temporary and the previous copy are gone
    with torch.no_grad():
        model.weight.fill_(5.0)
    again = TrainState(accelerator, "run-a", tmp_path / "state")
    assert again.restore() == 40 and torch.all(model.weight == 1.0)  # the checkpoint's weights are back
    other = TrainState(accelerator, "run-b", tmp_path / "state")
    with torch.no_grad():
        model.weight.fill_(5.0)
    assert other.restore() == 0 and torch.all(model.weight == 5.0)  # another run's state is left alone


def test_a_later_checkpoint_replaces_the_earlier_and_clear_removes_the_state(tmp_path):
    accelerator, _, _ = prepared(1.0)
    state = TrainState(accelerator, "run", tmp_path / "state")
    state.save(40)
    state.save(80)
    assert TrainState(accelerator, "run", tmp_path / "state").restore() == 80
    state.clear()
    assert not (tmp_path / "state").exists()
