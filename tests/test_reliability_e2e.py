"""Nothing lost under `dvc repro`: a stage that fails puts its previous outputs back, DVC's run-cache restores
every stage when an earlier setting comes back, and the user's own checkpoint is a dependency. Everything runs
through dvc for real, in a temporary git repository, with tiny settings."""

from __future__ import annotations

import hashlib
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml

from pipeline.core.errors import EXIT_TERMINATED
from tests.helpers import ENV, copy_reproduced, sh, stop_when

pytestmark = [pytest.mark.slow, pytest.mark.network]

TRAIN_AND_EVALUATE = ("models/finetuned/flownet.pkl", "results/train", "results/evaluate")


def digest(root: Path, *paths: str) -> dict[str, str]:
    """sha256 of every file under ``paths`` (files or folders), by path relative to ``root``."""
    out = {}
    for path in paths:
        target = root / path
        files = sorted(p for p in target.rglob("*") if p.is_file()) if target.is_dir() else [target]
        for file in files:
            if file.exists():
                out[str(file.relative_to(root))] = hashlib.sha256(file.read_bytes()).hexdigest()
    return out


def set_params(root: Path, change) -> None:
    """Apply ``change`` to the committed params (every test starts from the same baseline)."""
    params = yaml.safe_load(sh(root, "git", "show", "HEAD:params.yaml").stdout)
    change(params)
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def repro(root: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["dvc", "repro", *args], cwd=root, env=ENV, capture_output=True, text=True)


@pytest.fixture(scope="module")
def project(tmp_path_factory, reproduced) -> Path:
    return copy_reproduced(reproduced, tmp_path_factory.mktemp("reliable"))[0]


@pytest.mark.parametrize("stage, paths, change, message", [
    ("evaluate", ("results/evaluate",), lambda p: p["evaluate"].update(scale=0.3), "evaluate.scale = 0.3"),
    ("fetch", ("models/pretrained/flownet.pkl",), lambda p: p["sources"].update(checkpoint="truncated.pkl"),
     "truncated.pkl"),
    ("extract", ("data/triplets",), lambda p: p["sources"].update(videos="empty"), "empty"),
    ("train", TRAIN_AND_EVALUATE[:2], lambda p: p["train"]["loss"].update(laplacian=1e40),
     "training loss is not finite"),
], ids=["evaluate-bad-param", "fetch-truncated-checkpoint", "extract-empty-footage", "train-non-finite"])
def test_a_failing_stage_keeps_its_previous_outputs(project, stage, paths, change, message):
    root = project
    (root / "empty").mkdir(exist_ok=True)
    (root / "truncated.pkl").write_bytes((root / "models/pretrained/flownet.pkl").read_bytes()[:5000])
    before = digest(root, *paths)
    assert before
    set_params(root, change)
    done = repro(root, stage)
    assert done.returncode != 0
    assert message in done.stderr and "Traceback" not in done.stderr
    assert "restored the previous outputs" in done.stderr or stage == "evaluate"  # evaluate stops at its params
    assert digest(root, *paths) == before
    if stage == "train":
        assert "state/train" not in done.stderr  # no pointer to a checkpoint that a failed run never wrote
    sh(root, "git", "checkout", "params.yaml")
    # check_sources accepted the changed sources before fetch or extract failed, and DVC recorded that run; going
    # back takes its earlier run from the run-cache, and nothing runs again
    back = sh(root, "dvc", "repro")
    assert "Running stage" not in back.stdout + back.stderr
    assert "up to date" in sh(root, "dvc", "status").stdout


@pytest.mark.parametrize("target, change, fragment", [
    ("fetch", lambda p: p["sources"].update(checkpoint="models/pretrained/flownet.pk"),
     "sources.checkpoint models/pretrained/flownet.pk: no such file"),
    ("fetch", lambda p: p["sources"].update(checkpoint="rife-hdv3"), "sources.checkpoint rife-hdv3: no such file"),
    ("fetch", lambda p: p["sources"].update(checkpoint="https://example.com/flownet.pkl"), "a URL"),
    ("fetch", lambda p: p["sources"].update(checkpoint="runs"), "runs: is a folder"),  # a training run's folder
    ("extract", lambda p: p["sources"].update(videos="data/dmeo"), "sources.videos data/dmeo: no such folder"),
], ids=["checkpoint-typo", "checkpoint-old-name", "checkpoint-url", "checkpoint-folder", "videos-typo"])
def test_a_missing_source_stops_before_dvc_deletes_any_output(project, target, change, fragment):
    """DVC deletes a stage's outputs before it finds a dependency missing; check_sources runs first."""
    root = project
    (root / "runs").mkdir(exist_ok=True)
    kept = ("data/demo", "models/pretrained/flownet.pkl", "data/triplets")
    before = digest(root, *kept)
    set_params(root, change)
    done = repro(root, target)
    assert done.returncode != 0
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and fragment in errors[0] and "nothing was changed" in errors[0], done.stderr[-2000:]
    assert "Traceback" not in done.stderr and "Errno" not in done.stdout + done.stderr
    assert digest(root, *kept) == before
    sh(root, "git", "checkout", "params.yaml")
    assert "up to date" in sh(root, "dvc", "status").stdout


def test_evaluate_stopped_after_scoring_keeps_the_whole_previous_set(project):
    """Ctrl-C (SIGINT to dvc's process group) once the gain is logged: every result is the previous run's.

    The stop has the 2-3 s the stage spends writing after that line. Once, on a loaded machine, it landed only after
    the stage had ended (dvc exited 0 with the new set written): such a try must have written the whole new set,
    and the stop is tried again with another setting."""
    root = project
    for samples in (300, 301, 302):
        before = digest(root, "results/evaluate")
        set_params(root, lambda p, n=samples: p["evaluate"].update(bootstrap_samples=n))
        code, log = stop_when(root, ["dvc", "repro", "evaluate"], lambda out: "fine-tuned minus pretrained" in out)
        if code != 0:
            break
        assert "wrote results/evaluate" in log and "interrupted" not in log, log[-2000:]
        assert "evaluate" not in sh(root, "dvc", "status").stdout  # the new set, complete and locked
    assert code != 0 and "fine-tuned minus pretrained" in log and "interrupted" in log, log[-2000:]
    assert digest(root, "results/evaluate") == before, log[-2000:]
    assert not list((root / "results/evaluate").glob(".*.tmp*"))
    sh(root, "git", "checkout", "params.yaml", "dvc.lock", "results/evaluate")  # a try that ended: back to HEAD
    sh(root, "dvc", "checkout", "--force", "evaluate")
    assert "evaluate" not in sh(root, "dvc", "status").stdout


def test_a_checkpoint_replaced_in_place_reruns_from_fetch(project):
    root = project
    own = root / "own.pkl"
    own.write_bytes((root / "models/pretrained/flownet.pkl").read_bytes())
    set_params(root, lambda p: p["sources"].update(checkpoint="own.pkl"))
    sh(root, "dvc", "repro", "fetch")
    state = torch.load(own, weights_only=True)
    key = next(k for k in state if k.endswith("weight"))
    state[key] = state[key] * 0.5  # the user retrains their model and saves it under the same name
    torch.save(state, own)
    assert "fetch" in sh(root, "dvc", "status").stdout
    sh(root, "dvc", "repro", "fetch")
    fetched = torch.load(root / "models/pretrained/flownet.pkl", weights_only=True)
    assert torch.equal(fetched[key], state[key])
    sh(root, "git", "checkout", "params.yaml")
    sh(root, "dvc", "repro", "fetch")


def test_fetch_refuses_a_checkpoint_of_no_known_architecture_and_names_it(project):
    root = project
    state = torch.load(root / "models/pretrained/flownet.pkl", weights_only=True)
    key = next(k for k in state if k.endswith("weight") and state[k].dim() == 4)
    state[key] = torch.zeros(*state[key].shape[:-1], state[key].shape[-1] + 2)
    torch.save(state, root / "odd.pkl")
    before = digest(root, "models/pretrained/flownet.pkl")
    set_params(root, lambda p: p["sources"].update(checkpoint="odd.pkl"))
    done = repro(root, "fetch")
    assert done.returncode != 0
    error = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(error) == 1 and "odd.pkl" in error[0] and "no known RIFE architecture" in error[0]
    assert digest(root, "models/pretrained/flownet.pkl") == before
    sh(root, "git", "checkout", "params.yaml")


def test_a_killed_extract_leaves_nothing_behind_after_the_next_run(project):
    root = project
    set_params(root, lambda p: p["extract"].update(max_per_clip=6))
    stop_when(root, ["dvc", "repro", "extract"], lambda _: bool(list((root / "data").glob(".triplets.*.tmp"))),
              signal.SIGKILL, wait_s=120)
    assert list((root / "data").glob(".triplets.*.tmp"))  # what a killed run leaves
    sh(root, "dvc", "repro", "extract")
    assert not list((root / "data").glob(".triplets.*"))
    sh(root, "git", "checkout", "params.yaml")
    sh(root, "dvc", "repro", "extract")


def test_sigterm_stops_training_in_one_line_and_the_run_resumes(project):
    root = project
    set_params(root, lambda p: p["train"].update(steps=8, warmup_steps=2, checkpoint_every=2, val_every=100,
                                                      num_workers=1))
    shutil.rmtree(root / "state/train", ignore_errors=True)  # no other run's checkpoint
    checkpoint = root / "state/train/latest/step.json"
    # to the stage's own process only, as `kill` or a scheduler sends it
    code, err = stop_when(root, [sys.executable, "-m", "pipeline.train"], lambda _: checkpoint.exists(),
                          signal.SIGTERM, group=False)
    assert code == EXIT_TERMINATED, err[-2000:]
    assert "stopped by SIGTERM" in err and "Traceback" not in err
    resumed = sh(root, sys.executable, "-m", "pipeline.train")
    assert "resuming from state/train/latest at step" in resumed.stderr
    sh(root, "git", "checkout", "params.yaml")
    sh(root, "dvc", "repro")


def test_sigterm_to_dvc_repros_group_is_one_line_and_puts_the_outputs_back(project):
    """What a scheduler's kill of a job does: SIGTERM to every process of ``dvc repro train``. dvc itself ends at
    once (its own default); the stage prints one line, no traceback from the launcher, the training process or
    the loader, and has the previous outputs back by the time its last process is gone (a few seconds later)."""
    root = project
    before = digest(root, *TRAIN_AND_EVALUATE[:2])
    set_params(root, lambda p: p["train"].update(steps=30, warmup_steps=3, checkpoint_every=2, val_every=100,
                                                      num_workers=1))
    shutil.rmtree(root / "state/train", ignore_errors=True)
    checkpoint = root / "state/train/latest/step.json"
    # once results/train/plots shows the run in progress (what dvc plots show draws); the output comes back when
    # the group's last process has closed it, after the restore
    _, out = stop_when(root, ["dvc", "repro", "train"], lambda _: checkpoint.exists() and bool(live_steps(root)),
                       signal.SIGTERM)
    assert "Traceback" not in out, out[-4000:]
    assert out.count("stopped by SIGTERM; the previous outputs are kept") == 1, out[-2000:]
    assert digest(root, *TRAIN_AND_EVALUATE[:2]) == before  # the preview gone, the previous curves back
    assert not (root / "results/train/.preview").exists()
    sh(root, "git", "checkout", "params.yaml")
    shutil.rmtree(root / "state/train", ignore_errors=True)


def live_steps(root: Path) -> int:
    """The optimizer steps the preview of the run in progress shows (0 while there is none)."""
    try:
        return len(pd.read_csv(root / "results/train/plots/loss.tsv", sep="\t"))
    except (FileNotFoundError, pd.errors.EmptyDataError):
        return 0
