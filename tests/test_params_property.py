"""A property of params.yaml loading: whatever value one key holds, ``load_params`` either returns the params or raises
one ``UserError`` line naming that key, never another exception. Values are drawn per key from its schema (valid
ones, and ones at and past its bounds) and from anything YAML can hold."""

from __future__ import annotations

import copy
import dataclasses
import functools
import re
import typing

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.core.errors import UserError
from pipeline.core.params import Params, load_params
from pipeline.core.schema import WordOrNumber
from tests.helpers import ROOT

ANY = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-10**20, 10**20), st.floats(allow_nan=True, allow_infinity=True),
              st.text(max_size=8), st.sampled_from(["1e-05", "auto", "0.5", "-1", "yes", ""])),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=6), inner, max_size=3)),
    max_leaves=6)
SPAN = st.one_of(st.integers(0, 10_000), st.floats(0.0, 1.0))


def keys(cls: type = Params, prefix: str = "") -> list[tuple[str, typing.Any, dict]]:
    """(dotted key, type hint, field metadata) of every field of ``cls``, sections and their keys alike."""
    hints = typing.get_type_hints(cls)
    found = []
    for f in dataclasses.fields(cls):
        found.append((prefix + f.name, hints[f.name], dict(f.metadata)))
        if dataclasses.is_dataclass(hints[f.name]):
            found += keys(hints[f.name], f"{prefix}{f.name}.")
    return found


KEYS = keys()


def number(hint: type, meta: dict) -> st.SearchStrategy:
    """Numbers inside ``meta``'s range and just at or past its ends (the ends are where mistakes hide)."""
    lo, hi, _, _ = meta.get("range", (None, None, False, False))
    lo = -1e6 if lo is None else lo
    hi = lo + 1e6 if hi is None else hi
    edges = st.sampled_from([lo, hi, lo - 1, hi + 1, (lo + hi) / 2])
    if hint is int:
        return st.one_of(st.integers(int(lo), int(min(hi, lo + 10**6))), edges.map(int))
    return st.one_of(st.floats(lo, hi), edges)


def scalar(hint: typing.Any, meta: dict) -> st.SearchStrategy:
    """Values of a single field of type ``hint`` that its schema accepts, or nearly."""
    if meta.get("span"):
        return SPAN
    if "choices" in meta:
        return st.sampled_from(meta["choices"])
    if hint is bool:
        return st.booleans()
    if hint in (int, float):
        return number(hint, meta)
    if hint is WordOrNumber:
        return st.one_of(st.text(max_size=6), st.floats())
    return st.text(min_size=1, max_size=12)


def schema_values(hint: typing.Any, meta: dict) -> st.SearchStrategy:
    """Values shaped as ``hint`` asks (lists for a tuple, mappings for a dict), drawn near the schema."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if dataclasses.is_dataclass(hint):
        return st.just({})  # a section with every key missing
    if origin is tuple:
        items = st.lists(scalar(args[0], meta), min_size=1, max_size=4, unique=True)
        return st.one_of(items, scalar(args[0], meta)) if meta.get("one_or_many") else items
    if origin is dict:
        return st.dictionaries(st.sampled_from(["block0", "block1", "block2", "teacher", "other"]),
                               scalar(args[1], meta), max_size=3)
    return scalar(hint, meta)


@functools.cache
def project_params() -> dict:
    return yaml.safe_load((ROOT / "params.yaml").read_text())


def with_value(key: str, value: typing.Any) -> dict:
    params = copy.deepcopy(project_params())
    *sections, name = key.split(".")
    section = params
    for part in sections:
        section = section[part]
    section[name] = value
    return params


@settings(max_examples=60, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_any_value_of_any_key_loads_or_is_one_line_naming_the_key(tmp_path, data):
    key, hint, meta = data.draw(st.sampled_from(KEYS), label="key")
    value = data.draw(st.one_of(schema_values(hint, meta), ANY), label="value")
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(with_value(key, value), sort_keys=False))
    try:
        load_params(path)
    except UserError as err:
        message = str(err)
        assert "\n" not in message and message.startswith(f"{path}: ")
        assert re.search(rf"(?<![\w.]){re.escape(key)}(?!\w)", message), f"{key} = {value!r}: {message}"  # named whole

