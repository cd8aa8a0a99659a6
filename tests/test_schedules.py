"""Learning-rate strategies: every schedule against torch's own scheduler or its closed formula, group ratios,
freezing, and the checks params make at load."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch
from torch.optim import lr_scheduler

from pipeline.core.errors import UserError
from pipeline.core.params import SCHEDULES, Params, Train, build, check_sections
from pipeline.models import create_model
from pipeline.training.groups import check_group_names, frozen_at, multipliers, unfreeze_steps
from pipeline.training.optim import build_optimizer, drop_frozen_gradients, group_lrs
from pipeline.training.schedules import build_scheduler, observe_validation, schedule_builders

LR = 3e-5


@pytest.fixture()
def cfg(params_dict) -> Train:
    """The project's train params for HDv3 (params.yaml says auto; stages resolve it from the checkpoint)."""
    return build(Train, {**params_dict["train"], "arch": "hdv3"}, "train.")


def with_options(cfg: Train, schedule: str, **options) -> Train:
    """``cfg`` running ``schedule`` with some of its options changed."""
    if options:
        opts = replace(getattr(cfg.schedules, schedule), **options)
        cfg = replace(cfg, schedules=replace(cfg.schedules, **{schedule: opts}))
    return replace(cfg, schedule=schedule)


def two_groups(rates: tuple[float, float] = (LR, LR / 4)) -> torch.optim.Optimizer:
    params = [torch.nn.Parameter(torch.zeros(1)) for _ in rates]
    pairs = enumerate(zip(params, rates, strict=True))
    return torch.optim.SGD([{"params": [p], "lr": r, "name": f"g{i}"} for i, (p, r) in pairs])


def curve(scheduler, optimizer, steps: int, scores: dict[int, float] | None = None) -> list[list[float]]:
    """Rates of every group at each step, stepping as the train stage does (validation after step n)."""
    out = []
    for step in range(steps):
        out.append([g["lr"] for g in optimizer.param_groups])
        optimizer.step()
        if isinstance(scheduler, lr_scheduler.ReduceLROnPlateau):
            if scores and step + 1 in scores:
                scheduler.step(scores[step + 1])
        else:
            scheduler.step()
            if scores and step + 1 in scores:
                observe_validation(scheduler, scores[step + 1])
    return out


def ours(cfg: Train, steps: int, scores=None, rates=(LR, LR / 4)) -> list[list[float]]:
    optimizer = two_groups(rates)
    return curve(build_scheduler(optimizer, replace(cfg, steps=steps)), optimizer, steps, scores)


def assert_curves_equal(a, b):
    assert len(a) == len(b)
    for step, (x, y) in enumerate(zip(a, b, strict=True)):
        assert x == pytest.approx(y, rel=1e-9, abs=1e-15), f"step {step}: {x} != {y}"


def test_the_registry_is_the_list_params_accept(cfg):
    assert tuple(schedule_builders(cfg)) == SCHEDULES


@pytest.mark.parametrize("name", SCHEDULES)
def test_every_schedule_stays_within_lr_and_keeps_group_ratios(cfg, name):
    rates = ours(with_options(replace(cfg, warmup_steps=5), name), 60)
    assert max(r[0] for r in rates) <= LR * (1 + 1e-12)
    assert min(r[0] for r in rates) > 0
    assert all(r[1] / r[0] == pytest.approx(0.25) for r in rates)


@pytest.mark.parametrize("name", [n for n in SCHEDULES if n not in ("constant", "cyclic", "one_cycle")])
def test_the_end_of_warmup_is_exactly_lr(cfg, name):
    rates = ours(with_options(replace(cfg, warmup_steps=10), name), 100)
    assert rates[9][0] == pytest.approx(LR, rel=1e-12)
    assert rates[0][0] == pytest.approx(LR / 10)
    assert all(a[0] < b[0] for a, b in zip(rates[:9], rates[1:10], strict=True))


def test_warmup_as_a_fraction_of_the_run(cfg):
    rates = ours(with_options(replace(cfg, warmup_steps=0.1), "warmup_constant"), 200)
    assert rates[19][0] == LR and rates[18][0] < LR


def test_warmup_cosine_with_rifes_constants_is_rifes_formula(cfg):
    """ECCV2022-RIFE train.py: warmup 2000 steps to 3e-4, then half-cosine to 3e-6."""
    total, warm = 6000, 2000
    run = with_options(replace(cfg, warmup_steps=warm), "warmup_cosine", floor=0.01)
    rates = [r[0] for r in ours(run, total, rates=(3e-4, 3e-4))]

    def rife(step: int) -> float:
        if step < warm:
            return 3e-4 * step / warm
        return (3e-4 - 3e-6) * (0.5 + 0.5 * math.cos(math.pi * (step - warm) / (total - warm))) + 3e-6

    for step in (warm, 3000, 4000, 5999):
        assert rates[step] == pytest.approx(rife(step), rel=1e-12)
    for step in (0, 999, 1998):  # our warmup reaches lr one step earlier: step s uses RIFE's s + 1
        assert rates[step] == pytest.approx(rife(step + 1), rel=1e-12)


def test_linear_formula(cfg):
    rates = ours(with_options(replace(cfg, warmup_steps=0), "linear", end=0.2), 100)
    assert rates[0][0] == LR and rates[50][0] == pytest.approx(LR * 0.6)
    assert rates[99][0] == pytest.approx(LR * (1 - 0.8 * 0.99))  # end x lr is reached after the last step


TORCH_TWINS = {
    "step": (dict(milestones=(30, 45), factor=0.1),
             lambda o, n: lr_scheduler.MultiStepLR(o, milestones=[30, 45], gamma=0.1)),
    "exponential": (dict(gamma=0.97), lambda o, n: lr_scheduler.ExponentialLR(o, gamma=0.97)),
    "polynomial": (dict(power=2.0, end=0.0), lambda o, n: lr_scheduler.PolynomialLR(o, total_iters=n, power=2.0)),
    "one_cycle": (dict(pct_start=0.3, div_factor=25.0, final_div_factor=1e4),
                  lambda o, n: lr_scheduler.OneCycleLR(o, max_lr=[LR, LR / 4], total_steps=n, pct_start=0.3,
                                                       cycle_momentum=False)),
}


@pytest.mark.parametrize("name", sorted(TORCH_TWINS))
def test_schedules_equal_torchs_own(cfg, name):
    options, make = TORCH_TWINS[name]
    steps = 60
    optimizer = two_groups()
    expected = curve(make(optimizer, steps), optimizer, steps)
    assert_curves_equal(ours(with_options(replace(cfg, warmup_steps=0), name, **options), steps), expected)


@pytest.mark.parametrize("mode", ["triangular", "triangular2", "exp_range"])
def test_cyclic_equals_torchs_cyclic_lr(cfg, mode):
    steps, period = 90, 10
    optimizer = two_groups()
    twin = lr_scheduler.CyclicLR(optimizer, base_lr=[0.1 * LR, 0.1 * LR / 4], max_lr=[LR, LR / 4],
                                 step_size_up=period, mode=mode, gamma=0.99, cycle_momentum=False)
    expected = curve(twin, optimizer, steps)
    run = with_options(cfg, "cyclic", mode=mode, base=0.1, period=period, gamma=0.99)
    assert_curves_equal(ours(run, steps), expected)


def test_cosine_restarts_equals_torchs_warm_restarts(cfg):
    steps = 70
    optimizer = two_groups((LR,))
    twin = lr_scheduler.CosineAnnealingWarmRestarts(optimizer, T_0=10, T_mult=2, eta_min=0.05 * LR)
    expected = curve(twin, optimizer, steps)
    run = with_options(replace(cfg, warmup_steps=0), "cosine_restarts", period=10, mult=2, floor=0.05)
    assert_curves_equal(ours(run, steps, rates=(LR,)), expected)


def test_plateau_equals_torchs_reduce_on_plateau(cfg):
    steps = 80
    scores = {10: 30.0, 20: 30.5, 30: 30.505, 40: 30.4, 50: 30.6, 60: 30.6, 70: 30.55, 80: 30.7}
    optimizer = two_groups()
    twin = lr_scheduler.ReduceLROnPlateau(optimizer, mode="max", factor=0.5, patience=1, threshold=0.01,
                                          threshold_mode="abs", min_lr=[0.2 * LR, 0.2 * LR / 4])
    expected = curve(twin, optimizer, steps, scores)
    run = with_options(replace(cfg, warmup_steps=0), "plateau", factor=0.5, patience=1, threshold=0.01, floor=0.2)
    got = ours(run, steps, scores)
    assert_curves_equal(got, expected)
    assert got[-1][0] < LR  # it did lower the rate


def test_plateau_state_resumes(cfg):
    run = with_options(replace(cfg, warmup_steps=0, steps=40), "plateau", patience=0)
    optimizer = two_groups()
    scheduler = build_scheduler(optimizer, run)
    curve(scheduler, optimizer, 20, {10: 30.0, 20: 29.0})
    optimizer2 = two_groups()
    resumed = build_scheduler(optimizer2, run)
    resumed.load_state_dict(scheduler.state_dict())
    optimizer2.load_state_dict(optimizer.state_dict())
    assert curve(resumed, optimizer2, 10) == curve(scheduler, optimizer, 10)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(LR * 0.5)


# ---------------------------------------------------------------- groups and freezing


def test_layer_decay_and_multipliers(cfg):
    groups = replace(cfg.groups, lr_mult={"teacher": 0.1, "block1": 2.0}, layer_decay=0.5)
    assert multipliers(replace(cfg, groups=groups)) == {"block2": 1.0, "block1": 1.0, "block0": 0.25,
                                                        "teacher": 0.1}


def test_biases_and_prelu_slopes_get_no_weight_decay(cfg):
    optimizer = build_optimizer(create_model("hdv3"), LR, cfg)
    for group in optimizer.param_groups:
        assert all(p.ndim > 1 for p in group["params"]) == (group["weight_decay"] > 0)
    assert sum(p.numel() for g in optimizer.param_groups for p in g["params"]) == 3_038_015


@pytest.mark.slow  # runs a stage or command in a subprocess, or several full networks
def test_frozen_groups_are_bit_identical_and_rejoin_the_schedule(cfg):
    torch.manual_seed(0)
    run = replace(cfg, schedule="warmup_cosine", warmup_steps=2, steps=10, weight_decay=0.1,
                  freeze=replace(cfg.freeze, groups={"block0": 4}))
    model = create_model("hdv3")
    optimizer = build_optimizer(model, LR, run)
    scheduler = build_scheduler(optimizer, run)
    unfreeze = unfreeze_steps(run)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    logged = []
    for step in range(6):
        frozen = frozen_at(unfreeze, step)
        logged.append(group_lrs(optimizer, frozen))
        for param in model.parameters():
            param.grad = torch.randn_like(param)
        drop_frozen_gradients(optimizer, frozen)
        optimizer.step()
        scheduler.step()
        if step == 3:
            after = model.state_dict()
            assert all(torch.equal(after[k], before[k]) for k in before if k.startswith("block0."))
            assert not torch.equal(after["block1.conv0.0.0.weight"], before["block1.conv0.0.0.weight"])
    assert [row["block0"] for row in logged[:4]] == [0.0] * 4
    assert logged[4]["block0"] == logged[4]["block2"] > 0  # back on the common schedule at step 4
    assert not torch.equal(model.state_dict()["block0.conv0.0.0.weight"], before["block0.conv0.0.0.weight"])


def test_freeze_then_all_trains_only_the_finest_block_first(cfg):
    run = replace(cfg, steps=360, freeze=replace(cfg.freeze, preset="freeze_then_all", until=0.25))
    assert unfreeze_steps(run) == {"block0": 90, "block1": 90, "teacher": 90}
    assert frozen_at(unfreeze_steps(run), 89) == {"block0", "block1", "teacher"}
    assert frozen_at(unfreeze_steps(run), 90) == set()


# ---------------------------------------------------------------- params checks


@pytest.mark.parametrize("change, message", [
    ({"schedule": "cosine"}, "train.schedule = 'cosine': expected one of: constant, warmup_constant"),
    ({"schedule": "warmup_constant", "warmup_steps": 400}, "train.warmup_steps = 400 must be below train.steps"),
    ({"warmup_steps": 1.5}, "train.warmup_steps = 1.5: expected a number of steps"),
    ({"schedule": "step", "schedules.step.milestones": [100, 400]},
     "train.schedules.step.milestones has 400, outside the run"),
    ({"schedules.linear.end": 2.0}, "train.schedules.linear.end = 2.0: expected a number >= 0 and <= 1"),
    ({"freeze.preset": "freeze_then_all", "freeze.groups": {"block0": 10}},
     "train.freeze.preset = freeze_then_all already decides what is frozen; leave train.freeze.groups empty"),
    ({"schedule": "plateau", "val_every": 360}, "train.schedule = plateau needs validations during the run"),
    ({"groups.lr_mult": [1, 2]}, "train.groups.lr_mult = [1, 2]: expected a mapping of names"),
])
def test_inconsistent_strategies_stop_at_load(params_dict, change, message):
    for dotted, value in change.items():
        section = params_dict["train"]
        *parents, last = dotted.split(".")
        for name in parents:
            section = section[name]
        section[last] = value
    with pytest.raises(UserError) as err:
        check_sections(build(Params, params_dict, "", "params.yaml"), ["train"])
    assert message in str(err.value)


def test_options_of_a_schedule_not_chosen_are_not_checked_against_the_run(params_dict):
    params_dict["train"].update(steps=4, schedule="warmup_constant", warmup_steps=1)
    params_dict["train"]["schedules"]["step"]["milestones"] = [100, 200]  # steps, outside a 4-step run
    check_sections(build(Params, params_dict, "", "params.yaml"), ["train"])
    params_dict["train"]["schedule"] = "step"
    with pytest.raises(UserError, match="milestones has 100, outside the run"):
        check_sections(build(Params, params_dict, "", "params.yaml"), ["train"])


def test_an_unknown_group_lists_the_architectures_groups(cfg):
    run = replace(cfg, groups=replace(cfg.groups, lr_mult={"encoder": 0.5}))
    with pytest.raises(UserError,
                       match="names group 'encoder'; train.arch = hdv3 has: block0, block1, block2, teacher"):
        check_group_names(run)


def test_l2sp_pulls_each_trained_group_back_by_its_rate_and_leaves_frozen_ones():
    from pipeline.training.optim import PullToPretrained
    optimizer = two_groups((0.1, 0.01))
    pull = PullToPretrained(optimizer, strength=2.0)
    anchors = [p.detach().clone() for g in optimizer.param_groups for p in g["params"]]
    with torch.no_grad():
        for group in optimizer.param_groups:
            group["params"][0].add_(1.0)  # one unit away from the pretrained value
    pull.step()
    moved = [g["params"][0].item() - a.item() for g, a in zip(optimizer.param_groups, anchors, strict=True)]
    assert moved == pytest.approx([1 - 0.1 * 2.0, 1 - 0.01 * 2.0])  # distance x (1 - rate x strength)
    pull.step(frozen={"g0"})
    assert optimizer.param_groups[0]["params"][0].item() - anchors[0].item() == pytest.approx(0.8)
    assert optimizer.param_groups[1]["params"][0].item() - anchors[1].item() == pytest.approx(0.98 * 0.98)


def test_without_l2sp_there_is_no_pull(cfg):
    from pipeline.training.optim import pull_to_pretrained
    assert pull_to_pretrained(two_groups(), replace(cfg, l2sp=0.0)) is None
    assert pull_to_pretrained(two_groups(), replace(cfg, l2sp=10.0)).strength == 10.0
