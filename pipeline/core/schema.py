"""Typed params from YAML: the field markers the dataclasses in :mod:`pipeline.core.params` use, and ``build``,
which turns a mapping into those frozen dataclasses, checking every key.

Every key is required. An unknown key, a missing key, a wrong type or an out-of-range value raises
:class:`~pipeline.core.errors.UserError` naming the key, the value and what is allowed. Floats may be written in any
form DVC writes (``1e-05`` is a string to PyYAML's YAML 1.1 rules; it is read as the float it means).
"""

from __future__ import annotations

import dataclasses
import re
import typing
from typing import Any

from pipeline.core.errors import UserError

_FLOAT_RE = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")


def bounds(lo: float | None = None, hi: float | None = None, *, lo_open: bool = False,
           hi_open: bool = False) -> dict:
    """Field marker: a number within [lo, hi] (an open end excludes its bound)."""
    return {"range": (lo, hi, lo_open, hi_open)}


def choice(*options: str | float) -> dict:
    """Field marker: one of ``options`` (or, on a tuple field, a list of them)."""
    return {"choices": options}


def one_or_many() -> dict:
    """Field marker on a tuple field: a single value is read as a list of one."""
    return {"one_or_many": True}


def span() -> dict:
    """Field marker: a :data:`Span`."""
    return {"span": True}


Span = int | float  # optimizer steps (an integer) or a fraction of train.steps (a number in [0, 1])
WordOrNumber = str | float  # a named setting or a number (e.g. ``auto`` or ``0.5``); needs ``choice``


def to_steps(steps_or_fraction: Span, total: int) -> int:
    """A :data:`Span` in optimizer steps."""
    if isinstance(steps_or_fraction, int):
        return steps_or_fraction
    return round(steps_or_fraction * total)


def build(cls: type, raw: Any, prefix: str, source: str = "params") -> Any:
    """Build dataclass ``cls`` from the mapping ``raw``, validating every field (``prefix`` names the section)."""
    where = prefix.rstrip(".") or "the top level"
    if not isinstance(raw, dict):
        raise UserError(f"{source}: {where} must be a mapping of keys, got {_show(raw)}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - set(fields), key=str)
    if unknown:
        raise UserError(f"{source}: unknown key {prefix}{_name(unknown[0])}; {where} takes: {', '.join(fields)}")
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
        if meta.get("one_or_many") and not isinstance(value, list):
            return (_item(item, value, key, meta, source),)
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
        return {str(k): _item(typing.get_args(hint)[1], v, f"{key}.{_name(k)}", meta, source) for k, v in value.items()}
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
        if value is False and "no" in meta.get("choices", ()):
            value = "no"  # PyYAML reads an unquoted `no` as false (YAML 1.1), and DVC's --set-param writes it so
        if not isinstance(value, str) or not value.strip():
            raise bad
    elif hint == WordOrNumber:
        value = _word_or_number(value, bad)
    if "range" in meta and not _in_range(value, *meta["range"]):
        raise bad
    if "choices" in meta and value not in meta["choices"]:
        raise bad
    return value


def _word_or_number(value: Any, bad: UserError) -> str | float:
    """A number (in any YAML spelling) as a float; any other string as it is."""
    if isinstance(value, str) and _FLOAT_RE.match(value.strip()):
        return float(value)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        return value
    raise bad


def _in_range(value: float, lo: float | None, hi: float | None, lo_open: bool, hi_open: bool) -> bool:
    if lo is not None and (value < lo or (lo_open and value == lo)):
        return False
    return hi is None or not (value > hi or (hi_open and value == hi))


def _describe(hint: Any, meta: dict) -> str:
    if meta.get("one_or_many"):
        item = typing.get_args(hint)[0] if typing.get_origin(hint) is tuple else hint
        one = _describe(item, {k: v for k, v in meta.items() if k != "one_or_many"})
        return f"{one}, or a non-empty list of them"
    if "choices" in meta:
        many = "a list of " if typing.get_origin(hint) is tuple else ""
        return f"{many}one of: {', '.join(map(str, meta['choices']))}"
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


def _name(key: Any) -> str:
    """A key as written, or quoted with escapes where it holds a line break or another unprintable character."""
    return str(key) if str(key).isprintable() else repr(str(key))


def _show(value: Any) -> str:
    return repr(value) if isinstance(value, str) else str(value)
