"""Two machines sharing one project through a git remote and a DVC remote, for real: two clones of a temporary
git repository with a bare git remote (``origin``) and a local-folder DVC remote.

- The first clone runs ``dvc repro`` (tiny settings) and ``dvc push``es; the second ``dvc pull``s and has nothing
  to reproduce, with the same outputs and metrics.
- A study spread over both: each queues its shard (``python -m pipeline.study --queue --shard k/2``), runs it with
  ``dvc queue start`` and shares it with ``dvc exp push origin``; one ``dvc exp pull``s them all and builds the
  table. Queued runs start from a copy made from git: they find every file they need there, never rerun fetch or
  extract (a seed replicate reruns augment, whose views depend on the seed), replicate 1 of the default repeats
  the baseline's training bit for bit, and a failed run is reported as failed, not with the baseline's metrics.
- The clones as two machines of one training run (``accelerate launch --num_machines 2``, gloo on CPU): the same
  optimizer steps and learning rate at every step as one process.

The tests build on each other in file order (the study, then the training runs that change params.yaml)."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from io import StringIO
from pathlib import Path

import pandas as pd
import pytest
import yaml

from tests.helpers import (
    ENV,
    copy_reproduced,
    free_port,
    loss_curve,
    lr_curve,
    queue_tasks,
    run_module,
    sh,
    start_queue,
    tree_digest,
    wait_for_queue,
)

pytestmark = [pytest.mark.slow, pytest.mark.network]  # dvc repro in temporary repos; fetch downloads the demo

CACHED_OUTPUTS = ("data/demo", "data/triplets", "data/augmented", "models/pretrained/flownet.pkl",
                  "models/finetuned/flownet.pkl")  # what dvc push / dvc pull carry; the results travel by git
STUDY_RUNS = ("default-seed1", "default-seed2", "author-1e-5-seed1")  # the study the two clones share
# a setting every run of the study shares (evaluate's, so that the default's seed 1 still takes the baseline's training
# from the run-cache); the report names it once instead of in every row
EVERY_RUN = "evaluate.bootstrap_samples=300"


def digest(path: Path) -> str:
    return tree_digest(path) if path.is_dir() else hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def machines(tmp_path_factory, reproduced) -> tuple[Path, Path, str]:
    """Clone ``a``, which ran ``dvc repro`` and pushed; clone ``b``, which cloned and pulled; ``b``'s pull log."""
    top = tmp_path_factory.mktemp("sharing")
    origin, storage, a = top / "origin.git", top / "dvc-storage", top / "a"
    sh(top, "git", "init", "-q", "--bare", "-b", "main", str(origin))
    copy_reproduced(reproduced, a)  # a clone that ran dvc repro
    for cmd in (("dvc", "remote", "add", "-d", "storage", str(storage)),
                ("git", "remote", "add", "origin", str(origin)),
                ("git", "add", "-A"), ("git", "commit", "-qm", "results and remote"), ("dvc", "push"),
                ("git", "push", "-q", "origin", "main")):
        sh(a, *cmd)
    sh(top, "git", "clone", "-q", str(origin), "b")
    pulled = sh(top / "b", "dvc", "pull")
    return a, top / "b", pulled.stdout + pulled.stderr


def test_a_pulled_clone_has_every_output_and_nothing_to_reproduce(machines):
    a, b, _ = machines
    for out in CACHED_OUTPUTS:
        assert digest(b / out) == digest(a / out), out
    assert "Data and pipelines are up to date" in sh(b, "dvc", "status").stdout
    mtimes = {out: (b / out).stat().st_mtime_ns for out in CACHED_OUTPUTS}
    repro = sh(b, "dvc", "repro")
    log = repro.stdout + repro.stderr
    assert "Running stage" not in log
    for stage in ("check_sources", "fetch", "extract", "augment", "train", "evaluate", "lr_find"):
        assert f"Stage '{stage}' didn't change, skipping" in log
    assert {out: (b / out).stat().st_mtime_ns for out in CACHED_OUTPUTS} == mtimes
    assert sh(b, "git", "status", "--porcelain").stdout == ""  # dvc.lock and the metrics untouched
    shown = [json.loads(sh(root, "dvc", "metrics", "show", "--json").stdout) for root in (a, b)]
    assert shown[0] == shown[1] and "results/evaluate/metrics.json" in json.dumps(shown[0])


def exp_lock(root: Path, name: str) -> dict:
    refs = sh(root, "git", "for-each-ref", "--format=%(refname)", "refs/exps").stdout.split()
    ref = next(ref for ref in refs if ref.endswith(f"/{name}"))
    return yaml.safe_load(sh(root, "git", "show", f"{ref}:dvc.lock").stdout)


@pytest.fixture(scope="module")
def study(machines) -> tuple[Path, Path, dict[Path, list[str]], dict[Path, str]]:
    """The study shared by the two clones as users run it (``python -m pipeline.study --queue --shard k/2`` on
    each, a queue worker on each at the same time, ``dvc exp push origin``): the default over two seeds, sharded
    (seed 1, the baseline's own, on ``a``; seed 2 on ``b``), the author's rate once on ``b``, and on ``a`` a run
    whose rate is out of range, which must fail. Each clone's queued runs and last ``dvc queue status``."""
    a, b, _ = machines
    queued = {}
    for k, root in enumerate((a, b), start=1):
        sh(root, sys.executable, "-m", "pipeline.study", "--queue", "--seeds", "2", "--only", "default", "--shard",
           f"{k}/2", "--set", EVERY_RUN)
    sh(b, sys.executable, "-m", "pipeline.study", "--queue", "--seeds", "1", "--only", "author-1e-5", "--steps", "4",
       "--set", EVERY_RUN)
    sh(a, "dvc", "exp", "run", "--queue", "-n", "too-high-seed1", "-S", "lr=5.0",  # outside (0, 1]: must fail
       "-S", EVERY_RUN)
    tasks = {root: queue_tasks(sh(root, "dvc", "queue", "status").stdout) for root in (a, b)}
    for root in (a, b):
        assert set(tasks[root].values()) == {"Queued"}, tasks[root]
        queued[root] = [name for name in STUDY_RUNS if name in tasks[root]]
    for root in (a, b):
        start_queue(root)  # both clones' queues run at the same time, as on two machines
    statuses = {root: wait_for_queue(root, list(tasks[root]), timeout_s=900) for root in (a, b)}
    for root in (a, b):
        sh(root, "dvc", "exp", "push", "origin")  # a's failed run stays in a's queue: DVC pushes no failed run
    sh(a, "dvc", "exp", "pull", "origin")
    return a, b, queued, statuses


def test_the_shards_are_disjoint_and_run_from_git_without_rerunning_fetch_or_extract(study):
    a, b, queued, statuses = study
    assert queued[a] == ["default-seed1"] and queued[b] == ["default-seed2", "author-1e-5-seed1"]
    assert statuses[a].count("Success") == 1 and statuses[a].count("Failed") == 1, statuses[a]
    assert statuses[b].count("Success") == 2 and "Failed" not in statuses[b], statuses[b]
    for root in (a, b):
        for name in queued[root]:
            log = sh(root, "dvc", "queue", "logs", name).stdout
            assert "Running stage 'evaluate'" in log  # the study's own evaluate params
            for stage in ("check_sources", "fetch", "extract", "lr_find"):  # b reuses the pulled data stages
                assert f"Running stage '{stage}'" not in log, (name, stage)
            # seed 1 is the baseline's seed: its views are the baseline's, and the default's training is too (from
            # a's run-cache); seed 2 draws new views
            assert ("Running stage 'augment'" in log) == name.endswith("seed2")
            assert ("Running stage 'train'" in log) == (name != "default-seed1")


def test_the_study_reports_every_strategy_over_its_seeds_and_the_failure(study):
    a, b, queued, _ = study
    done = run_module("pipeline.study", a)
    assert done.returncode == 0, done.stderr
    table = pd.read_csv(a / "results/study/summary.csv").set_index("strategy")
    assert set(table.index) == {"default", "author-1e-5", "too-high"}
    seeds = table.loc["default", "seed_gains"].split()
    assert len(seeds) == 2 and seeds[0] != seeds[1]  # each replicate trained on its own views and batches
    assert len(str(table.loc["author-1e-5", "seed_gains"]).split()) == 1
    for name in ("default", "author-1e-5"):
        assert table.loc[name, "gain_ci95_low"] <= table.loc[name, "gain"] <= table.loc[name, "gain_ci95_high"]
    assert table.loc["default", "group"] == "the default"
    assert table.loc["author-1e-5", "group"].endswith("the default")
    assert table.loc["too-high", "runs"] == "1 failed" and pd.isna(table.loc["too-high", "gain"])
    assert table.loc["author-1e-5", "settings"] == "lr=1e-05, train.steps=4"  # --steps: that run's budget
    assert table.loc["default", "settings"] == "the common settings only"
    markdown = (a / "results/study/summary.md").read_text()
    assert f"Every run also sets: {EVERY_RUN}." in markdown
    assert "## Verdict" in markdown and "Seed noise floor" in markdown and markdown in done.stdout
    assert ": test gain " in markdown and "no evaluate metrics" not in markdown  # the baseline's psnr.gain
    default = next(line for line in markdown.splitlines()  # in bold when it is the best strategy
                   if line.startswith(("| default |", "| **default** |")))
    assert float(default.split("|")[-3]) > 0  # train (min): the end of each run's committed seconds curve
    assert (a / "results/study/summary.png").stat().st_size > 0
    # b's fine-tuned models came to a through the DVC remote, not only its metrics through git
    for name in queued[b]:
        md5 = exp_lock(a, name)["stages"]["train"]["outs"][0]["md5"]
        assert (a / ".dvc/cache/files/md5" / md5[:2] / md5[2:]).is_file(), name


def test_replicate_one_of_the_default_repeats_the_baseline_training(study):
    a, *_ = study
    baseline = next(e for e in json.loads(sh(a, "dvc", "exp", "show", "--json").stdout) if e["rev"] != "workspace")
    revs = {group["name"]: group["revs"][0]["rev"] for group in baseline["experiments"]}

    def finetuned(rev: str) -> pd.Series:
        csv = sh(a, "git", "show", f"{rev}:results/evaluate/per_triplet.csv").stdout
        return pd.read_csv(StringIO(csv))["finetuned_psnr"]

    pd.testing.assert_series_equal(finetuned(revs["default-seed1"]), finetuned("HEAD"))


def set_train(roots: tuple[Path, ...], **changes) -> None:
    for root in roots:
        params = yaml.safe_load(sh(root, "git", "show", "HEAD:params.yaml").stdout)
        params["train"].update(changes)
        (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def launch_two_machines(a: Path, b: Path, stage_on_0: bool = False) -> list[subprocess.Popen]:
    """Machine 0 in clone ``a``, machine 1 in clone ``b``, one process each, gloo on CPU (``--multi_gpu`` with
    ACCELERATE_USE_CPU=1 is Accelerate's torchrun launch, here without GPUs): plain ``accelerate launch -m
    pipeline.train``, or on machine 0 with ``stage_on_0`` the stage's command (``python -m pipeline.train``, as
    dvc.yaml runs it) with the same flags."""
    port = str(free_port())
    procs = []
    for rank, root in enumerate((a, b)):
        flags = ["--multi_gpu", "--num_machines", "2", "--machine_rank", str(rank), "--main_process_ip",
                 "127.0.0.1", "--main_process_port", port, "--num_processes", "2", "--mixed_precision", "no",
                 "--dynamo_backend", "no"]
        cmd = ([sys.executable, "-m", "pipeline.train", *flags] if stage_on_0 and rank == 0 else
               ["accelerate", "launch", *flags, "-m", "pipeline.train"])
        log_path = root.parent / f"machine{rank}.log"  # a file: a full pipe would stall a machine
        with open(log_path, "w") as log:
            proc = subprocess.Popen(cmd, cwd=root, env={**ENV, "ACCELERATE_USE_CPU": "1"}, stdout=log,
                                    stderr=subprocess.STDOUT, start_new_session=True,
                                    preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        proc.log_path = log_path
        procs.append(proc)
    return procs


def descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (torchrun starts its workers in sessions of their own), from /proc."""
    parents = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError):
            parents[int(stat.parent.name)] = int(stat.read_text().rsplit(")", 1)[1].split()[1])
    found, frontier = [], [pid]
    while frontier:
        children = [child for child, parent in parents.items() if parent in frontier]
        found += children
        frontier = children
    return found


def finish(procs: list[subprocess.Popen], timeout: float = 240) -> list[str]:
    """Wait for both machines (killing every process they started if they are not done after ``timeout``);
    their logs."""
    deadline = time.monotonic() + timeout
    try:
        for proc in procs:
            proc.wait(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        for proc in procs:
            if proc.poll() is None:
                for pid in [proc.pid, *descendants(proc.pid)]:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
    return [proc.log_path.read_text() for proc in procs]


def test_two_machines_take_the_steps_and_rates_of_one_process(machines):
    """``train.batch_size`` is per process: two machines of one process each train on twice the samples per
    step (DDP averages their gradients), in the same optimizer steps with the same rate of every group at every
    step, validating at the same steps; with gradient accumulation the schedule still ends at the last optimizer
    step. Only machine 0 writes the outputs. Machine 0 runs the stage's own command with the launch flags
    (``python -m pipeline.train --multi_gpu ...``, which relaunches itself), machine 1 ``accelerate launch``: one
    machine of several processes (``--multi_gpu --num_processes 2`` alone) is the same torchrun launch."""
    a, b, _ = machines
    set_train((a, b), steps=4, schedule="warmup_cosine", warmup_steps=1, batch_size=1, grad_accum_steps=2,
              val_every=2, checkpoint_every=2)
    sh(a, sys.executable, "-m", "pipeline.train")
    single = {g: lr_curve(a, g) for g in ("block0", "block2", "teacher")}
    before_b = {out: digest(b / out) for out in ("models/finetuned/flownet.pkl", "results/train")}
    procs = launch_two_machines(a, b, stage_on_0=True)
    logs = finish(procs)
    assert [p.returncode for p in procs] == [0, 0], "\n".join(log[-3000:] for log in logs)
    assert "with 2 process(es) (DistributedType.MULTI_CPU)" in logs[0]
    for group, curve in single.items():
        two = lr_curve(a, group)
        assert two["step"].tolist() == curve["step"].tolist() == [1, 2, 3, 4]
        assert two[group].tolist() == curve[group].tolist()
    val = pd.read_csv(a / "results/train/plots/metrics/val/psnr.tsv", sep="\t")
    assert val["step"].tolist() == [0, 2, 4]
    assert {out: digest(b / out) for out in before_b} == before_b
    assert not (a / "state/train").exists() and not (b / "state/train").exists()


def test_machines_with_different_params_stop_with_one_line(machines):
    a, b, _ = machines
    set_train((a,), steps=4, batch_size=1, checkpoint_every=100)
    set_train((b,), steps=5, batch_size=1, checkpoint_every=100)
    procs = launch_two_machines(a, b)
    logs = finish(procs)
    assert all(p.returncode != 0 for p in procs)
    for log in logs:
        assert "error: the 2 training processes read different params.yaml, data/augmented or pretrained " \
               "weights (2 versions): check out the same commit and run `dvc pull` on every machine" in log


def test_an_interrupted_run_over_two_machines_restarts_both_from_step_0(machines):
    """Each clone has its own state/: machine 0 holds the checkpoint, machine 1 does not. The rerun must agree
    on where to start (from 0, said in one warning) instead of each starting from its own step."""
    a, b, _ = machines
    set_train((a, b), steps=6, warmup_steps=2, batch_size=1, val_every=100, checkpoint_every=2,
              num_workers=1)
    procs = launch_two_machines(a, b, stage_on_0=True)
    checkpoint = a / "state/train/latest/step.json"
    deadline = time.monotonic() + 240
    while not checkpoint.exists() and procs[0].poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    for proc in procs:
        os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C does on each machine
    finish(procs, timeout=120)
    assert checkpoint.exists() and not (b / "state/train/latest").exists()
    procs = launch_two_machines(a, b, stage_on_0=True)
    logs = finish(procs)
    assert [p.returncode for p in procs] == [0, 0], "\n".join(log[-3000:] for log in logs)
    assert "differs between the processes" in logs[0] and "starting afresh" in logs[0]
    steps = loss_curve(a)["step"].tolist()
    assert steps == list(range(1, 7))
