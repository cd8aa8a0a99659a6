"""The model zoo: every architecture against its official implementation (golden outputs on real frames),
strict and safe loading, recognition of a checkpoint's architecture, inference at any size and timestep."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest
import torch

from pipeline.core.errors import UserError
from pipeline.core.params import ARCH_NAMES, Sources
from pipeline.export import main as export_main
from pipeline.fetch import fetch_checkpoint
from pipeline.interpolate import main as interpolate_main
from pipeline.models import (
    ARCHITECTURES,
    AUTO,
    create_model,
    expected_shapes,
    load_checkpoint,
    read_checkpoint,
    read_state_dict,
    resolve_arch,
    save_checkpoint,
)
from tests.golden import (
    HDV3_GOLDEN,
    HDV3_SCALES,
    V4_CASES,
    V4_GOLDEN,
    as_batch,
    as_image,
    case_key,
    real_frames,
    seeded_state,
)
from tests.helpers import assert_user_error, make_clip, moving_texture, run_main

V4 = [arch for arch in ARCHITECTURES if arch != "hdv3"]
# Parameter counts of the published networks (the Practical-RIFE model list; the official code in the wheels).
PUBLISHED_PARAMS = {"hdv3": 3_038_015, "4.6": 5_306_256, "4.18": 5_364_312, "4.22": 9_322_416, "4.25": 5_664_776,
                    "4.26": 5_664_776}
OFFICIAL_HDV3_TENSORS = 160


def seeded_model(arch: str) -> torch.nn.Module:
    model = create_model(arch).eval()
    model.load_state_dict(seeded_state(expected_shapes(arch)))
    return model


def official_file(tmp_path, arch: str, extras: dict[str, torch.Tensor] | None = None):
    """A checkpoint written the way the official files are: ``module.`` keys, plus training-only tensors."""
    state = {f"module.{k}": v for k, v in {**seeded_state(expected_shapes(arch)), **(extras or {})}.items()}
    path = tmp_path / f"flownet_{arch}.pkl"
    torch.save(state, path)
    return path


def test_registry_is_what_params_accept():
    assert set(ARCH_NAMES) == {AUTO, *ARCHITECTURES}


@pytest.mark.parametrize("arch", sorted(PUBLISHED_PARAMS))
def test_parameter_counts_are_the_published_ones(arch):
    assert sum(p.numel() for p in create_model(arch).parameters()) == PUBLISHED_PARAMS[arch]


# ---------------------------------------------------------------- exactness against the official code


def test_official_hdv3_weights_load_strictly(official_hdv3):
    raw = torch.load(official_hdv3, map_location="cpu", weights_only=True)
    assert len(raw) == OFFICIAL_HDV3_TENSORS and all(k.startswith("module.") for k in raw)
    model = load_checkpoint(official_hdv3, "hdv3")
    for key, value in raw.items():
        assert torch.equal(model.state_dict()[key.removeprefix("module.")], value)


@pytest.mark.parametrize("scale", HDV3_SCALES)
def test_hdv3_matches_the_official_implementation_on_real_frames(official_hdv3, scale):
    golden = np.load(HDV3_GOLDEN)[case_key("hdv3", 0.5, scale)]
    img0, img1 = (as_batch(a) for a in real_frames())
    ours = as_image(load_checkpoint(official_hdv3, "hdv3").interpolate(img0, img1, scale=scale))
    assert ours.shape == golden.shape == (*real_frames()[0].shape[:2], 3)
    assert np.abs(ours - golden).max() < 1e-5


@pytest.mark.parametrize("arch", V4)
def test_v4_has_the_official_tensor_names_and_shapes(arch):
    official = json.loads(str(np.load(V4_GOLDEN)[f"{arch}|keys"]))
    assert expected_shapes(arch) == {k: tuple(v) for k, v in official.items()}


@pytest.mark.parametrize("timestep, scale", V4_CASES)
@pytest.mark.parametrize("arch", V4)
def test_v4_matches_the_official_implementation_on_real_frames(arch, timestep, scale):
    golden = np.load(V4_GOLDEN)[case_key(arch, timestep, scale)]
    img0, img1 = (as_batch(a) for a in real_frames())
    ours = as_image(seeded_model(arch).interpolate(img0, img1, timestep, scale))
    assert np.abs(ours - golden).max() < 1e-5
    assert np.abs(golden - as_image(img0)).mean() > 0.01  # the case is not trivially the input frame


# ---------------------------------------------------------------- inference


@pytest.mark.slow  # runs a stage or command in a subprocess, or several full networks
@pytest.mark.parametrize("arch", sorted(ARCHITECTURES))
def test_interpolate_takes_any_size_and_scale(arch):
    model = seeded_model(arch)
    gen = torch.Generator().manual_seed(0)
    a, b = torch.rand(1, 3, 50, 77, generator=gen), torch.rand(1, 3, 50, 77, generator=gen)
    for scale in (1.0, 0.5):
        out = model.interpolate(a, b, scale=scale)
        assert out.shape == (1, 3, 50, 77)
        assert 0.0 <= out.min() and out.max() <= 1.0


@pytest.mark.slow  # runs a stage or command in a subprocess, or several full networks
@pytest.mark.parametrize("arch", V4)
def test_v4_timestep_per_sample_equals_one_call_each(arch):
    model = seeded_model(arch)
    img0, img1 = (as_batch(a) for a in real_frames())
    both = model.interpolate(torch.cat([img0, img0]), torch.cat([img1, img1]), torch.tensor([0.25, 0.75]))
    assert torch.allclose(both[0:1], model.interpolate(img0, img1, 0.25), atol=1e-6)
    assert torch.allclose(both[1:2], model.interpolate(img0, img1, 0.75), atol=1e-6)
    assert not torch.allclose(both[0], both[1], atol=1e-3)


@pytest.mark.slow  # runs a stage or command in a subprocess, or several full networks
def test_v4_in_between_asks_for_each_timestep():
    model = seeded_model("4.18")
    img0, img1 = (as_batch(a) for a in real_frames())
    frames = model.in_between(img0, img1, 3)
    for frame, t in zip(frames, (0.25, 0.5, 0.75), strict=True):
        assert torch.equal(frame, model.interpolate(img0, img1, t))


def test_hdv3_bisects_for_more_frames_and_refuses_other_timesteps(official_hdv3):
    model = load_checkpoint(official_hdv3, "hdv3")
    img0, img1 = (as_batch(a) for a in real_frames())
    quarter, middle, three_quarters = model.in_between(img0, img1, 3)
    assert torch.equal(middle, model.interpolate(img0, img1))
    assert torch.equal(quarter, model.interpolate(img0, middle))
    assert torch.equal(three_quarters, model.interpolate(middle, img1))
    with pytest.raises(ValueError, match="power of two, got 3"):
        model.in_between(img0, img1, 2)
    with pytest.raises(ValueError, match="timestep"):
        model.interpolate(img0, img1, timestep=0.25)


# ---------------------------------------------------------------- training forward


@pytest.mark.slow  # runs a stage or command in a subprocess, or several full networks
@pytest.mark.parametrize("arch", sorted(ARCHITECTURES))
def test_training_forward_gives_every_scale_and_the_teacher_where_there_is_one(arch):
    model = seeded_model(arch).train()
    x = torch.rand(2, 3, 64, 64)
    out = model(x, x.flip(-1), gt=x, timestep=torch.tensor([0.5, 0.5]))
    blocks = len(model.blocks_fine_to_coarse)
    assert len(out.merged) == len(out.flows) == len(out.masks) == blocks
    assert out.flows[-1].shape == (2, 4, 64, 64) and out.masks[-1].shape == (2, 1, 64, 64)
    assert out.prediction is out.merged[-1]
    if model.has_teacher:
        assert out.teacher_prediction.shape == x.shape and out.teacher_flow.shape == (2, 4, 64, 64)
        assert model(x, x).teacher_prediction is None
    else:
        assert out.teacher_prediction is None
    out.prediction.mean().backward()
    trained = {k for k, p in model.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}
    student = {k for k in expected_shapes(arch) if not k.startswith("block_tea.")}
    # HDv3 averages each block's mask logit over both directions (m0 - m1) / 2: its last bias cancels out.
    cancelled = {f"block{i}.conv2.2.bias" for i in range(3)} if arch == "hdv3" else set()
    assert student - cancelled <= trained  # every other student tensor takes part in the prediction


# ---------------------------------------------------------------- recognising and loading checkpoints


@pytest.mark.parametrize("arch", [a for a in ARCHITECTURES if a not in ("4.25", "4.26")])
def test_auto_recognises_each_architecture(tmp_path, arch):
    path = official_file(tmp_path, arch, {"teacher.conv0.0.0.weight": torch.zeros(3)} if arch != "hdv3" else None)
    assert resolve_arch(AUTO, path) == arch
    assert type(load_checkpoint(path, AUTO)) is ARCHITECTURES[arch]


def test_auto_tells_4_26_by_its_training_only_tensors_and_asks_otherwise(tmp_path):
    assert resolve_arch(AUTO, official_file(tmp_path, "4.26", {"caltime.0.weight": torch.zeros(2)})) == "4.26"
    with pytest.raises(UserError, match=r"fits 4\.25 and 4\.26 alike .*set train\.arch"):
        resolve_arch(AUTO, official_file(tmp_path, "4.25"))


def test_unknown_checkpoint_lists_the_closest_architectures_and_their_mismatches(tmp_path):
    state = seeded_state(expected_shapes("4.18"))
    state.pop("block3.lastconv.0.bias")
    state["encode.cnn0.weight"] = torch.zeros(16, 3, 3, 3)
    path = tmp_path / "odd.pkl"
    torch.save(state, path)
    with pytest.raises(UserError, match=r"odd\.pkl is no known RIFE architecture .*closest: 4\.18: 1 missing keys: "
                                        r"block3\.lastconv\.0\.bias; 1 wrong shape keys: encode\.cnn0\.weight; "):
        resolve_arch(AUTO, path)


def test_mismatched_checkpoint_names_keys(tmp_path):
    state = {f"module.{k}": v for k, v in create_model("hdv3").state_dict().items()}
    state.pop("module.block0.conv0.0.0.weight")
    state["module.extra.weight"] = torch.zeros(1)
    torch.save(state, tmp_path / "odd.pkl")
    with pytest.raises(UserError, match=r"1 missing keys: block0\.conv0\.0\.0\.weight; 1 unexpected keys: extra"):
        load_checkpoint(tmp_path / "odd.pkl", "hdv3")


def test_training_only_tensors_are_kept_apart_and_written_back(tmp_path):
    extras = {"teacher.conv0.0.0.weight": torch.ones(3), "caltime.0.weight": torch.ones(2)}
    path = official_file(tmp_path, "4.26", extras)
    checkpoint = read_checkpoint(path)
    assert checkpoint.extras.keys() == extras.keys()
    model = load_checkpoint(path, AUTO)
    save_checkpoint(model, tmp_path / "finetuned.pkl", extras=checkpoint.extras)
    saved = torch.load(tmp_path / "finetuned.pkl", weights_only=True)
    assert saved.keys() == torch.load(path, weights_only=True).keys()


@pytest.mark.parametrize("arch", sorted(ARCHITECTURES))
def test_saved_checkpoint_has_the_official_layout_and_round_trips(tmp_path, arch):
    model = seeded_model(arch)
    save_checkpoint(model, tmp_path / "flownet.pkl")
    saved = torch.load(tmp_path / "flownet.pkl", weights_only=True)
    assert list(saved) == [f"module.{k}" for k in expected_shapes(arch)]
    again = load_checkpoint(tmp_path / "flownet.pkl", arch)
    assert all(torch.equal(again.state_dict()[k], v) for k, v in model.state_dict().items())


def test_official_hdv3_file_round_trips_bit_for_bit(official_hdv3, tmp_path):
    save_checkpoint(load_checkpoint(official_hdv3, "hdv3"), tmp_path / "flownet.pkl")
    saved = torch.load(tmp_path / "flownet.pkl", weights_only=True)
    original = torch.load(official_hdv3, map_location="cpu", weights_only=True)
    assert saved.keys() == original.keys() and all(torch.equal(saved[k], original[k]) for k in saved)


def test_the_same_weights_make_the_same_file(tmp_path):
    """DVC hashes outputs: writing identical weights twice (via different temporary names) gives equal bytes."""
    model = create_model("hdv3")
    save_checkpoint(model, tmp_path / "a.pkl")
    save_checkpoint(model, tmp_path / "b.pkl")
    assert (tmp_path / "a.pkl").read_bytes() == (tmp_path / "b.pkl").read_bytes()


def test_unknown_architecture_lists_known():
    with pytest.raises(UserError, match="unknown architecture 'rife9'.*hdv3, 4.6, 4.18"):
        create_model("rife9")


class Exploit:
    def __reduce__(self):
        return (print, ("code ran",))


def test_pickle_that_runs_code_is_refused(tmp_path, capsys):
    path = tmp_path / "evil.pkl"
    torch.save({"module.x": Exploit()}, path)
    with pytest.raises(UserError, match="refused, loading it would run code"):
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
    only_teacher = tmp_path / "teacher.pkl"
    torch.save({"module.teacher.w": torch.zeros(1)}, only_teacher)
    with pytest.raises(UserError, match="holds only training-only tensors"):
        read_state_dict(only_teacher)
    pickled = tmp_path / "list.pkl"
    pickled.write_bytes(pickle.dumps([1, 2]))
    with pytest.raises(UserError, match=r"list.pkl: refused, .*\(it holds objects other than tensors\)"):
        read_state_dict(pickled)


def test_hdv3_refuses_targets_off_the_middle_frame():
    from pipeline.models import check_timesteps
    check_timesteps("hdv3", [0.5, 0.5], "data/augmented")
    check_timesteps("4.18", [0.25, 0.5], "data/augmented")
    with pytest.raises(UserError, match=r"data/augmented holds targets at t = 0.25, 0.75 .*extract.timesteps: middle"):
        check_timesteps("hdv3", [0.25, 0.5, 0.75], "data/augmented")


def test_validation_batches_only_frames_of_one_size():
    import pandas as pd

    from pipeline.scoring.batches import same_size_chunks
    rows = pd.DataFrame({"height": [8, 8, 8, 16, 16, 8], "width": [8, 8, 8, 16, 16, 8], "timestep": 0.5})
    assert [len(c) for c in same_size_chunks(rows, 2)] == [2, 1, 2, 1]
    assert [len(c) for c in same_size_chunks(rows, 10)] == [3, 2, 1]


@pytest.mark.slow  # runs a stage or command in a subprocess, or several full networks
@pytest.mark.parametrize("arch", ["hdv3", "4.25"])
def test_channels_last_inference_differs_only_by_rounding(arch):
    model = seeded_model(arch)
    img0, img1 = (as_batch(a) for a in real_frames())
    plain = model.interpolate(img0, img1)
    fast = model.for_inference()
    assert fast.memory_format() == torch.channels_last and not fast.training
    out = fast.interpolate(img0, img1)
    assert out.is_contiguous() and (out - plain).abs().max() < 1e-4


def test_auto_without_the_pretrained_file_says_what_to_run(tmp_path, params_dict):
    from pipeline.core.params import load_params
    from pipeline.models import with_resolved_arch
    from tests.helpers import write_params
    write_params(tmp_path, params_dict)
    params = load_params(tmp_path / "params.yaml")
    with pytest.raises(UserError, match=r"train.arch: auto .*missing\.pkl, which is missing; run `dvc repro fetch`"):
        with_resolved_arch(params, tmp_path / "missing.pkl")


def test_a_folder_or_a_url_as_the_checkpoint_is_named_as_given(tmp_path, monkeypatch):
    """Before: a folder was "no such file", and a URL came out mangled as ``https:/…`` by Path."""
    (tmp_path / "run").mkdir()
    with pytest.raises(UserError) as caught:
        read_checkpoint(tmp_path / "run")
    assert str(caught.value) == f"checkpoint {tmp_path / 'run'}: is a folder; expected a flownet.pkl file"
    (tmp_path / "run/flownet.pkl").write_bytes(b"x")
    with pytest.raises(UserError, match=r"is a folder; expected a flownet.pkl file such as .*run/flownet.pkl$"):
        read_checkpoint(str(tmp_path / "run"))
    url = "https://example.com/rife/flownet.pkl"
    with pytest.raises(UserError) as caught:
        read_checkpoint(url)
    assert str(caught.value) == (f"checkpoint {url}: a URL; URLs are not fetched at run time: download the file and "
                                 "give its local path")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UserError, match=f"^sources.checkpoint {url}: a URL; URLs are not fetched at run time"):
        fetch_checkpoint(Sources(videos="data/demo", checkpoint=url), "auto")
    with pytest.raises(UserError, match="^sources.checkpoint run: is a folder; expected a flownet.pkl file such as "
                                        "run/flownet.pkl \\(nothing was changed\\)$"):
        fetch_checkpoint(Sources(videos="data/demo", checkpoint="run"), "auto")
    make_clip(tmp_path / "in.mkv", moving_texture(2, height=32, width=48))
    for flag, label in (("--checkpoint", "checkpoint"), ("--onnx", "--onnx")):
        done = run_main(interpolate_main, "in.mkv", "out.mkv", "--codec", "ffv1", flag, url, "--cut-threshold", "0.1")
        assert_user_error(done, f"{label} {url}: a URL; URLs are not fetched at run time")
    assert_user_error(run_main(export_main, "--checkpoint", url), f"checkpoint {url}: a URL")
