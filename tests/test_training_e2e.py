"""End to end, for real: training runs as `python -m pipeline.train` in a copy of the reproduced tiny project:
Ctrl-C and resume to identical weights, the logged schedule against its preview, early stopping, the detail loss
terms with val VMAF, a non-finite loss (several processes: the two-machine tests of test_sharing_e2e.py)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml

from pipeline.core.errors import EXIT_INTERRUPTED
from tests.helpers import ENV, copy_reproduced, loss_curve, lr_curve, sh, stop_when, train_params

pytestmark = [pytest.mark.slow, pytest.mark.network]  # trains in a temporary repo; fetch downloads the demo


@pytest.fixture(scope="module")
def project(tmp_path_factory, reproduced) -> tuple[Path, str]:
    return copy_reproduced(reproduced, tmp_path_factory.mktemp("training"))


def test_interrupted_training_resumes_to_identical_weights(project):
    """Ctrl-C after a checkpoint, rerun: the run continues from it and ends bit-identical to an uninterrupted one."""
    root, _ = project
    train_params(root, steps=8, warmup_steps=2, checkpoint_every=2, val_every=100, num_workers=1)
    weights = root / "models/finetuned/flownet.pkl"
    train = [sys.executable, "-m", "pipeline.train"]
    sh(root, *train)
    uninterrupted = torch.load(weights, weights_only=True)
    checkpoint = root / "state/train/latest/step.json"
    code, err = stop_when(root, train, lambda _: checkpoint.exists())  # Ctrl-C once a checkpoint is saved
    assert code == EXIT_INTERRUPTED, err[-2000:]
    assert "Traceback" not in err, err[err.find("Traceback") - 300:][:4000]  # the whole traceback, if one came
    assert "interrupted" in err
    stopped_at = json.loads(checkpoint.read_text())["step"]
    assert 0 < stopped_at < 8
    resumed = sh(root, *train)
    assert f"resuming from state/train/latest at step {stopped_at}" in resumed.stderr
    final = torch.load(weights, weights_only=True)
    assert all(torch.equal(final[k], uninterrupted[k]) for k in uninterrupted)
    steps = loss_curve(root)["step"].tolist()
    assert steps == list(range(1, 9))


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
        logged = loss_curve(root, term)
        assert logged["step"].tolist() == [1, 2, 3, 4] and (logged[term] > 0).all()
    assert loss_curve(root, "charbonnier").empty  # a term of weight 0 is not computed, so not logged
    vmaf = pd.read_csv(curves / "val/vmaf.tsv", sep="\t")
    psnr = pd.read_csv(curves / "val/psnr.tsv", sep="\t")
    assert vmaf["step"].tolist() == psnr["step"].tolist() == [0, 2, 4] and vmaf["vmaf"].between(0, 100).all()
    eligible = psnr[vmaf["vmaf"] >= vmaf["vmaf"][0]]
    kept = int(eligible["step"][eligible["psnr"].idxmax()])
    assert f"keeping the weights of step {kept} (val PSNR {psnr['psnr'][kept // 2]:.3f} dB, VMAF " in done.stderr


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
