"""The run's dvclive summary and curves, written through Accelerate's tracker as the training loop does."""

from __future__ import annotations

import json

from accelerate import Accelerator

from pipeline.training.curves import add_to_summary


def test_the_summary_step_is_the_number_of_steps_run(tmp_path, monkeypatch):
    """As ``fit`` logs: the validation at step 0, optimizer steps 1 .. 3, then the val gain, then the end."""
    monkeypatch.chdir(tmp_path)
    accelerator = Accelerator(cpu=True, log_with="dvclive")
    accelerator.init_trackers("train", init_kwargs={"dvclive": {
        "dir": "live", "dvcyaml": False, "save_dvc_exp": False, "resume": False}})
    accelerator.log({"val/psnr": 30.0}, step=0)
    for step in (1, 2, 3):
        accelerator.log({"train/loss": 1.0 / step}, step=step)
    add_to_summary(accelerator, "val", {"gain": 0.5})
    accelerator.end_training()
    summary = json.loads((tmp_path / "live/metrics.json").read_text())
    assert summary["step"] == 3
    assert summary["val"] == {"psnr": 30.0, "gain": 0.5} and summary["train"]["loss"] == 1.0 / 3
