"""End to end, for real: `dvc repro` on the demo corpus with tiny settings in a temporary git repo, then
`dvc exp run --set-param lr=...`, which must rerun only train and evaluate and train at exactly that rate."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pandas as pd
import pytest

from pipeline.footage.triplets import split_spans
from tests.helpers import ENV, copy_reproduced, loss_curve, lr_curve, sh, stop_when, train_params

pytestmark = [pytest.mark.slow, pytest.mark.network]  # dvc repro in a temporary repo; fetch downloads the demo


@pytest.fixture(scope="module")
def project(tmp_path_factory, reproduced) -> tuple[Path, str]:
    return copy_reproduced(reproduced, tmp_path_factory.mktemp("project"))


def test_repro_runs_every_stage_and_writes_metrics(project):
    root, log = project
    for stage in ("check_sources", "fetch", "extract", "augment", "train", "evaluate", "lr_find"):
        assert f"Running stage '{stage}'" in log
    headline = json.loads((root / "results/evaluate/metrics.json").read_text())
    assert list(headline) == ["psnr", "vmaf", "improved", "pretrained", "triplets"] and headline["triplets"] == 2
    for gain in (headline["psnr"], headline["vmaf"]):
        assert list(gain) == ["gain", "low", "high"] and gain["low"] <= gain["gain"] <= gain["high"]
    metrics = json.loads((root / "results/evaluate/details.json").read_text())
    assert metrics["triplets"] == 2
    assert round(metrics["finetuned_minus_pretrained"]["psnr"], 4) == headline["psnr"]["gain"]  # 4 decimals
    assert sh(root, "git", "check-ignore", "results/evaluate/details.json").returncode == 0  # DVC-cached, not in git
    spans = split_spans("test", 1, root / "data/triplets")  # one run of test frames per test block
    assert metrics["segments"]["segments"] == len(spans) >= 2  # every clip has a test block
    assert metrics["segments"]["frames"] == 2 * len(spans)  # 0.16 s (4 frames): two interpolated per segment
    assert len(list((root / "results/evaluate/videos").iterdir())) == 1
    for method in ("finetuned", "pretrained", "repeat", "blend", "dis_flow"):
        assert 10 < metrics[method]["psnr"] < 60 and 0 < metrics[method]["ssim"] <= 1
        assert 10 < metrics[method]["psnr_y"] < 60 and 0 < metrics[method]["ssim_matlab"] <= 1
    gain = metrics["finetuned_minus_pretrained"]
    assert gain["psnr_ci95_low"] <= gain["psnr"] <= gain["psnr_ci95_high"]
    assert sum(clip["triplets"] for clip in metrics["per_clip"].values()) == 2
    table = pd.read_csv(root / "results/evaluate/per_triplet.csv")
    assert len(table) == 2 and {"motion", "timestep", "dis_flow_psnr", "finetuned_ssim_matlab"} <= set(table.columns)
    assert lr_curve(root)["block2"].iloc[-1] == pytest.approx(3e-5)
    found = json.loads((root / "results/lr_find/metrics.json").read_text())
    assert set(found["suggested"]) == {"steepest", "minimum_div_10", "valley"} and found["steps_run"] >= 6
    assert not (root / "state/train").exists()  # resumable state is removed once the run completes


def test_repro_again_does_nothing(project):
    root, _ = project
    done = sh(root, "dvc", "repro")
    assert "Running stage" not in done.stdout


def test_plots_show_renders_every_plot_in_one_page(project, tmp_path):
    root, _ = project
    done = sh(root, "dvc", "plots", "show", "-o", str(tmp_path / "plots"))
    assert "WARNING" not in done.stdout + done.stderr and "ERROR" not in done.stdout + done.stderr
    html = (tmp_path / "plots/index.html").read_text()
    for title in ("Training loss and its terms", "Learning rate per parameter group",
                  "results/train/plots/metrics/val/psnr.tsv", "pretrained vs fine-tuned PSNR per test triplet",
                  "test PSNR by motion", "Learning-rate range test",
                  "PSNR and VMAF of every interpolated frame of the rebuilt test segments"):
        assert html.count(title) == 1, title  # each chart drawn, once
    for field in ("finetuned_psnr", "pretrained_psnr", "repeat_psnr", "blend_psnr", "dis_flow_psnr", "ffmpeg_mci_psnr",
                  "finetuned_vmaf", "ffmpeg_mci_vmaf"):
        assert f'"{field}"' in html  # a line per method in the motion and segment charts (their templates' folds)
    previews = sorted(p.name for p in (root / "results/evaluate/preview").iterdir())
    assert len(previews) == 1  # videos.max_clips: 1 in the tiny settings
    assert f'<img src="static/workspace_results_evaluate_preview_{previews[0]}">' in html
    images = sorted(p.name for p in (root / "results/evaluate/examples").iterdir())
    assert images == ["degraded_1.png", "improved_1.png"]  # two test triplets: one of each
    for name in images:
        assert f'<img src="static/workspace_results_evaluate_examples_{name}">' in html
        assert (tmp_path / f"plots/static/workspace_results_evaluate_examples_{name}").stat().st_size > 10_000


def test_changing_lr_reruns_only_train_and_evaluate(project):
    root, _ = project
    sh(root, "git", "add", "-A")
    sh(root, "git", "commit", "-qm", "baseline results", "--allow-empty")
    done = sh(root, "dvc", "exp", "run", "--set-param", "lr=1e-5")
    log = done.stdout + done.stderr
    for stage in ("check_sources", "fetch", "extract", "augment", "lr_find"):
        assert f"Stage '{stage}' didn't change, skipping" in log
    for stage in ("train", "evaluate"):
        assert f"Running stage '{stage}'" in log
    assert "lr: 1e-05" in (root / "params.yaml").read_text()  # DVC's spelling, a string to YAML 1.1
    curve = lr_curve(root)
    assert curve["block2"].iloc[-1] == 1e-5  # exactly, not approximately
    diff = sh(root, "dvc", "metrics", "diff", "--json")
    changed = json.loads(diff.stdout)
    headline = {"psnr.gain", "psnr.low", "psnr.high", "vmaf.gain", "vmaf.low", "vmaf.high",
                "improved", "val.gain", "val.low", "val.high", "val.gain_step", "step"}
    assert {"psnr.gain", "psnr.low", "psnr.high"} <= set(changed["results/evaluate/metrics.json"])
    assert set(changed["results/evaluate/metrics.json"]) | set(changed["results/train/metrics.json"]) <= headline
    rows = [line for line in sh(root, "dvc", "metrics", "diff").stdout.splitlines() if "metrics.json" in line]
    assert 3 <= len(rows) <= len(headline)  # the headline that moved, not every number evaluate and train report
    # what `dvc exp show --only-changed` lists for the lr run: the headline, lr and the fine-tuned weights' hash
    shown = sh(root, "dvc", "exp", "show", "--only-changed", "--csv").stdout.splitlines()[0].split(",")
    listed = set(shown) - {"Experiment", "rev", "typ", "Created", "parent", "State", "Executor"}
    assert {"psnr.gain", "lr"} <= listed <= headline | {"lr", "models/finetuned/flownet.pkl"}
    # as a person sees it on a 200-column terminal: no line wider, no column name cut
    table = subprocess.run(["dvc", "exp", "show", "--only-changed", "--no-pager"], cwd=root, capture_output=True,
                           text=True, env={**ENV, "COLUMNS": "200"})
    assert table.returncode == 0 and max(len(line) for line in table.stdout.splitlines()) <= 200, table.stdout
    assert all(name in table.stdout for name in ("psnr.gain", "psnr.low", "psnr.high", "val.gain", "lr")), table.stdout


def test_going_back_to_the_learning_rate_restores_train_and_evaluate_from_the_run_cache(project):
    """After the lr experiment above, the committed lr again: DVC's run-cache puts back the baseline's weights,
    curves and metrics without training, byte for byte."""
    root, _ = project
    sh(root, "git", "checkout", "--", "params.yaml")
    back = sh(root, "dvc", "repro")
    log = back.stdout + back.stderr
    for stage in ("train", "evaluate"):
        assert f"Stage '{stage}' is cached - skipping run" in log
    assert sh(root, "git", "status", "--porcelain").stdout == ""  # dvc.lock, metrics and curves as committed
    assert "Data and pipelines are up to date" in sh(root, "dvc", "status").stdout  # weights and cached outputs


def test_an_interrupted_dvc_repro_resumes_with_every_logged_step(project):
    """The same through dvc repro, which deletes a stage's outputs before running it unless they persist:
    the resumed run must keep the curves logged before the interruption, validation at step 0 included."""
    root, _ = project
    train_params(root, steps=8, warmup_steps=2, checkpoint_every=2, val_every=4, num_workers=1)
    checkpoint = root / "state/train/latest/step.json"
    repro = ["dvc", "repro", "train"]
    code, _ = stop_when(root, repro, lambda _: checkpoint.exists())  # Ctrl-C once a checkpoint is saved
    assert code != 0 and checkpoint.exists()
    resumed = sh(root, *repro)
    assert "resuming from state/train/latest at step" in resumed.stdout + resumed.stderr
    curves = root / "results/train/plots/metrics"
    assert loss_curve(root)["step"].tolist() == list(range(1, 9))
    assert pd.read_csv(curves / "val/psnr.tsv", sep="\t")["step"].tolist() == [0, 4, 8]
    assert pd.read_csv(curves / "train/seconds.tsv", sep="\t")["seconds"].is_monotonic_increasing
    assert json.loads((root / "results/train/metrics.json").read_text())["step"] == 8  # the steps run
