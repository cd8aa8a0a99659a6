"""The paths of ``sources`` are checked before any stage runs (stage ``check_sources``), each mistake in one line."""

from __future__ import annotations

import json
import shutil

import pytest

from pipeline.core.errors import UserError
from pipeline.core.source_paths import check_checkpoint_path, check_videos_path
from tests.helpers import ROOT, assert_user_error, run_module, write_params


@pytest.fixture
def project(tmp_path, monkeypatch):
    shutil.copytree(ROOT / "checkpoints", tmp_path / "checkpoints")
    (tmp_path / "raw").mkdir()
    (tmp_path / "models").mkdir()
    (tmp_path / "models/flownet.pkl").write_bytes(b"weights")
    (tmp_path / "clip.mp4").write_bytes(b"video")
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.mark.parametrize("raw, fragments", [
    ("missing.pkl", ["sources.checkpoint missing.pkl: no such file", "checkpoints/rife-hdv3.yaml"]),
    ("rife-hdv3", ["sources.checkpoint rife-hdv3: no such file", "checkpoints/rife-hdv3.yaml"]),
    ("models", ["sources.checkpoint models: is a folder; expected a flownet.pkl file such as models/flownet.pkl"]),
    ("https://example.com/flownet.pkl", ["sources.checkpoint https://example.com/flownet.pkl: a URL; URLs are not "
                                         "fetched at run time: download the file and give its local path"]),
])
def test_a_checkpoint_that_is_not_a_file_is_named_with_what_was_expected(project, raw, fragments):
    with pytest.raises(UserError) as err:
        check_checkpoint_path(raw)
    for fragment in fragments + ["nothing was changed"]:
        assert fragment in str(err.value)


@pytest.mark.parametrize("raw, fragment", [
    ("nowhere", "sources.videos nowhere: no such folder"),
    ("clip.mp4", "sources.videos clip.mp4: a file; expected a folder of your clips"),
    ("s3://bucket/clips", "sources.videos s3://bucket/clips: a URL; URLs are not fetched at run time"),
])
def test_footage_that_is_not_a_folder_is_named(project, raw, fragment):
    with pytest.raises(UserError, match="nothing was changed") as err:
        check_videos_path(raw)
    assert fragment in str(err.value)


def test_good_sources_pass_and_the_demo_folder_need_not_exist_yet(project):
    assert check_checkpoint_path("models/flownet.pkl").name == "flownet.pkl"
    assert str(check_checkpoint_path("checkpoints/rife-hdv3.yaml")) == "checkpoints/rife-hdv3.yaml"
    assert str(check_videos_path("raw")) == "raw"
    assert str(check_videos_path("data/demo")) == "data/demo"  # written by fetch


def test_the_stage_records_the_sources_and_refuses_a_typo_in_one_line(project, params_dict):
    params_dict["sources"] = {"videos": "raw", "checkpoint": "models/flownet.pkl"}
    write_params(project, params_dict)
    assert run_module("pipeline.check_sources", project).returncode == 0
    record = project / "data/sources.json"
    assert json.loads(record.read_text()) == params_dict["sources"]
    before = record.read_bytes()
    params_dict["sources"]["checkpoint"] = "models/flownet.pk"
    write_params(project, params_dict)
    assert_user_error(run_module("pipeline.check_sources", project),
                      "sources.checkpoint models/flownet.pk: no such file")
    assert record.read_bytes() == before
