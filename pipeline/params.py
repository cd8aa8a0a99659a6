"""params.yaml, loaded once into typed, frozen objects.

Every key is required (params.yaml is the one place hyper-parameters live). An unknown key, a missing key,
a wrong type or an out-of-range value raises :class:`~pipeline.errors.UserError` naming the key, the
value and what is allowed. Floats may be written in any form DVC writes (``1e-05`` is a string to
PyYAML's YAML 1.1 rules; it is read as the float it means).
"""

from __future__ import annotations

import dataclasses
import re
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from pipeline.errors import UserError

PARAMS_FILE = Path("params.yaml")
_FLOAT_RE = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")


def _range(lo: float | None = None, hi: float | None = None, *, lo_open: bool = False,
           hi_open: bool = False) -> dict:
    return {"range": (lo, hi, lo_open, hi_open)}


def _choice(*options: str) -> dict:
    return {"choices": options}


def _span() -> dict:
    return {"span": True}


Span = typing.Union[int, float]  # optimizer steps (an integer) or a fraction of train.steps (a number in [0, 1])

SCHEDULES = ("constant", "warmup_constant", "warmup_cosine", "linear", "step", "exponential", "polynomial",
             "cosine_restarts", "cyclic", "one_cycle", "plateau")


def to_steps(span: Span, total: int) -> int:
    """A :data:`Span` in optimizer steps."""
    return span if isinstance(span, int) else round(span * total)


@dataclass(frozen=True)
class Base:
    seed: int = field(metadata=_range(0))


@dataclass(frozen=True)
class Sources:
    videos: str  # data/demo (the demo corpus) or a folder of the user's own clips
    checkpoint: str  # a name from pipeline.fetch.CHECKPOINTS or a path to a flownet.pkl


@dataclass(frozen=True)
class Extract:
    gap: int = field(metadata=_range(1))  # frames between I0 and the middle target (I1 is 2 * gap after I0)
    timesteps: str = field(metadata=_choice("middle", "all"))  # targets: the middle frame, or every frame between
    stride: int = field(metadata=_range(1))  # frames between the starts of consecutive I0
    max_per_clip: int = field(metadata=_range(0))  # kept (I0, I1) pairs per clip and split; 0 = no cap
    split_by: str = field(metadata=_choice("time", "clip"))  # segments of every clip, or whole clips
    val_fraction: float = field(metadata=_range(0.0, 0.5, hi_open=True))
    test_fraction: float = field(metadata=_range(0.0, 0.9, lo_open=True))
    guard_frames: int = field(metadata=_range(0))  # frames left out between splits of one clip
    cut_threshold: float = field(metadata=_range(0.0, 1.0, lo_open=True))
    static_threshold: float = field(metadata=_range(0.0, 1.0, hi_open=True))
    duplicate_threshold: float = field(metadata=_range(0.0, 1.0, hi_open=True))
    skip_unreadable: bool  # skip (and report) bad files instead of stopping


@dataclass(frozen=True)
class Augment:
    crop: int = field(metadata=_range(32))
    crops_per_triplet: int = field(metadata=_range(1))
    hflip: float = field(metadata=_range(0.0, 1.0))
    vflip: float = field(metadata=_range(0.0, 1.0))
    temporal_reverse: float = field(metadata=_range(0.0, 1.0))
    rotate: float = field(metadata=_range(0.0, 1.0))  # rotation by 90, 180 or 270 degrees (equally likely)
    channel_reverse: float = field(metadata=_range(0.0, 1.0))
    jitter: float = field(metadata=_range(0.0, 1.0))  # photometric jitter (brightness and contrast)
    jitter_strength: float = field(metadata=_range(0.0, 0.5))  # factors drawn from [1 - s, 1 + s]


@dataclass(frozen=True)
class Loss:
    laplacian: float = field(metadata=_range(0.0))  # Laplacian-pyramid L1 on the student's prediction
    teacher: float = field(metadata=_range(0.0))  # the same on the teacher (block_tea) prediction
    distill: float = field(metadata=_range(0.0))  # flow distillation from teacher to student


@dataclass(frozen=True)
class WarmupCosineOpts:
    floor: float = field(metadata=_range(0.0, 1.0))  # final rate as a fraction of lr (RIFE: 3e-6 / 3e-4 = 0.01)


@dataclass(frozen=True)
class LinearOpts:
    end: float = field(metadata=_range(0.0, 1.0))  # final rate as a fraction of lr


@dataclass(frozen=True)
class StepOpts:
    milestones: tuple[Span, ...] = field(metadata=_span())  # steps (or fractions of the run) where the rate drops
    factor: float = field(metadata=_range(0.0, 1.0, lo_open=True))


@dataclass(frozen=True)
class ExponentialOpts:
    gamma: float = field(metadata=_range(0.0, 1.0, lo_open=True))  # factor per step after warmup


@dataclass(frozen=True)
class PolynomialOpts:
    power: float = field(metadata=_range(0.0, lo_open=True))
    end: float = field(metadata=_range(0.0, 1.0))


@dataclass(frozen=True)
class CosineRestartsOpts:
    period: Span = field(metadata=_span())  # length of the first cycle
    mult: int = field(metadata=_range(1))  # each cycle this many times longer than the one before
    floor: float = field(metadata=_range(0.0, 1.0))


@dataclass(frozen=True)
class CyclicOpts:
    mode: str = field(metadata=_choice("triangular", "triangular2", "exp_range"))
    base: float = field(metadata=_range(0.0, 1.0))  # lowest rate as a fraction of lr
    period: Span = field(metadata=_span())  # steps from the lowest rate to lr (as many back down)
    gamma: float = field(metadata=_range(0.0, 1.0, lo_open=True))  # exp_range: amplitude x gamma ** step


@dataclass(frozen=True)
class OneCycleOpts:
    pct_start: float = field(metadata=_range(0.0, 1.0, lo_open=True, hi_open=True))
    div_factor: float = field(metadata=_range(1.0))
    final_div_factor: float = field(metadata=_range(1.0))


@dataclass(frozen=True)
class PlateauOpts:
    factor: float = field(metadata=_range(0.0, 1.0, lo_open=True, hi_open=True))
    patience: int = field(metadata=_range(0))  # validations without improvement before lowering the rate
    threshold: float = field(metadata=_range(0.0))  # dB of val PSNR that count as an improvement
    floor: float = field(metadata=_range(0.0, 1.0))


@dataclass(frozen=True)
class Schedules:
    warmup_cosine: WarmupCosineOpts
    linear: LinearOpts
    step: StepOpts
    exponential: ExponentialOpts
    polynomial: PolynomialOpts
    cosine_restarts: CosineRestartsOpts
    cyclic: CyclicOpts
    one_cycle: OneCycleOpts
    plateau: PlateauOpts


@dataclass(frozen=True)
class Groups:
    lr_mult: dict[str, float] = field(metadata=_range(0.0))  # group -> multiplier of lr (absent: 1)
    layer_decay: float = field(metadata=_range(0.0, 1.0, lo_open=True))  # per block, finest to coarsest
    no_decay_bias: bool  # no weight decay on biases, PReLU slopes and scale parameters


@dataclass(frozen=True)
class Freeze:
    groups: dict[str, Span] = field(metadata=_span())  # group -> step (or fraction) where it is unfrozen
    preset: str = field(metadata=_choice("none", "freeze_then_all"))  # freeze_then_all: only the finest block trains until `until`
    until: Span = field(metadata=_span())


@dataclass(frozen=True)
class EarlyStopping:
    patience: int = field(metadata=_range(0))  # validations without a val PSNR gain of min_delta; 0 = off
    min_delta: float = field(metadata=_range(0.0))


@dataclass(frozen=True)
class Train:
    arch: str = field(metadata=_choice("hdv3"))
    steps: int = field(metadata=_range(1))  # optimizer steps
    batch_size: int = field(metadata=_range(1))  # per process, per micro-batch
    grad_accum_steps: int = field(metadata=_range(1))
    schedule: str = field(metadata=_choice(*SCHEDULES))
    warmup_steps: Span = field(metadata=_span())
    schedules: Schedules
    groups: Groups
    freeze: Freeze
    optimizer: str = field(metadata=_choice("adamw", "adam", "sgd"))
    weight_decay: float = field(metadata=_range(0.0))
    grad_clip: float = field(metadata=_range(0.0))  # max gradient norm; 0 = no clipping
    loss: Loss
    val_every: int = field(metadata=_range(1))  # optimizer steps between validations
    val_max_triplets: int = field(metadata=_range(0))  # 0 = the whole val split
    early_stopping: EarlyStopping
    keep: str = field(metadata=_choice("last", "best"))  # output weights: the last step's, or the best on val
    ema_decay: float = field(metadata=_range(0.0, 1.0, hi_open=True))  # 0 = off; else the average is validated and kept
    checkpoint_every: int = field(metadata=_range(1))  # optimizer steps between resumable checkpoints
    num_workers: int = field(metadata=_range(0))


@dataclass(frozen=True)
class LrFind:
    min_lr: float = field(metadata=_range(0.0, 1.0, lo_open=True))
    max_lr: float = field(metadata=_range(0.0, 10.0, lo_open=True))
    steps: int = field(metadata=_range(10))  # the rate grows exponentially from min_lr to max_lr over these
    smoothing: float = field(metadata=_range(0.0, 1.0, hi_open=True))  # exponential smoothing of the loss
    diverge: float = field(metadata=_range(1.0, lo_open=True))  # stop when the smoothed loss passes this x its best


@dataclass(frozen=True)
class Evaluate:
    methods: tuple[str, ...] = field(metadata=_choice("finetuned", "pretrained", "repeat", "blend"))
    round_prediction: bool  # round to uint8 before the metrics, as RIFE's benchmark scripts do
    max_triplets: int = field(metadata=_range(0))  # 0 = the whole test split
    bootstrap_samples: int = field(metadata=_range(100))
    bootstrap_seed: int = field(metadata=_range(0))


@dataclass(frozen=True)
class Params:
    lr: float = field(metadata=_range(0.0, 1.0, lo_open=True))
    base: Base
    sources: Sources
    extract: Extract
    augment: Augment
    train: Train
    evaluate: Evaluate
    lr_find: LrFind

    def __post_init__(self) -> None:
        _check_consistency(self)


def _check_consistency(p: Params) -> None:
    t = p.train
    if to_steps(t.warmup_steps, t.steps) > t.steps:
        raise UserError(f"params: train.warmup_steps = {t.warmup_steps} is longer than the run "
                        f"(train.steps = {t.steps})")
    for milestone in t.schedules.step.milestones:
        if not 0 < to_steps(milestone, t.steps) < t.steps:
            raise UserError(f"params: train.schedules.step.milestones has {milestone}, outside the run "
                            f"(train.steps = {t.steps}); milestones fall between step 1 and the last step")
    if t.schedule == "one_cycle" and t.schedules.one_cycle.pct_start * t.steps < 2:
        raise UserError(f"params: train.schedules.one_cycle.pct_start = {t.schedules.one_cycle.pct_start:g} "
                        f"leaves under 2 of the {t.steps} steps for the rise")
    needs_val = {"train.schedule = plateau": t.schedule == "plateau", "train.keep = best": t.keep == "best",
                 "train.early_stopping.patience > 0": t.early_stopping.patience > 0}
    for what, needed in needs_val.items():
        if needed and t.val_every >= t.steps:
            raise UserError(f"params: {what} needs validations during the run, but train.val_every = "
                            f"{t.val_every} is not below train.steps = {t.steps}")
    if t.freeze.preset != "none" and t.freeze.groups:
        raise UserError(f"params: train.freeze.preset = {t.freeze.preset} already decides what is frozen; "
                        f"leave train.freeze.groups empty (it names {', '.join(t.freeze.groups)})")
    if p.lr_find.min_lr >= p.lr_find.max_lr:
        raise UserError(f"params: lr_find.min_lr = {p.lr_find.min_lr:g} must be below lr_find.max_lr = "
                        f"{p.lr_find.max_lr:g}")
    if p.augment.crop % 32:
        raise UserError(f"params: augment.crop = {p.augment.crop}: expected a multiple of 32 "
                        "(RIFE's coarsest block works at 1/32 of the input)")
    if p.extract.val_fraction + p.extract.test_fraction >= 0.9:
        raise UserError(f"params: extract.val_fraction + extract.test_fraction = "
                        f"{p.extract.val_fraction + p.extract.test_fraction:g}: expected below 0.9, "
                        "so training keeps some footage")


def load_params(path: str | Path = PARAMS_FILE) -> Params:
    """Read and validate ``path`` (``params.yaml`` in the working directory by default)."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise UserError(f"{path}: no such file (run from the project root)") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise UserError(f"{path}:{where} is not valid YAML ({getattr(err, 'problem', err)})") from None
    return build(Params, raw, "", str(path))


def build(cls: type, raw: Any, prefix: str, source: str = "params") -> Any:
    """Build dataclass ``cls`` from the mapping ``raw``, validating every field (``prefix`` names the section)."""
    where = prefix.rstrip(".") or "the top level"
    if not isinstance(raw, dict):
        raise UserError(f"{source}: {where} must be a mapping of keys, got {_show(raw)}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - set(fields), key=str)
    if unknown:
        raise UserError(f"{source}: unknown key {prefix}{unknown[0]}; {where} takes: {', '.join(fields)}")
    values = {}
    for name, f in fields.items():
        key = prefix + name
        if name not in raw:
            raise UserError(f"{source}: missing key {key} ({_describe(hints[name], f.metadata)})")
        values[name] = _convert(hints[name], raw[name], key, f.metadata, source)
    return cls(**values)


def _convert(hint: Any, value: Any, key: str, meta: dict, source: str) -> Any:
    if dataclasses.is_dataclass(hint):
        return build(hint, value, key + ".", source)
    origin = typing.get_origin(hint)
    if origin is tuple:
        item = typing.get_args(hint)[0]
        if not isinstance(value, list) or not value:
            raise UserError(f"{source}: {key} = {_show(value)}: expected a non-empty list "
                            f"({_describe(hint, meta)})")
        items = tuple(_item(item, v, f"{key}[{i}]", meta, source) for i, v in enumerate(value))
        if len(set(items)) != len(items):
            raise UserError(f"{source}: {key} = {_show(value)}: entries must not repeat")
        return items
    if origin is dict:
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise UserError(f"{source}: {key} = {_show(value)}: expected a mapping of names to "
                            f"{_describe(typing.get_args(hint)[1], meta)} ({{}} for none)")
        return {str(k): _item(typing.get_args(hint)[1], v, f"{key}.{k}", meta, source) for k, v in value.items()}
    return _item(hint, value, key, meta, source)


def _item(hint: Any, value: Any, key: str, meta: dict, source: str) -> Any:
    if meta.get("span"):
        return _span_value(value, key, source)
    return _scalar(hint, value, key, meta, source)


def _span_value(value: Any, key: str, source: str) -> int | float:
    """An integer is a count of optimizer steps; a number in [0, 1] with a point is a fraction of the run."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    if isinstance(value, str) and _FLOAT_RE.match(value.strip()):
        value = float(value)
    if isinstance(value, float) and 0.0 <= value <= 1.0:
        return value
    raise UserError(f"{source}: {key} = {_show(value)}: expected a number of steps (an integer >= 0) or a "
                    "fraction of train.steps (a number from 0.0 to 1.0)")


def _scalar(hint: type, value: Any, key: str, meta: dict, source: str) -> Any:
    bad = UserError(f"{source}: {key} = {_show(value)}: expected {_describe(hint, meta)}")
    if hint is bool:
        if not isinstance(value, bool):
            raise bad
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise bad
    elif hint is float:
        if isinstance(value, str) and _FLOAT_RE.match(value.strip()):
            value = float(value)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise bad
        value = float(value)
        if value != value or value in (float("inf"), float("-inf")):
            raise bad
    elif hint is str:
        if not isinstance(value, str) or not value.strip():
            raise bad
    if "range" in meta and not _in_range(value, *meta["range"]):
        raise bad
    if "choices" in meta and value not in meta["choices"]:
        raise bad
    return value


def _in_range(value: float, lo: float | None, hi: float | None, lo_open: bool, hi_open: bool) -> bool:
    if lo is not None and (value < lo or (lo_open and value == lo)):
        return False
    return hi is None or not (value > hi or (hi_open and value == hi))


def _describe(hint: Any, meta: dict) -> str:
    if "choices" in meta:
        many = "a list of " if typing.get_origin(hint) is tuple else ""
        return f"{many}one of: {', '.join(meta['choices'])}"
    if meta.get("span"):
        return "a number of steps (integer) or a fraction of train.steps (0.0 to 1.0)"
    if typing.get_origin(hint) is dict:
        return f"a mapping of names to {_describe(typing.get_args(hint)[1], meta)}"
    kind = {bool: "true or false", int: "an integer", float: "a number", str: "a non-empty string"}.get(
        hint, "a mapping" if dataclasses.is_dataclass(hint) else str(hint))
    if "range" not in meta:
        return kind
    lo, hi, lo_open, hi_open = meta["range"]
    parts = []
    if lo is not None:
        parts.append(f"{'>' if lo_open else '>='} {lo:g}")
    if hi is not None:
        parts.append(f"{'<' if hi_open else '<='} {hi:g}")
    return f"{kind} {' and '.join(parts)}"


def _show(value: Any) -> str:
    return repr(value) if isinstance(value, str) else str(value)
