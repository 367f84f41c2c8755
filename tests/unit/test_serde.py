"""Stored JSON: ``encode`` writes what ``json.dumps`` writes, errors included."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from typing import Any

import pytest

from orchestrate import _serde
from orchestrate.errors import SerializationError


@dataclasses.dataclass
class Point:
    x: int
    label: str


def reference(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), allow_nan=False, default=_serde._default)


VALUES = [
    0,
    -7,
    10**40,
    True,
    False,
    None,
    1.5,
    0.1,
    -1e300,
    "",
    'quote " backslash \\ newline \n unicode é \u2028 emoji \U0001f600',
    [],
    {},
    [1, "a", None, 2.5, [True, {"k": []}]],
    {"z": 1, "a": {"nested": [Point(1, "p")]}},
    {1: "int key", 2.5: "float key", False: "bool key", None: "null key"},
    Point(2, "q"),
    (1, 2, 3),
    {"when": dt.datetime(2026, 1, 2, 3, 4, 5), "day": dt.date(2026, 1, 2)},
    {"tags": {"b", "a"}},
]


@pytest.mark.parametrize("value", VALUES, ids=repr)
def test_encode_writes_what_json_dumps_writes(value: Any) -> None:
    assert _serde.encode(value) == reference(value)


@pytest.mark.parametrize(
    "bad",
    [float("nan"), {"x": float("inf")}, [b"bytes"], {"o": object()}, {(1, 2): "tuple key"}],
    ids=repr,
)
def test_encode_refuses_what_json_dumps_refuses_with_the_same_error(bad: Any) -> None:
    with pytest.raises((TypeError, ValueError)) as expected:
        reference(bad)
    with pytest.raises(type(expected.value)) as got:
        _serde.encode(bad)
    assert str(got.value) == str(expected.value)


@pytest.mark.parametrize("container", ["list", "dict"])
def test_a_cycle_is_named_not_a_recursion_error(container: str) -> None:
    cycle: Any = []
    if container == "list":
        cycle.append(cycle)
    else:
        cycle = {}
        cycle["self"] = cycle
    with pytest.raises(ValueError, match="Circular reference detected"):
        _serde.encode(cycle)
    with pytest.raises(SerializationError, match="step output cannot be stored as JSON: Circular reference"):
        _serde.dumps(cycle, what="step output")
