"""The run's dvclive summary and curves, written through Accelerate's tracker as the training loop does."""

from __future__ import annotations

import json

from accelerate import Accelerator

from pipeline.training.curves import add_to_summary, publish_curves


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


def test_the_published_metrics_keep_the_val_gain_and_the_steps_and_the_curves_keep_every_value(tmp_path):
    """dvclive's summary has the last value of every curve; metrics.json keeps the headline, in order."""
    live = tmp_path / "live"
    (live / "plots/metrics/lr").mkdir(parents=True)
    (live / "plots/metrics/lr/block0.tsv").write_text("step\tblock0\n1\t0.0001\n")
    summary = {"val": {"psnr": 37.7, "ssim": 0.97, "gain_step": 160, "gain": 0.091965357, "low": -0.07,
                       "high": 0.25, "triplets": 28},
               "step": 161, "train": {"loss": 0.01, "loss_teacher": 0.004, "seconds": 2587.2},
               "lr": {"block0": 4e-10, "teacher": 4e-10}}
    (live / "metrics.json").write_text(json.dumps(summary))
    publish_curves(live, tmp_path / "results")
    published = json.loads((tmp_path / "results/metrics.json").read_text())
    assert list(published) == ["val", "step"] and published["step"] == 161
    assert list(published["val"].items()) == [("gain", 0.092), ("low", -0.07), ("high", 0.25),  # 4 decimals
                                              ("gain_step", 160), ("triplets", 28)]
    assert (tmp_path / "results/plots/metrics/lr/block0.tsv").read_text() == "step\tblock0\n1\t0.0001\n"


def test_a_run_without_a_val_gain_publishes_the_steps_only(tmp_path):
    (tmp_path / "live/plots").mkdir(parents=True)
    (tmp_path / "live/metrics.json").write_text(json.dumps({"step": 4, "train": {"loss": 0.5}, "val": {"psnr": 30}}))
    publish_curves(tmp_path / "live", tmp_path / "results")
    assert json.loads((tmp_path / "results/metrics.json").read_text()) == {"step": 4}
