"""Errors of YAML definitions: each names the file, line and column, and what was expected."""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from orchestrate.errors import DefinitionError

if TYPE_CHECKING:
    from pydantic import ValidationError

    from orchestrate.yaml._source import Document


@dataclass(frozen=True)
class Problem:
    """One problem of a YAML definition, printed as ``file:line:column: path: message``.

    Attributes:
        file: the file (or the ``source`` given to :func:`~orchestrate.yaml.loads`).
        line: 1-based line.
        column: 1-based column.
        path: where in the definition, e.g. ``steps[2].retry.max_attempts`` (empty at the top).
        message: what is wrong and what was expected.
    """

    file: str
    line: int
    column: int
    path: str
    message: str

    def __str__(self) -> str:
        where = f"{self.path}: " if self.path else ""
        return f"{self.file}:{self.line}:{self.column}: {where}{self.message}"


class YamlDefinitionError(DefinitionError):
    """A YAML definition is invalid; ``problems`` lists every problem found, one line each.

    Attributes:
        problems: the problems, in file order.
    """

    def __init__(self, problems: Iterable[Problem]) -> None:
        self.problems = tuple(sorted(problems, key=lambda p: (p.file, p.line, p.column)))
        super().__init__("\n".join(str(p) for p in self.problems))


def is_tag(item: Any) -> bool:
    """Whether a path item is a schema union's tag (``<step>``) rather than a key of the file."""
    return isinstance(item, str) and item.startswith("<") and item.endswith(">")


_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def show_path(loc: Sequence[Any]) -> str:
    """``("steps", 2, "<step>", "retry")`` → ``steps[2].retry``."""
    text = ""
    for item in loc:
        if is_tag(item) or item == "[key]":
            continue
        if isinstance(item, int) and not isinstance(item, bool):
            text += f"[{item}]"
        elif isinstance(item, str) and _IDENTIFIER.match(item):
            text += f".{item}" if text else item
        else:
            text += f"[{show_value(item)}]"
    return text


def show_value(value: Any) -> str:
    """A short, YAML-flavoured rendering of a value for messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


_TYPE_WORDS = {
    "int_type": "an integer",
    "int_from_float": "an integer",
    "int_parsing": "an integer",
    "float_type": "a number",
    "float_parsing": "a number",
    "string_type": "a string",
    "bool_type": "true or false",
    "bool_parsing": "true or false",
    "dict_type": "a mapping",
    "model_type": "a mapping",
    "model_attributes_type": "a mapping",
    "list_type": "a list",
    "none_required": "null",
}
_BOUNDS = {
    "greater_than_equal": ">=",
    "greater_than": ">",
    "less_than_equal": "<=",
    "less_than": "<",
}


def from_validation(
    error: ValidationError, document: Document, allowed: Any, prefix: Sequence[Any] = ()
) -> list[Problem]:
    """Problems for a pydantic ``ValidationError`` of ``document``'s data.

    Args:
        error: the schema's error.
        document: the parsed file, for positions.
        allowed: ``allowed(loc)`` gives the keys allowed where ``loc`` points (for hints).
        prefix: where the validated data sits in the document.
    """
    problems: list[Problem] = []
    for item in error.errors(include_url=False):
        loc = (*prefix, *item["loc"])
        kind = item["type"]
        value = item.get("input")
        ctx = item.get("ctx") or {}
        at_key = False
        offset = None
        if kind == "missing":
            message = f"missing required key {loc[-1]!r}"
            loc = loc[:-1]
        elif kind == "extra_forbidden":
            key = loc[-1]
            keys = sorted(allowed(loc[:-1]))
            close = difflib.get_close_matches(str(key), keys, n=1, cutoff=0.6)
            message = f"unknown key {show_value(key)}"
            message += f"; did you mean {close[0]!r}?" if close else ""
            message += f" (expected one of: {', '.join(keys)})" if keys else ""
            at_key = True
        elif kind == "literal_error":
            message = f"expected {ctx.get('expected', 'one of the listed values')}, got {show_value(value)}"
        elif kind in _TYPE_WORDS:
            message = f"expected {_TYPE_WORDS[kind]}, got {show_value(value)}"
        elif kind in _BOUNDS:
            bound = next(iter(ctx.values()), "?")
            message = f"expected a number {_BOUNDS[kind]} {bound}, got {show_value(value)}"
        elif kind == "too_short":
            message = f"expected at least {ctx.get('min_length', 1)} item(s), got {ctx.get('actual_length', 0)}"
        elif kind == "value_error":
            message = str(ctx.get("error", item["msg"]))
        else:
            message = item["msg"]
            offset = ctx.get("column") if isinstance(ctx.get("column"), int) else None
        if loc and loc[-1] == "[key]":
            at_key = True
            loc = loc[:-1]
        position = document.locate(loc, key=at_key, offset=offset)
        problems.append(Problem(document.source, position.line, position.column, show_path(loc), message))
    return problems
