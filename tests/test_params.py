"""params.yaml loading: typed values, and one clear line for every kind of mistake."""

from __future__ import annotations

import pytest
import yaml

from pipeline.core.errors import UserError
from pipeline.core.params import load_params
from tests.helpers import ROOT

STAGES = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]


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
    ("extract", "timestep_tolerance", 0.6, r"extract\.timestep_tolerance = 0\.6: expected a number >= 0 and <= 0\.5"),
    ("extract", "timestep_tolerance", -0.01, r"extract\.timestep_tolerance = -0\.01: expected a number >= 0"),
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
    params_dict["train"].update(schedule="warmup_constant", warmup_steps=params_dict["train"]["steps"])
    with pytest.raises(UserError, match=r"train\.warmup_steps = 160 must be below train\.steps \(160\)"):
        load_params(write(tmp_path, params_dict))


def test_a_short_trial_run_stops_only_the_stage_that_reads_train(tmp_path, params_dict):
    """`dvc exp run -S train.steps=6` with the defaults: one_cycle's rise needs 2 steps, 0.3 x 6 gives 1.8."""
    params_dict["train"]["steps"] = 6
    path = write(tmp_path, params_dict)
    assert load_params(path, sections=STAGES["extract"]["params"]).train.steps == 6
    assert load_params(path, sections=STAGES["evaluate"]["params"]).train.steps == 6
    with pytest.raises(UserError) as err:
        load_params(path, sections=STAGES["train"]["params"])
    assert str(err.value) == (f"{path}: train.schedules.one_cycle.pct_start = 0.3 leaves under 2 of the 6 steps "
                              "(train.steps) for the rise (train.schedule = one_cycle); use at least 0.34")


@pytest.mark.parametrize("warmup, message", [
    (10, "train.warmup_steps = 10 must be below train.steps (6); use at most 5, or 0"),
    (1.0, "train.warmup_steps = 1.0 (6 steps) must be below train.steps (6); use at most 5, or 0"),
])
def test_a_warmup_too_long_for_the_run_says_what_fits(tmp_path, params_dict, warmup, message):
    params_dict["train"].update(steps=6, schedule="warmup_constant", warmup_steps=warmup)
    path = write(tmp_path, params_dict)
    load_params(path, sections=STAGES["extract"]["params"])
    with pytest.raises(UserError) as err:
        load_params(path, sections=STAGES["train"]["params"])
    assert str(err.value) == f"{path}: {message}"
    params_dict["train"]["warmup_steps"] = 5
    assert load_params(write(tmp_path, params_dict)).train.warmup_steps == 5


def test_a_schedule_without_warmup_ignores_warmup_steps(tmp_path, params_dict):
    params_dict["train"].update(steps=6, schedule="constant", warmup_steps=10)
    assert load_params(write(tmp_path, params_dict)).train.warmup_steps == 10
    params_dict["train"]["schedule"] = "linear"
    with pytest.raises(UserError, match="warmup_steps = 10 must be below"):
        load_params(write(tmp_path, params_dict))


def test_types_and_unknown_keys_of_every_section_are_checked_for_every_stage(tmp_path, params_dict):
    params_dict["train"]["stepz"] = 6
    with pytest.raises(UserError, match=r"unknown key train\.stepz"):
        load_params(write(tmp_path, params_dict), sections=STAGES["extract"]["params"])
    del params_dict["train"]["stepz"]
    params_dict["train"]["steps"] = 0
    with pytest.raises(UserError, match=r"train\.steps = 0: expected an integer >= 1"):
        load_params(write(tmp_path, params_dict), sections=STAGES["extract"]["params"])


def test_a_section_that_does_not_exist_is_a_programming_error(tmp_path, params_dict):
    with pytest.raises(ValueError, match="params has no section 'trian'"):
        load_params(write(tmp_path, params_dict), sections=("trian.steps",))


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
                                 "2 of the 5 steps (train.steps) for the rise (train.schedule = one_cycle); use at "
                                 "least 0.4")


@pytest.mark.parametrize("changes, message", [
    ({"keep": "best", "keep_by": "vmaf"},
     "train.keep_by = vmaf needs VMAF at validation, but train.val_vmaf_triplets = 0; set it to a number of val "
     "triplets (e.g. 32)"),
    ({"keep": "best", "keep_by": "psnr_within_vmaf"},
     "train.keep_by = psnr_within_vmaf needs VMAF at validation, but train.val_vmaf_triplets = 0; set it to a "
     "number of val triplets (e.g. 32)"),
    ({"keep": "last", "keep_by": "vmaf", "val_vmaf_triplets": 8},
     "train.keep_by = vmaf chooses nothing with train.keep = last and train.early_stopping.patience = 0; set "
     "train.keep: best"),
])
def test_keeping_by_vmaf_needs_vmaf_at_validation_and_a_choice(tmp_path, params_dict, changes, message):
    params_dict["train"].update(changes)
    path = write(tmp_path, params_dict)
    load_params(path, sections=STAGES["evaluate"]["params"])  # only train's own checks stop
    with pytest.raises(UserError) as err:
        load_params(path, sections=STAGES["train"]["params"])
    assert str(err.value) == f"{path}: {message}"


@pytest.mark.parametrize("changes", [
    {"keep": "best", "keep_by": "psnr_within_vmaf", "val_vmaf_triplets": 32, "vmaf_tolerance": 0.1},
    {"keep": "last", "keep_by": "vmaf", "val_vmaf_triplets": 8, "early_stopping": {"patience": 2, "min_delta": 0.0}},
    {"keep": "last", "keep_by": "psnr", "val_vmaf_triplets": 8},  # VMAF logged as a curve only
])
def test_keep_by_settings_that_fit(tmp_path, params_dict, changes):
    params_dict["train"].update(changes)
    params = load_params(write(tmp_path, params_dict), sections=STAGES["train"]["params"])
    assert params.train.keep_by == changes["keep_by"]
    assert params.train.val_vmaf_triplets == changes["val_vmaf_triplets"]


def test_the_project_params_keep_by_psnr_without_vmaf_at_validation(params_dict):
    train = params_dict["train"]
    assert (train["keep_by"], train["vmaf_tolerance"], train["val_vmaf_triplets"]) == ("psnr", 0.0, 0)


@pytest.mark.parametrize("key, value, message", [
    ("keep_by", "ssim", r"train\.keep_by = 'ssim': expected one of: psnr, vmaf, psnr_within_vmaf"),
    ("vmaf_tolerance", -1, r"train\.vmaf_tolerance = -1: expected a number >= 0"),
    ("val_vmaf_triplets", -1, r"train\.val_vmaf_triplets = -1: expected an integer >= 0"),
])
def test_bad_keep_by_values_are_named(tmp_path, params_dict, key, value, message):
    params_dict["train"][key] = value
    with pytest.raises(UserError, match=message):
        load_params(write(tmp_path, params_dict))
