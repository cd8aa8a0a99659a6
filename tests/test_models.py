"""HDv3 network: strict loading of the official weights, official output, safe and clear checkpoint errors."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from pipeline.errors import UserError
from pipeline.models import ARCHITECTURES, create_model, load_checkpoint, read_state_dict, save_checkpoint

GOLDEN = Path(__file__).parent / "fixtures" / "hdv3_golden.npz"
OFFICIAL_PARAMS = 3_038_015
OFFICIAL_TENSORS = 160


def as_batch(image: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255.0


def test_official_weights_load_strictly(official_hdv3):
    raw = torch.load(official_hdv3, map_location="cpu", weights_only=True)
    assert len(raw) == OFFICIAL_TENSORS and all(k.startswith("module.") for k in raw)
    model = load_checkpoint(official_hdv3, "hdv3")
    assert sum(p.numel() for p in model.parameters()) == OFFICIAL_PARAMS
    for key, value in raw.items():
        assert torch.equal(model.state_dict()[key.removeprefix("module.")], value)


@pytest.mark.parametrize("scale, key", [(1.0, "out_scale1"), (0.5, "out_scale05")])
def test_matches_official_implementation(official_hdv3, scale, key):
    golden = np.load(GOLDEN)
    model = load_checkpoint(official_hdv3, "hdv3")
    with torch.no_grad():
        out = model.interpolate(as_batch(golden["img0"]), as_batch(golden["img1"]), scale=scale)
    ours = out[0].permute(1, 2, 0).numpy()
    assert ours.shape == golden[key].shape
    assert np.abs(ours - golden[key]).max() < 1e-5


def test_interpolate_any_size_and_symmetric(official_hdv3):
    model = load_checkpoint(official_hdv3, "hdv3")
    gen = torch.Generator().manual_seed(0)
    a, b = torch.rand(1, 3, 50, 77, generator=gen), torch.rand(1, 3, 50, 77, generator=gen)
    out = model.interpolate(a, b)
    assert out.shape == (1, 3, 50, 77)
    assert 0.0 <= out.min() and out.max() <= 1.0
    with pytest.raises(ValueError, match="timestep"):
        model.interpolate(a, b, timestep=0.25)


def test_training_forward_gives_teacher_outputs(official_hdv3):
    model = load_checkpoint(official_hdv3, "hdv3").train()
    x = torch.rand(2, 3, 64, 64)
    out = model(x, x.flip(-1), gt=x)
    assert len(out.merged) == len(out.flows) == len(out.masks) == 3
    assert out.teacher_prediction.shape == x.shape and out.teacher_flow.shape == (2, 4, 64, 64)
    assert model(x, x).teacher_prediction is None


def test_saved_checkpoint_has_official_layout_and_round_trips(official_hdv3, tmp_path):
    model = load_checkpoint(official_hdv3, "hdv3")
    save_checkpoint(model, tmp_path / "flownet.pkl")
    saved = torch.load(tmp_path / "flownet.pkl", weights_only=True)
    original = torch.load(official_hdv3, map_location="cpu", weights_only=True)
    assert saved.keys() == original.keys()
    assert all(torch.equal(saved[k], original[k]) for k in saved)


@pytest.mark.parametrize("arch", sorted(ARCHITECTURES))
def test_registry_builds_each_architecture(arch):
    assert isinstance(create_model(arch), torch.nn.Module)


def test_unknown_architecture_lists_known():
    with pytest.raises(UserError, match="unknown architecture 'rife9'.*hdv3"):
        create_model("rife9")


class Exploit:
    def __reduce__(self):
        return (print, ("code ran",))


def test_pickle_that_runs_code_is_refused(tmp_path, capsys):
    path = tmp_path / "evil.pkl"
    torch.save({"module.x": Exploit()}, path)
    with pytest.raises(UserError, match="refused"):
        read_state_dict(path)
    assert "code ran" not in capsys.readouterr().out


def test_truncated_and_foreign_files_are_clear_errors(official_hdv3, tmp_path):
    truncated = tmp_path / "truncated.pkl"
    truncated.write_bytes(official_hdv3.read_bytes()[:100_000])
    with pytest.raises(UserError, match="truncated.pkl: not a readable PyTorch file"):
        read_state_dict(truncated)
    text = tmp_path / "notes.pkl"
    text.write_text("hello")
    with pytest.raises(UserError, match="notes.pkl"):
        read_state_dict(text)
    with pytest.raises(UserError, match="no such file"):
        read_state_dict(tmp_path / "missing.pkl")


def test_mismatched_checkpoint_names_keys(tmp_path):
    state = {f"module.{k}": v for k, v in create_model("hdv3").state_dict().items()}
    state.pop("module.block0.conv0.0.0.weight")
    state["module.extra.weight"] = torch.zeros(1)
    torch.save(state, tmp_path / "odd.pkl")
    with pytest.raises(UserError, match=r"1 missing keys: block0\.conv0\.0\.0\.weight.*1 unexpected keys: extra"):
        load_checkpoint(tmp_path / "odd.pkl", "hdv3")


def test_training_only_teacher_keys_are_dropped(tmp_path):
    state = {f"module.{k}": v for k, v in create_model("hdv3").state_dict().items()}
    state["module.teacher.conv0.0.0.weight"] = torch.zeros(3)
    torch.save(state, tmp_path / "v4style.pkl")
    load_checkpoint(tmp_path / "v4style.pkl", "hdv3")


def test_hdv3_refuses_targets_off_the_middle_frame():
    from pipeline.errors import UserError
    from pipeline.models import check_timesteps
    check_timesteps("hdv3", [0.5, 0.5], "data/augmented")
    with pytest.raises(UserError, match=r"data/augmented holds targets at t = 0.25, 0.75 .*extract.timesteps: middle"):
        check_timesteps("hdv3", [0.25, 0.5, 0.75], "data/augmented")


def test_validation_batches_only_frames_of_one_size():
    import pandas as pd
    from pipeline.inference import same_size_chunks
    rows = pd.DataFrame({"height": [8, 8, 8, 16, 16, 8], "width": [8, 8, 8, 16, 16, 8], "timestep": 0.5})
    assert [len(c) for c in same_size_chunks(rows, 2)] == [2, 1, 2, 1]
    assert [len(c) for c in same_size_chunks(rows, 10)] == [3, 2, 1]


def test_the_same_weights_make_the_same_file(tmp_path):
    """DVC hashes outputs: writing identical weights twice (via different temporary names) gives equal bytes."""
    from pipeline.models import create_model, save_checkpoint
    model = create_model("hdv3")
    save_checkpoint(model, tmp_path / "a.pkl")
    save_checkpoint(model, tmp_path / "b.pkl")
    assert (tmp_path / "a.pkl").read_bytes() == (tmp_path / "b.pkl").read_bytes()
