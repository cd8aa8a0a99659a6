"""The study: which runs it queues, the statistics of replicated runs, and the verdict (the real sweep, shared over
two clones, is in test_sharing_e2e.py)."""

from __future__ import annotations

import json
import zlib

import numpy as np
import pandas as pd
import pytest
import yaml

from pipeline.core.errors import UserError
from pipeline.core.params import load_params
from pipeline.core.paths import LR_FIND_RESULTS
from pipeline.experiments.records import Experiment, parse
from pipeline.experiments.report import minutes_text, settings
from pipeline.experiments.runs import (
    EXTRA,
    STUDY,
    STUDY_COMMON,
    parse_shard,
    select_runs,
    strategy_of,
    study_runs,
)
from pipeline.experiments.stats import (
    block_sampler,
    components,
    pooled_seed_sd,
    spearman,
    triplet_sampler,
    two_way,
    two_way_difference,
)
from pipeline.experiments.verdict import StrategyResult, bucket_mask, segment_lengths, summarise
from tests.helpers import assert_user_error, run_module

LR_FIND_METRICS = LR_FIND_RESULTS / "metrics.json"


def test_no_commit_is_a_clear_error():
    with pytest.raises(UserError, match="commit the project first"):
        parse([{"rev": "workspace", "data": {}}])


def test_a_run_belongs_to_the_strategy_its_name_says():
    assert strategy_of("default-seed2") == "default"
    assert strategy_of("l2sp-100-seed10") == "l2sp-100"
    assert strategy_of("my-run") == "my-run" and strategy_of("odd-seedx") == "odd-seedx"


def test_settings_name_what_differs_from_the_baseline_but_the_seed():
    base = {"lr": 1e-4, "base": {"seed": 1}, "train": {"schedule": "one_cycle", "l2sp": 0.0},
            "evaluate": {"methods": ["finetuned", "pretrained", "blend"]}}
    run = {"lr": 1e-5, "base": {"seed": 2}, "train": {"schedule": "warmup_constant", "l2sp": 0.0},
           "evaluate": {"methods": ["finetuned", "pretrained"]}}
    assert settings(run, base) == "lr=1e-05, train.schedule=warmup_constant"
    assert settings(base, base) == "baseline params"


# ---- statistics ---------------------------------------------------------------------------------------------

def test_two_way_interval_of_a_constant_has_no_width():
    assert two_way(np.full((3, 50), 0.2), triplet_sampler(50), 500, 0).text() == "+0.200 (+0.200 .. +0.200)"


def test_seed_noise_widens_the_interval_that_triplets_alone_would_give():
    rng = np.random.default_rng(0)
    triplets = rng.normal(0.2, 0.3, size=200)
    calm = np.vstack([triplets] * 3)
    noisy = calm + np.array([[-0.1], [0.0], [0.1]])  # each seed shifts every triplet alike
    narrow, wide = (two_way(m, triplet_sampler(200), 2000, 1) for m in (calm, noisy))
    assert narrow.mean == pytest.approx(wide.mean)
    assert wide.high - wide.low > 1.5 * (narrow.high - narrow.low)


def test_paired_seeds_cancel_what_both_strategies_share():
    rng = np.random.default_rng(1)
    shared = rng.normal(0, 0.2, size=(3, 1)) + rng.normal(0, 0.3, size=(1, 100))
    a, b = shared + 0.05, shared
    paired = two_way_difference(a, b, True, triplet_sampler(100), 2000, 0)
    unpaired = two_way_difference(a, b, False, triplet_sampler(100), 2000, 0)
    assert paired.mean == pytest.approx(0.05) and paired.low == pytest.approx(0.05)  # the difference is exact
    assert unpaired.high - unpaired.low > 0.05


def test_blocks_stay_inside_their_segment():
    draws = block_sampler([5, 3], block=2)(np.random.default_rng(0), 200)
    assert draws.shape == (200, 8)
    assert (draws[:, :5] < 5).all() and (draws[:, 5:] >= 5).all()
    assert (np.diff(draws[:, :2], axis=1) == 1).all()  # the first block is two consecutive frames


def test_variance_components_recover_the_seed_and_triplet_terms():
    rng = np.random.default_rng(2)
    matrix = (rng.normal(0, 0.1, size=(40, 1)) + rng.normal(0, 0.3, size=(1, 400))
              + rng.normal(0, 0.2, size=(40, 400)))
    parts = components(matrix)
    assert parts.seed == pytest.approx(0.01, rel=0.4)
    assert parts.unit == pytest.approx(0.09, rel=0.2)
    assert parts.rest == pytest.approx(0.04, rel=0.1)
    # more triplets help until the seed term dominates; then only seeds do
    assert parts.units_needed(0.05, seeds=3) == np.inf
    assert parts.seeds_needed(0.05) == pytest.approx(parts.seed / (0.05 / (1.959964 + 0.841621)) ** 2)
    assert np.isfinite(parts.units_needed(0.05, seeds=400))


def test_pooled_seed_sd_and_spearman():
    assert pooled_seed_sd([[1.0, 3.0], [5.0], [2.0, 2.0]]) == pytest.approx(np.sqrt(2 / 2))
    assert pooled_seed_sd([[1.0]]) is None
    assert spearman([1, 2, 3, 4], [10, 20, 30, 400]) == 1.0
    assert spearman([1, 2, 3], [3, 2, 1]) == -1.0
    assert spearman([1, 2], [1, 2]) is None and spearman([1, 1, 1], [1, 2, 3]) is None


def test_the_fastest_bucket_is_the_top_quarter_of_motion_and_segments_split_at_jumps():
    motion = np.array([0.5, 0.1, 0.9, 0.3, 0.7, 0.2, 0.8, 0.4])
    assert bucket_mask(motion, 4).tolist() == [False, False, True, False, False, False, True, False]
    frames = pd.DataFrame({"clip": ["a"] * 5 + ["b"] * 2, "frame": [1, 3, 5, 41, 43, 7, 9]})
    assert segment_lengths(frames) == [3, 2, 2]


# ---- the verdict on synthetic runs ------------------------------------------------------------------------

TRIPLETS = 80


def synthetic(name: str, shift: float, fast_shift: float = 0.0, vmaf: float = 0.0, val: float | None = None,
              seeds: int = 3, noise: float = 0.02, triplet_ids: range = range(TRIPLETS)) -> tuple[list, dict]:
    """Runs of one strategy: per triplet, the fine-tuned PSNR is the pretrained one plus ``shift`` (plus
    ``fast_shift`` on the fastest quarter), a per-seed offset and triplet noise."""
    rng = np.random.default_rng(zlib.crc32(name.encode()))  # hash() differs between processes
    motion = np.linspace(0.01, 0.2, TRIPLETS)
    pretrained = 35 + rng.normal(0, 1, TRIPLETS)
    runs, tables = [], {}
    for k in range(1, seeds + 1):
        gain = shift + fast_shift * (motion >= np.quantile(motion, 0.75)) + rng.normal(0, noise) \
            + rng.normal(0, 0.05, TRIPLETS)
        run = Experiment(f"{name}-seed{k}", "success", {"base": {"seed": k}}, rev="x",
                         train={"val": {"gain": (shift if val is None else val) + rng.normal(0, 0.005)}})
        runs.append(run)
        frames = pd.DataFrame({"clip": "a", "frame": np.arange(1, 61, 2), "pretrained_vmaf": 90.0,
                               "finetuned_vmaf": 90.0 + vmaf + rng.normal(0, 0.02, 30)})
        tables[run.name] = {"triplets": pd.DataFrame({"triplet": list(triplet_ids), "motion": motion,
                                                      "pretrained_psnr": pretrained,
                                                      "finetuned_psnr": pretrained + gain}),
                            "frames": frames, "seconds": pd.DataFrame({"step": [1, 2], "seconds": [3.0, 60.0 * k]})}
    return runs, tables


def study_of(*specs) -> tuple:
    results, tables = [], {}
    for spec in specs:
        runs, more = synthetic(**spec)
        results.append(StrategyResult(spec["name"], "", runs))
        tables.update(more)
    return summarise(results, tables, list(range(TRIPLETS)), 4, [30]), {r.name: r for r in results}


def test_strategies_are_grouped_against_the_default_and_the_best():
    study, by_name = study_of({"name": "default", "shift": 0.2}, {"name": "higher", "shift": 0.35},
                              {"name": "same", "shift": 0.205}, {"name": "lower", "shift": 0.05})
    assert study.best is by_name["higher"]
    assert by_name["higher"].group == "better than the default"
    assert by_name["same"].group == "not distinguishable from the default"
    assert by_name["lower"].group == "worse than the default"
    assert by_name["default"].group == "the default"
    assert by_name["same"].vs_best.below_zero
    text = "\n".join(study.verdict)
    assert "Highest mean test gain over the pretrained model: higher" in text
    assert "Better than the default: higher." in text and "Worse than the default: lower." in text
    assert "Seed noise floor" in text and "Validation ranks the strategies as the test does" in text
    assert ("test triplets of this footage would be needed" in text
            or "no number of test triplets of this footage would be enough" in text)


def test_a_mean_gain_that_loses_on_fast_motion_or_vmaf_is_flagged():
    study, by_name = study_of({"name": "default", "shift": 0.2}, {"name": "fast-loser", "shift": 0.3,
                                                                   "fast_shift": -0.6},
                              {"name": "vmaf-loser", "shift": 0.25, "vmaf": -0.3})
    assert by_name["fast-loser"].fast.below_zero and "fastest motion" in by_name["fast-loser"].flags[0]
    assert "VMAF" in by_name["vmaf-loser"].flags[0] and not by_name["default"].flags
    assert "fast-loser loses" in "\n".join(study.verdict)


def test_training_minutes_are_the_end_of_each_runs_committed_time_curve():
    _, by_name = study_of({"name": "default", "shift": 0.2})
    assert by_name["default"].scores.minutes == [1.0, 2.0, 3.0]  # seeds 1, 2, 3 ran 60, 120 and 180 s


@pytest.mark.parametrize("minutes, text", [([1.0, 2.0, 3.0], "2.0"), ([12.34], "12.3"), ([0.047], "0.047"),
                                           ([0.25, 0.35], "0.3"), ([], "")])
def test_the_report_gives_a_run_of_seconds_its_minutes_not_zero(minutes, text):
    assert minutes_text(minutes) == text


def test_when_validation_disagrees_with_the_test_no_winner_is_named():
    study, _ = study_of({"name": "default", "shift": 0.2, "val": 0.3}, {"name": "b", "shift": 0.3, "val": 0.1},
                        {"name": "c", "shift": 0.1, "val": 0.4}, {"name": "d", "shift": 0.25, "val": 0.05})
    assert study.rho < 0.7
    assert "cannot pick a strategy on this footage and no winner is named" in "\n".join(study.verdict)


def test_runs_on_other_test_triplets_are_not_compared():
    study, by_name = study_of({"name": "default", "shift": 0.2},
                              {"name": "elsewhere", "shift": 0.3, "triplet_ids": range(1, TRIPLETS + 1)})
    assert by_name["elsewhere"].gain is None and by_name["default"].gain is not None


# ---- which runs are queued ---------------------------------------------------------------------------------

@pytest.fixture(params=[False, True], ids=["without-lr-find", "with-lr-find"])
def whole_study(request, tmp_path) -> dict:
    if request.param:
        (tmp_path / LR_FIND_METRICS).parent.mkdir(parents=True)
        (tmp_path / LR_FIND_METRICS).write_text(json.dumps({"suggested": {"valley": 1.5e-4}}))
    return study_runs(tmp_path, extended=True)


def test_every_strategy_gets_its_seeds_and_replicate_one_is_the_baseline_seed(whole_study):
    runs = select_runs(whole_study, seeds=3, first_seed=1234)
    assert len(runs) == 3 * len(whole_study)
    assert runs["default-seed1"] == {"base.seed": "1234"} and runs["default-seed3"]["base.seed"] == "1236"
    assert runs["author-1e-5-seed2"] == {**STUDY["author-1e-5"], "base.seed": "1235"}


@pytest.mark.parametrize("machines", range(1, 10))
def test_shards_are_disjoint_and_together_the_whole_study(whole_study, machines):
    everything = select_runs(whole_study, seeds=2)
    shards = [select_runs(whole_study, seeds=2, shard=(k, machines)) for k in range(1, machines + 1)]
    names = [name for shard in shards for name in shard]
    assert len(names) == len(set(names))  # no run is queued on two machines
    assert set(names) == set(everything)  # and none is left out
    assert all(shard[name] == everything[name] for shard in shards for name in shard)
    assert max(map(len, shards)) - min(map(len, shards)) <= 1


def test_the_lr_find_run_comes_last_so_it_moves_no_other_run(tmp_path):
    without = study_runs(tmp_path, extended=True)
    (tmp_path / LR_FIND_METRICS).parent.mkdir(parents=True)
    (tmp_path / LR_FIND_METRICS).write_text(json.dumps({"suggested": {"valley": 1.5e-4}}))
    with_it = study_runs(tmp_path, extended=True)
    assert study_runs(tmp_path) == STUDY  # the standard study: no extras, lr_find's results or not
    assert list(with_it) == [*STUDY, *EXTRA, "lr-find-valley"] and with_it["lr-find-valley"]["lr"] == "0.00015"
    for k in (1, 2, 3):
        assert set(select_runs(without, shard=(k, 3))) <= set(select_runs(with_it, shard=(k, 3)))


@pytest.mark.parametrize("name", [*STUDY, *EXTRA])
def test_every_strategy_sets_existing_keys_to_values_the_params_accept(tmp_path, params_dict, name):
    """What `dvc exp run -S` would write for the strategy (values read as YAML) loads, every check run."""
    for key, value in {**STUDY_COMMON, **{**STUDY, **EXTRA}[name]}.items():
        *sections, last = key.split(".")
        table = params_dict
        for section in sections:
            table = table[section]
        assert last in table, f"{name}: {key} is not a key of params.yaml"
        table[last] = yaml.safe_load(value)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params_dict))
    load_params(tmp_path / "params.yaml")


def test_only_picks_strategies_in_the_study_order_before_sharding(tmp_path):
    runs = study_runs(tmp_path, extended=True)
    only = ["l2sp-100", "default", "author-1e-5"]
    assert list(select_runs(runs, only)) == ["default-seed1", "author-1e-5-seed1", "l2sp-100-seed1"]
    assert list(select_runs(runs, only, shard=(2, 2))) == ["author-1e-5-seed1"]
    with pytest.raises(UserError, match="--only nope: not a strategy of the study; its strategies are default, "):
        select_runs(runs, ["nope", "default"])


def test_set_flags_are_key_value_pairs():
    from pipeline.experiments.runs import parse_settings
    assert parse_settings(["train.threads=1", " lr = 3e-5 "]) == {"train.threads": "1", "lr": "3e-5"}
    with pytest.raises(UserError, match="--set threads: expected key=value"):
        parse_settings(["threads"])


def test_what_every_run_sets_is_said_once_not_in_every_row():
    from pipeline.experiments.report import strategies
    base = {"lr": 1e-4, "base": {"seed": 1}, "train": {"threads": 2, "l2sp": 0.0}}
    runs = [Experiment("default-seed1", "success", {**base, "train": {"threads": 1, "l2sp": 0.0}}),
            Experiment("l2sp-100-seed1", "success", {**base, "train": {"threads": 1, "l2sp": 100.0}})]
    settings_of = {r.name: r.settings for r in strategies(Experiment("baseline", "success", base), runs)}
    assert settings_of == {"default": "the common settings only", "l2sp-100": "train.l2sp=100.0"}


@pytest.mark.parametrize("spec", ["1/3", "3/3", " 2 / 3"])
def test_a_shard_is_k_of_n(spec):
    k, n = parse_shard(spec)
    assert n == 3 and k in (1, 2, 3)


@pytest.mark.parametrize("spec", ["0/3", "4/3", "1/0", "3", "1/3/2", "a/b", "-1/3", "", "1.5/3"])
def test_a_bad_shard_is_one_line_naming_the_flag(spec, tmp_path):
    with pytest.raises(UserError, match=f"--shard {spec}: expected k/n"):
        parse_shard(spec)


@pytest.mark.parametrize("args, fragment", [(["--queue", "--shard", "2/1"], "--shard 2/1: expected k/n"),
                                            (["--shard", "1/2"], "use them with --queue"),
                                            (["--set", "train.threads=1"], "use them with --queue"),
                                            (["--queue", "--only", ","], "--only names no strategy"),
                                            (["--queue", "--seeds", "0"], "--seeds 0: expected 1 or more")])
def test_bad_flags_stop_before_anything_is_queued(args, fragment, tmp_path):
    done = run_module("pipeline.study", tmp_path, *args)  # no git repository: queueing anything would fail
    assert_user_error(done, fragment)


# ---- pooling the experiments of several commits ----------------------------------------------------------------

def show(rev: str, *names: str) -> list[dict]:
    """``dvc exp show --json`` of one commit with finished experiments ``names``."""
    def entry(r: str, name: str | None) -> dict:
        return {"rev": r, "name": name, "data": {"params": {"params.yaml": {"data": {"lr": 1e-4}}}, "metrics": {}}}

    return [{**entry(rev, None), "experiments": [{"name": name, "executor": None, "revs": [entry(f"{rev}{k}", name)]}
                                               for k, name in enumerate(names)]}]


def test_the_experiments_of_several_commits_pool_with_the_first_commits_baseline(monkeypatch):
    import pipeline.experiments.report as report

    shows = {"aaa": show("aaa", "default-seed1", "default-seed2"), "bbb": show("bbb", "census-seed1")}
    monkeypatch.setattr(report, "experiments_json", lambda rev=None: shows[rev])
    baseline, runs = report.gather_runs(["aaa", "bbb"])
    assert baseline.rev == "aaa" and [run.name for run in runs] == ["default-seed1", "default-seed2", "census-seed1"]
    shows["bbb"] = show("bbb", "default-seed2")
    with pytest.raises(UserError, match=r"the same name \(default-seed2\)"):
        report.gather_runs(["aaa", "bbb"])
