"""End to end, for real: `dvc repro` on the demo corpus with tiny settings in a temporary git repo, then
`dvc exp run --set-param lr=...`, which must rerun only train and evaluate and train at exactly that rate."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml

from pipeline.core.errors import EXIT_INTERRUPTED
from pipeline.footage.triplets import split_spans
from tests.helpers import ENV, copy_reproduced, lr_curve, sh

pytestmark = [pytest.mark.slow, pytest.mark.network]  # dvc repro in a temporary repo; fetch downloads the demo


def train_params(root: Path, lr: float | None = None, **changes) -> dict:
    """Write the committed tiny params with ``train`` changes (each test starts from the same baseline, without
    the checkpoint an earlier test's interrupted run may have left)."""
    shutil.rmtree(root / "state/train", ignore_errors=True)
    params = yaml.safe_load(sh(root, "git", "show", "HEAD:params.yaml").stdout)
    params["train"].update(changes)
    if lr is not None:
        params["lr"] = lr
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return params


@pytest.fixture(scope="module")
def project(tmp_path_factory, reproduced) -> tuple[Path, str]:
    return copy_reproduced(reproduced, tmp_path_factory.mktemp("project"))


def test_repro_runs_every_stage_and_writes_metrics(project):
    root, log = project
    for stage in ("check_sources", "fetch", "extract", "augment", "train", "evaluate", "lr_find"):
        assert f"Running stage '{stage}'" in log
    headline = json.loads((root / "results/evaluate/metrics.json").read_text())
    assert list(headline) == ["gain", "improved", "pretrained", "triplets"] and headline["triplets"] == 2
    gain = headline["gain"]
    assert gain["psnr_low"] <= gain["psnr"] <= gain["psnr_high"]
    assert gain["vmaf_low"] <= gain["vmaf"] <= gain["vmaf_high"]
    metrics = json.loads((root / "results/evaluate/details.json").read_text())
    assert metrics["triplets"] == 2 and metrics["finetuned_minus_pretrained"]["psnr"] == gain["psnr"]
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
    for title in ("Training loss", "Validation PSNR (dB)", "pretrained vs fine-tuned PSNR per test triplet",
                  "test PSNR by motion", "Learning-rate range test"):
        assert title in html
    for title in ("PSNR of every interpolated frame of the rebuilt test segments",
                  "VMAF of every interpolated frame of the rebuilt test segments"):
        assert title in html
    for field in ("finetuned_psnr", "pretrained_psnr", "repeat_psnr", "blend_psnr", "dis_flow_psnr", "ffmpeg_mci_psnr",
                  "finetuned_vmaf", "ffmpeg_mci_vmaf"):
        assert f'"field": "{field}"' in html  # a line per method in the motion and segment plots
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
    headline = {"gain.psnr", "gain.psnr_low", "gain.psnr_high", "gain.vmaf", "gain.vmaf_low", "gain.vmaf_high",
                "improved", "val.gain", "val.gain_low", "val.gain_high", "val.gain_step", "step"}
    assert {"gain.psnr", "gain.psnr_low", "gain.psnr_high"} <= set(changed["results/evaluate/metrics.json"])
    assert set(changed["results/evaluate/metrics.json"]) | set(changed["results/train/metrics.json"]) <= headline
    rows = [line for line in sh(root, "dvc", "metrics", "diff").stdout.splitlines() if "metrics.json" in line]
    assert 3 <= len(rows) <= len(headline)  # the headline that moved, not every number evaluate and train report
    # what `dvc exp show --only-changed` lists for the lr run: the headline, lr and the fine-tuned weights' hash
    shown = sh(root, "dvc", "exp", "show", "--only-changed", "--csv").stdout.splitlines()[0].split(",")
    listed = set(shown) - {"Experiment", "rev", "typ", "Created", "parent", "State", "Executor"}
    assert {"gain.psnr", "lr"} <= listed <= headline | {"lr", "models/finetuned/flownet.pkl"}


def test_interrupted_training_resumes_to_identical_weights(project):
    """Ctrl-C after a checkpoint, rerun: the run continues from it and ends bit-identical to an uninterrupted one."""
    root, _ = project
    train_params(root, steps=40, warmup_steps=4, checkpoint_every=5, val_every=100)
    weights = root / "models/finetuned/flownet.pkl"
    train = [sys.executable, "-m", "pipeline.train"]
    sh(root, *train)
    uninterrupted = torch.load(weights, weights_only=True)
    checkpoint = root / "state/train/latest/step.json"
    # SIGINT back to its default in the child: a suite started in the background (`make test &`) inherits an
    # ignored SIGINT, and Python then never raises KeyboardInterrupt
    proc = subprocess.Popen(train, cwd=root, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 300
    while not checkpoint.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == EXIT_INTERRUPTED, err[-2000:]
    assert "Traceback" not in err, err[err.find("Traceback") - 300:][:4000]  # the whole traceback, if one came
    assert "interrupted" in err
    stopped_at = json.loads(checkpoint.read_text())["step"]
    assert 0 < stopped_at < 40
    resumed = sh(root, *train)
    assert f"resuming from state/train/latest at step {stopped_at}" in resumed.stderr
    final = torch.load(weights, weights_only=True)
    assert all(torch.equal(final[k], uninterrupted[k]) for k in uninterrupted)
    steps = pd.read_csv(root / "results/train/plots/metrics/train/loss.tsv", sep="\t")["step"].tolist()
    assert steps == list(range(1, 41))


def test_an_interrupted_dvc_repro_resumes_with_every_logged_step(project):
    """The same through dvc repro, which deletes a stage's outputs before running it unless they persist:
    the resumed run must keep the curves logged before the interruption, validation at step 0 included."""
    root, _ = project
    train_params(root, steps=30, warmup_steps=3, checkpoint_every=5, val_every=10)
    checkpoint = root / "state/train/latest/step.json"
    repro = ["dvc", "repro", "train"]
    proc = subprocess.Popen(repro, cwd=root, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 300
    while not checkpoint.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGINT)
    proc.communicate(timeout=120)
    assert proc.returncode != 0 and checkpoint.exists()
    resumed = sh(root, *repro)
    assert "resuming from state/train/latest at step" in resumed.stdout + resumed.stderr
    curves = root / "results/train/plots/metrics"
    assert pd.read_csv(curves / "train/loss.tsv", sep="\t")["step"].tolist() == list(range(1, 31))
    assert pd.read_csv(curves / "val/psnr.tsv", sep="\t")["step"].tolist() == [0, 10, 20, 30]
    assert pd.read_csv(curves / "train/seconds.tsv", sep="\t")["seconds"].is_monotonic_increasing
    assert json.loads((root / "results/train/metrics.json").read_text())["step"] == 30  # the steps run


def test_the_preview_is_what_training_logs(project):
    """A strategy with a shape: cosine, layer-wise decay and a group frozen for the first steps."""
    root, _ = project
    params = train_params(root, lr=2e-5, steps=8, schedule="warmup_cosine", warmup_steps=2, val_every=100,
                          checkpoint_every=100)
    params["train"]["groups"].update(layer_decay=0.5)
    params["train"]["freeze"].update(groups={"block0": 3})
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    sh(root, sys.executable, "-m", "pipeline.train")
    sh(root, sys.executable, "-m", "pipeline.lr_preview")
    preview = pd.read_csv(root / "results/lr_preview/lr.tsv", sep="\t")
    assert (root / "results/lr_preview/lr.png").stat().st_size > 10_000
    assert list(preview.columns) == ["step", "block0", "block1", "block2", "teacher"]
    for group in preview.columns[1:]:
        logged = lr_curve(root, group)
        assert logged["step"].tolist() == preview["step"].tolist() == list(range(1, 9))
        assert logged[group].tolist() == pytest.approx(preview[group].tolist(), rel=1e-12)
    assert preview["block0"].tolist()[:3] == [0.0] * 3 and preview["block0"][3] > 0
    assert preview["block1"][1] == pytest.approx(1e-5)  # end of warmup: lr x 0.5



def test_early_stopping_keeps_the_best_weights(project):
    """min_delta no run can reach: the first validation after step 0 is not better, training stops there, and
    `keep: best` writes the step-0 weights (the pretrained ones, also the moving average's starting point)."""
    root, _ = project
    train_params(root, steps=6, schedule="plateau", val_every=1, checkpoint_every=100, keep="best",
                 ema_decay=0.5, early_stopping={"patience": 1, "min_delta": 50.0})
    done = sh(root, sys.executable, "-m", "pipeline.train")
    assert "early stopping at step 1" in done.stderr and "keeping the weights of step 0" in done.stderr
    final = torch.load(root / "models/finetuned/flownet.pkl", weights_only=True)
    pretrained = torch.load(root / "models/pretrained/flownet.pkl", weights_only=True)
    assert final.keys() == pretrained.keys()
    assert all(torch.equal(final[k], pretrained[k]) for k in final)




def test_detail_terms_and_val_vmaf_get_curves_and_keep_by_keeps_psnr_within_vmaf(project):
    """Census and edge terms on, Charbonnier off: a curve for each term that is on; VMAF at every validation; and
    psnr_within_vmaf keeps the best val PSNR among the validations whose VMAF is not below step 0's."""
    root, _ = project
    loss = {"laplacian": 1.0, "teacher": 1.0, "distill": 0.01, "census": 0.1, "gradient": 0.1, "charbonnier": 0.0}
    train_params(root, steps=4, val_every=2, checkpoint_every=100, keep="best", keep_by="psnr_within_vmaf",
                 vmaf_tolerance=0.0, val_vmaf_triplets=1, loss=loss)
    done = sh(root, sys.executable, "-m", "pipeline.train")
    curves = root / "results/train/plots/metrics"
    for term in ("census", "gradient"):
        logged = pd.read_csv(curves / f"train/loss_{term}.tsv", sep="\t")
        assert logged["step"].tolist() == [1, 2, 3, 4] and (logged[f"loss_{term}"] > 0).all()
    assert not (curves / "train/loss_charbonnier.tsv").exists()
    vmaf = pd.read_csv(curves / "val/vmaf.tsv", sep="\t")
    psnr = pd.read_csv(curves / "val/psnr.tsv", sep="\t")
    assert vmaf["step"].tolist() == psnr["step"].tolist() == [0, 2, 4] and vmaf["vmaf"].between(0, 100).all()
    eligible = psnr[vmaf["vmaf"] >= vmaf["vmaf"][0]]
    kept = int(eligible["step"][eligible["psnr"].idxmax()])
    assert f"keeping the weights of step {kept} (val PSNR {psnr['psnr'][kept // 2]:.3f} dB, VMAF " in done.stderr


def test_two_cpu_processes_take_the_same_steps_and_rates(project):
    """Two processes (DDP over gloo) and gradient accumulation: the schedule still ends at the last optimizer
    step."""
    root, _ = project
    train_params(root, steps=4, schedule="warmup_cosine", warmup_steps=1, batch_size=1, grad_accum_steps=2,
                 val_every=2, checkpoint_every=100)
    train = [sys.executable, "-m", "pipeline.train"]
    sh(root, *train)
    single = {g: lr_curve(root, g) for g in ("block2", "teacher")}
    # `accelerate launch --cpu --num_processes 2` starts one process; this is the launch that starts two
    two = subprocess.run([*train, "--multi_gpu", "--num_processes", "2", "--main_process_port", "29517"],
                         cwd=root, env={**ENV, "ACCELERATE_USE_CPU": "1"}, capture_output=True, text=True)
    assert two.returncode == 0, two.stderr[-3000:]
    assert "with 2 process(es) (DistributedType.MULTI_CPU)" in two.stderr
    for group, curve in single.items():
        assert lr_curve(root, group)[group].tolist() == curve[group].tolist()
        assert lr_curve(root, group)["step"].tolist() == [1, 2, 3, 4]
    val = pd.read_csv(root / "results/train/plots/metrics/val/psnr.tsv", sep="\t")
    assert val["step"].tolist() == [0, 2, 4]


def test_a_non_finite_loss_stops_with_one_line(project):
    root, _ = project
    weights = root / "models/finetuned/flownet.pkl"
    before = weights.read_bytes()
    params = train_params(root, steps=3, checkpoint_every=100, val_every=100)
    params["train"]["loss"]["laplacian"] = 1e40  # overflows float32: the loss is inf at the first step
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    done = subprocess.run([sys.executable, "-m", "pipeline.train"], cwd=root, env=ENV, capture_output=True,
                          text=True)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("error: training loss is not finite at step 0")
    assert "lower lr" in last and "state/train" not in last
    assert weights.read_bytes() == before
