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
class Train:
    arch: str = field(metadata=_choice("hdv3"))
    steps: int = field(metadata=_range(1))  # optimizer steps
    batch_size: int = field(metadata=_range(1))  # per process, per micro-batch
    grad_accum_steps: int = field(metadata=_range(1))
    schedule: str = field(metadata=_choice("constant", "warmup_constant"))
    warmup_steps: int = field(metadata=_range(0))
    optimizer: str = field(metadata=_choice("adamw", "adam", "sgd"))
    weight_decay: float = field(metadata=_range(0.0))
    grad_clip: float = field(metadata=_range(0.0))  # max gradient norm; 0 = no clipping
    loss: Loss
    val_every: int = field(metadata=_range(1))  # optimizer steps between validations
    val_max_triplets: int = field(metadata=_range(0))  # 0 = the whole val split
    checkpoint_every: int = field(metadata=_range(1))  # optimizer steps between resumable checkpoints
    num_workers: int = field(metadata=_range(0))


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

    def __post_init__(self) -> None:
        _check_consistency(self)


def _check_consistency(p: Params) -> None:
    if p.train.warmup_steps > p.train.steps:
        raise UserError(f"params: train.warmup_steps = {p.train.warmup_steps} is longer than the run "
                        f"(train.steps = {p.train.steps})")
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
    if typing.get_origin(hint) is tuple:
        if not isinstance(value, list) or not value:
            raise UserError(f"{source}: {key} = {_show(value)}: expected a non-empty list "
                            f"({_describe(hint, meta)})")
        items = tuple(_scalar(str, v, f"{key}[{i}]", meta, source) for i, v in enumerate(value))
        if len(set(items)) != len(items):
            raise UserError(f"{source}: {key} = {_show(value)}: names must not repeat")
        return items
    return _scalar(hint, value, key, meta, source)


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
