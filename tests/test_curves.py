"""The run's dvclive summary and curves, written through Accelerate's tracker as the training loop does."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
from accelerate import Accelerator

from pipeline.training.curves import CurvePreview, add_to_summary, publish_curves


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
    assert (tmp_path / "results/plots/lr.tsv").read_text() == "step\tseries\tlr\n1\tblock0\t0.0001\n"
    assert not (tmp_path / "results/plots/metrics/lr").exists()


def test_each_chart_of_several_values_is_published_as_one_long_file(tmp_path):
    """dvclive's file per value: the rates and loss terms go into lr.tsv and loss.tsv (a line each in the chart),
    the values drawn alone (the distillation loss, val scores, time) stay where dvclive wrote them."""
    live = tmp_path / "live"
    files = {"lr/block0.tsv": [1e-5, 2e-5], "lr/teacher.tsv": [3e-5, 4e-5], "train/loss.tsv": [0.5, 0.4],
             "train/loss_laplacian.tsv": [0.3, 0.2], "train/loss_distill.tsv": [0.9, 0.8],
             "train/seconds.tsv": [1.0, 2.0], "val/psnr.tsv": [30.0, 31.0]}
    for name, values in files.items():
        path = live / "plots/metrics" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        pd.DataFrame({"step": [1, 2], path.stem: values}).to_csv(path, sep="\t", index=False)
    (live / "metrics.json").write_text(json.dumps({"step": 2}))
    publish_curves(live, tmp_path / "results")
    plots = tmp_path / "results/plots"
    lr = pd.read_csv(plots / "lr.tsv", sep="\t")
    assert lr.to_dict("list") == {"step": [1, 2, 1, 2], "series": ["block0", "block0", "teacher", "teacher"],
                                  "lr": [1e-5, 2e-5, 3e-5, 4e-5]}
    loss = pd.read_csv(plots / "loss.tsv", sep="\t")
    assert loss.to_dict("list") == {"step": [1, 2, 1, 2], "series": ["total", "total", "laplacian", "laplacian"],
                                    "loss": [0.5, 0.4, 0.3, 0.2]}
    alone = sorted(str(p.relative_to(plots)) for p in plots.rglob("*.tsv"))
    assert alone == ["loss.tsv", "lr.tsv", "metrics/train/loss_distill.tsv", "metrics/train/seconds.tsv",
                     "metrics/val/psnr.tsv"]


def test_a_run_without_a_val_gain_publishes_the_steps_only(tmp_path):
    (tmp_path / "live/plots").mkdir(parents=True)
    (tmp_path / "live/metrics.json").write_text(json.dumps({"step": 4, "train": {"loss": 0.5}, "val": {"psnr": 30}}))
    publish_curves(tmp_path / "live", tmp_path / "results")
    assert json.loads((tmp_path / "results/metrics.json").read_text()) == {"step": 4}


def dvclive_run(live, steps: int) -> None:
    for name in ("lr/block0.tsv", "train/loss.tsv", "val/psnr.tsv"):
        path = live / "plots/metrics" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        pd.DataFrame({"step": list(range(1, steps + 1)), path.stem: [0.1] * steps}).to_csv(path, sep="\t", index=False)


def test_under_dvc_the_run_in_progress_shows_its_curves_marked_as_a_preview(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DVC_STAGE", "train")
    dvclive_run(Path("live"), 2)
    preview = CurvePreview(Path("live"), Path("results/train"), every_s=3600)
    preview.update(now=True)
    assert pd.read_csv("results/train/plots/lr.tsv", sep="\t")["step"].tolist() == [1, 2]
    assert Path("results/train/.preview").read_text() == "results/train/plots\n"
    dvclive_run(Path("live"), 3)
    preview.update()  # within every_s of the last: not rewritten
    assert len(pd.read_csv("results/train/plots/lr.tsv", sep="\t")) == 2
    preview.update(now=True)  # a validation
    assert len(pd.read_csv("results/train/plots/lr.tsv", sep="\t")) == 3
    assert pd.read_csv("results/train/plots/metrics/val/psnr.tsv", sep="\t")["step"].tolist() == [1, 2, 3]
    Path("live/metrics.json").write_text(json.dumps({"step": 3}))
    publish_curves(Path("live"), Path("results/train"))  # the completed run: no preview left, nor its mark
    assert sorted(p.name for p in Path("results/train").iterdir()) == ["metrics.json", "plots"]


def test_outside_dvc_a_run_leaves_the_published_curves_alone_until_it_completes(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DVC_STAGE", raising=False)
    dvclive_run(Path("live"), 2)
    CurvePreview(Path("live"), Path("results/train")).update(now=True)
    assert not Path("results/train").exists()
