"""Putting a failed stage's previous outputs back from the DVC cache (pipeline.core.restore), on a cache laid out
as DVC lays it out (``files/md5/<2>/<30>``, a directory as a ``.dir`` listing)."""

from __future__ import annotations

import hashlib
import json
import os

import yaml

from pipeline.core import restore
from pipeline.core.restore import git_tracked_outputs, locked_outputs, restore_output


def cached(cache, content: bytes) -> str:
    md5 = hashlib.md5(content).hexdigest()
    (cache / md5[:2]).mkdir(parents=True, exist_ok=True)
    (cache / md5[:2] / md5[2:]).write_bytes(content)
    return md5


def test_the_lock_names_the_outputs_of_the_last_successful_run(tmp_path):
    assert locked_outputs("train", tmp_path) == []  # no dvc.lock yet
    lock = {"schema": "2.0", "stages": {"train": {"outs": [{"path": "models/finetuned/flownet.pkl", "md5": "ab"}]}}}
    (tmp_path / "dvc.lock").write_text(yaml.safe_dump(lock))
    assert locked_outputs("train", tmp_path) == [{"path": "models/finetuned/flownet.pkl", "md5": "ab"}]
    assert locked_outputs("evaluate", tmp_path) == []


def test_a_file_and_a_folder_come_back_from_the_cache(tmp_path):
    cache, root = tmp_path / "cache", tmp_path / "project"
    model = cached(cache, b"weights")
    entries = [{"relpath": "manifest.csv", "md5": cached(cache, b"a,b\n")},
               {"relpath": "frames/clip/000001.png", "md5": cached(cache, b"png")}]
    listing = json.dumps(entries).encode()
    folder = hashlib.md5(listing).hexdigest() + ".dir"
    (cache / folder[:2]).mkdir(parents=True, exist_ok=True)
    (cache / folder[:2] / folder[2:]).write_bytes(listing)
    assert restore_output({"path": "models/flownet.pkl", "md5": model}, cache, root)
    assert (root / "models/flownet.pkl").read_bytes() == b"weights"
    assert restore_output({"path": "data/triplets", "md5": folder}, cache, root)
    assert (root / "data/triplets/frames/clip/000001.png").read_bytes() == b"png"
    assert (root / "data/triplets/manifest.csv").read_bytes() == b"a,b\n"


def test_what_the_cache_does_not_hold_is_not_restored(tmp_path):
    cache, root = tmp_path / "cache", tmp_path / "project"
    assert not restore_output({"path": "models/flownet.pkl", "md5": "0" * 32}, cache, root)
    assert not restore_output({"path": "models/flownet.pkl"}, cache, root)  # no md5 recorded
    partial = [{"relpath": "a.png", "md5": cached(cache, b"a")}, {"relpath": "b.png", "md5": "1" * 32}]
    listing = json.dumps(partial).encode()
    folder = hashlib.md5(listing).hexdigest() + ".dir"
    (cache / folder[:2]).mkdir(parents=True, exist_ok=True)
    (cache / folder[:2] / folder[2:]).write_bytes(listing)
    assert not restore_output({"path": "data/triplets", "md5": folder}, cache, root)
    assert not (root / "data/triplets").exists()  # nothing half-restored


def test_what_is_not_restored_is_named_with_what_brings_it_back(tmp_path, monkeypatch, caplog):
    """DVC-cached outputs: `dvc checkout <stage>` (before: `git checkout -- data/triplets`, which git never held);
    git-tracked ones (cache: false in dvc.yaml): `git checkout -- <file>`."""
    stages = {"extract": {"cmd": "python -m pipeline.extract", "outs": ["data/triplets"]},
              "evaluate": {"cmd": "python -m pipeline.evaluate", "outs": ["results/evaluate/videos"],
                           "metrics": [{"results/evaluate/metrics.json": {"cache": False}}],
                           "plots": [{"results/evaluate/examples": {"cache": False}}]}}
    (tmp_path / "dvc.yaml").write_text(yaml.safe_dump({"stages": stages}))
    outputs = {"extract": ["data/triplets"],
               "evaluate": ["results/evaluate/videos", "results/evaluate/metrics.json", "results/evaluate/examples"]}
    lock = {name: {"outs": [{"path": path, "md5": "0" * 32} for path in paths]} for name, paths in outputs.items()}
    (tmp_path / "dvc.lock").write_text(yaml.safe_dump({"schema": "2.0", "stages": lock}))
    assert git_tracked_outputs("evaluate", tmp_path) == {"results/evaluate/metrics.json", "results/evaluate/examples"}
    assert git_tracked_outputs("extract", tmp_path) == set()
    monkeypatch.setattr(restore, "cache_dir", lambda root: tmp_path / "cache")  # an empty cache: nothing comes back
    monkeypatch.setenv("DVC_ROOT", str(tmp_path))
    for stage, expected in [
        ("extract", "not in the DVC cache, so not restored: data/triplets; `dvc checkout extract` puts back "
                    "data/triplets once the cache holds them (`dvc pull extract` fetches them from a DVC remote)"),
        ("evaluate", "not in the DVC cache, so not restored: results/evaluate/videos, results/evaluate/metrics.json, "
                     "results/evaluate/examples; `dvc checkout evaluate` puts back results/evaluate/videos once the "
                     "cache holds them (`dvc pull evaluate` fetches them from a DVC remote); `git checkout -- "
                     "results/evaluate/metrics.json results/evaluate/examples` puts back the committed copy")]:
        monkeypatch.setenv("DVC_STAGE", stage)
        caplog.clear()
        restore.restore_after_failure()
        assert [r.getMessage() for r in caplog.records] == [expected]


def test_only_the_process_named_as_restorer_restores(tmp_path, monkeypatch, caplog):
    """Training's launcher names itself before it starts its workers: a worker that fails leaves the restore to it,
    so what cannot be restored is said once, not once per process."""
    lock = {"schema": "2.0", "stages": {"train": {"outs": [{"path": "models/finetuned/flownet.pkl", "md5": "0" * 32}]}}}
    (tmp_path / "dvc.lock").write_text(yaml.safe_dump(lock))
    monkeypatch.setattr(restore, "cache_dir", lambda root: tmp_path / "cache")  # empty: nothing comes back
    monkeypatch.setenv("DVC_ROOT", str(tmp_path))
    monkeypatch.setenv("DVC_STAGE", "train")
    said = []
    for restorer in (str(os.getpid() + 1), str(os.getpid())):  # a worker of another process, then the launcher
        monkeypatch.setenv(restore.RESTORER, restorer)
        caplog.clear()
        restore.restore_after_failure()
        said.append([r.getMessage() for r in caplog.records])
    assert said[0] == [] and len(said[1]) == 1 and said[1][0].startswith("not in the DVC cache, so not restored")


def test_a_failed_runs_preview_is_removed_and_the_previous_curves_come_back(tmp_path, monkeypatch):
    """Training shows its curves live in results/train/plots under DVC, marked as a preview: when the run fails,
    the preview goes and the last successful run's curves are put back from the cache."""
    cache = tmp_path / ".dvc/cache/files/md5"
    entries = [{"relpath": "lr.tsv", "md5": cached(cache, b"step\tseries\tlr\n1\tblock0\t1e-05\n")}]
    listing = json.dumps(entries).encode()
    folder = hashlib.md5(listing).hexdigest() + ".dir"
    (cache / folder[:2]).mkdir(parents=True, exist_ok=True)
    (cache / folder[:2] / folder[2:]).write_bytes(listing)
    stages = {"train": {"cmd": "python -m pipeline.train", "plots": [{"results/train/plots": {"cache": False}}]}}
    (tmp_path / "dvc.yaml").write_text(yaml.safe_dump({"stages": stages}))
    lock = {"schema": "2.0", "stages": {"train": {"outs": [{"path": "results/train/plots", "md5": folder}]}}}
    (tmp_path / "dvc.lock").write_text(yaml.safe_dump(lock))
    (tmp_path / "results/train/plots").mkdir(parents=True)
    (tmp_path / "results/train/plots/lr.tsv").write_text("step\tseries\tlr\n1\tblock0\t9\n2\tblock0\t9\n")
    restore.mark_preview(tmp_path / "results/train", ["results/train/plots"])
    monkeypatch.setattr(restore, "cache_dir", lambda root: cache)
    monkeypatch.setenv("DVC_ROOT", str(tmp_path))
    monkeypatch.setenv("DVC_STAGE", "train")
    monkeypatch.delenv(restore.RESTORER, raising=False)
    restore.restore_after_failure()
    assert (tmp_path / "results/train/plots/lr.tsv").read_text() == "step\tseries\tlr\n1\tblock0\t1e-05\n"
    assert not (tmp_path / "results/train" / restore.PREVIEW_MARKER).exists()
