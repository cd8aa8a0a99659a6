"""params.yaml loading: typed values, and one clear line for every kind of mistake."""

from __future__ import annotations

import pytest
import yaml

from pipeline.core.errors import UserError
from pipeline.core.params import load_params


def write(tmp_path, data, text=None):
    path = tmp_path / "params.yaml"
    path.write_text(text if text is not None else yaml.safe_dump(data))
    return path


def test_project_params_load(tmp_path, params_dict):
    params = load_params(write(tmp_path, params_dict))
    assert params.lr == 1e-4
    assert params.train.arch == "auto" and params.extract.gap == (1,)
    assert params.evaluate.methods == ("finetuned", "pretrained", "repeat", "blend", "dis_flow", "ffmpeg_mci")
    assert params.evaluate.segments.seconds > 0 and params.evaluate.videos.codec == "ffv1"
    assert params.evaluate.scale == "auto"


@pytest.mark.parametrize("text", ["1e-05", "1.0e-5", "0.00001", "1e-5", "'1e-05'"])
def test_learning_rate_in_any_yaml_form_is_the_same_float(tmp_path, params_dict, text):
    body = yaml.safe_dump({k: v for k, v in params_dict.items() if k != "lr"})
    params = load_params(write(tmp_path, None, f"lr: {text}\n{body}"))
    assert params.lr == 1e-5 and isinstance(params.lr, float)


@pytest.mark.parametrize("section, key, value, message", [
    ("train", "steps", -5, r"train\.steps = -5: expected an integer >= 1"),
    ("train", "steps", 2.5, r"train\.steps = 2\.5: expected an integer"),
    ("train", "steps", "many", r"train\.steps = 'many': expected an integer"),
    ("train", "schedule", "cosine_wobble",
     r"train\.schedule = 'cosine_wobble': expected one of: constant, warmup_constant"),
    ("train", "arch", "4.99", r"train\.arch = '4\.99': expected one of: auto, hdv3, 4\.6"),
    ("augment", "hflip", 1.5, r"augment\.hflip = 1\.5: expected a number >= 0 and <= 1"),
    ("evaluate", "methods", ["finetuned", "magic"], r"evaluate\.methods\[1\] = 'magic': expected one of: finetuned"),
    ("evaluate", "round_prediction", "yes", r"evaluate\.round_prediction = 'yes': expected true or false"),
    ("extract", "test_fraction", 0, r"extract\.test_fraction = 0: expected a number > 0"),
    ("extract", "gap", 0, r"extract\.gap = 0: expected an integer >= 1, or a non-empty list of them"),
    ("extract", "gap", [1, 0], r"extract\.gap\[1\] = 0: expected an integer >= 1, or a non-empty list of them"),
    ("extract", "gap", [], r"extract\.gap = \[\]: expected a non-empty list"),
    ("extract", "gap", [2, 2], r"extract\.gap = \[2, 2\]: entries must not repeat"),
    ("extract", "split_by", "shots", r"extract\.split_by = 'shots': expected one of: time, clip, blocks"),
    ("augment", "crop", 32, r"augment\.crop = 32: expected an integer >= 64"),
    ("augment", "downscale_min", 0, r"augment\.downscale_min = 0: expected a number > 0 and <= 1"),
])
def test_bad_values_are_named(tmp_path, params_dict, section, key, value, message):
    params_dict[section][key] = value
    with pytest.raises(UserError, match=message):
        load_params(write(tmp_path, params_dict))


def test_gap_is_one_number_or_a_list(tmp_path, params_dict):
    params_dict["extract"]["gap"] = 2
    assert load_params(write(tmp_path, params_dict)).extract.gap == (2,)
    params_dict["extract"]["gap"] = [1, 2]
    assert load_params(write(tmp_path, params_dict)).extract.gap == (1, 2)


def test_blocks_must_hold_a_triplet_and_the_guard(tmp_path, params_dict):
    params_dict["extract"].update(split_by="blocks", gap=[1, 4], guard_frames=2, block_frames=10)
    message = r"extract\.block_frames = 10 cannot hold a triplet of extract\.gap 4 .* at least 11"
    with pytest.raises(UserError, match=message):
        load_params(write(tmp_path, params_dict))


def test_bad_learning_rate(tmp_path, params_dict):
    params_dict["lr"] = 0
    with pytest.raises(UserError, match=r"lr = 0: expected a number > 0 and <= 1"):
        load_params(write(tmp_path, params_dict))


def test_unknown_key_lists_valid_ones(tmp_path, params_dict):
    params_dict["train"]["stepz"] = 10
    with pytest.raises(UserError, match=r"unknown key train\.stepz; train takes: arch, steps"):
        load_params(write(tmp_path, params_dict))


def test_unknown_nested_key(tmp_path, params_dict):
    params_dict["train"]["loss"]["perceptual"] = 1.0
    with pytest.raises(UserError, match=r"unknown key train\.loss\.perceptual"):
        load_params(write(tmp_path, params_dict))


def test_missing_key(tmp_path, params_dict):
    del params_dict["base"]["seed"]
    with pytest.raises(UserError, match=r"missing key base\.seed \(an integer >= 0\)"):
        load_params(write(tmp_path, params_dict))


def test_inconsistent_values(tmp_path, params_dict):
    params_dict["train"]["warmup_steps"] = params_dict["train"]["steps"] + 1
    with pytest.raises(UserError, match="warmup_steps .* longer than the run"):
        load_params(write(tmp_path, params_dict))


def test_crop_must_fit_the_network(tmp_path, params_dict):
    params_dict["augment"]["crop"] = 100
    with pytest.raises(UserError, match="augment.crop = 100: expected a multiple of 32"):
        load_params(write(tmp_path, params_dict))


def test_invalid_yaml_and_missing_file(tmp_path):
    with pytest.raises(UserError, match="is not valid YAML"):
        load_params(write(tmp_path, None, "lr: [1\n"))
    with pytest.raises(UserError, match="no such file"):
        load_params(tmp_path / "nope.yaml")


def test_params_are_frozen(tmp_path, params_dict):
    params = load_params(write(tmp_path, params_dict))
    with pytest.raises(AttributeError):
        params.train.steps = 3


def test_an_unprintable_key_is_escaped_and_the_line_stays_one(tmp_path, params_dict):
    params_dict["base"]["\n"] = 1
    with pytest.raises(UserError) as caught:
        load_params(write(tmp_path, params_dict))
    assert str(caught.value) == f"{tmp_path / 'params.yaml'}: unknown key base.'\\n'; base takes: seed"


def test_values_that_disagree_are_named_with_the_file_and_every_key_involved(tmp_path, params_dict):
    params_dict["train"].update(schedule="one_cycle", steps=5)
    with pytest.raises(UserError) as caught:
        load_params(write(tmp_path, params_dict))
    assert str(caught.value) == (f"{tmp_path / 'params.yaml'}: train.schedules.one_cycle.pct_start = 0.3 leaves under "
                                 "2 of the train.steps = 5 steps for the rise (train.schedule = one_cycle)")
