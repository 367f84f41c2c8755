"""The scalars and the base of the YAML schema: durations, names, references, expressions.

Each scalar is checked where the file gives it, so that its problem carries a line and a
column; :class:`Spec` is the base of every model of the schema (strict, unknown keys
refused), and ``_form`` builds the discriminators that pick a union's member from the raw
value.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Discriminator, Field, WithJsonSchema
from pydantic_core import PydanticCustomError

from orchestrate.errors import DefinitionError
from orchestrate.policies import parse_duration
from orchestrate.yaml._errors import show_value
from orchestrate.yaml._expr import Expression, ExpressionError

# scalars --------------------------------------------------------------------------------------

DURATION_PATTERN = r"^\s*(\d+(\.\d*)?|\.\d+)\s*(ms|d|h|m|s)(\s*(\d+(\.\d*)?|\.\d+)\s*(ms|d|h|m|s))*\s*$"
_DURATION_WORDS = "a duration such as 30s, 5m, 1h30m, 250ms or 2d (or a number of seconds)"


def _fail(kind: str, message: str, **ctx: Any) -> PydanticCustomError:
    # Braces would be read as placeholders by pydantic: the message is passed whole.
    return PydanticCustomError(kind, "{message}", {"message": message, **ctx})


def _seconds(value: Any, *, zero: bool) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise _fail("duration", f"expected {_DURATION_WORDS}, got {show_value(value)}")
    if isinstance(value, str):
        try:
            seconds = parse_duration(value)
        except DefinitionError as exc:
            text = str(exc)
            if "must be positive" in text:
                raise _fail("duration", f"expected a duration > 0, got {value!r}") from None
            hint = "; add a unit, e.g. " + repr(value.strip() + "s") if "add a unit" in text else ""
            order = " (each unit once, largest first)" if "largest first" in text else ""
            raise _fail("duration", f"expected {_DURATION_WORDS}{order}, got {value!r}{hint}") from None
    else:
        seconds = float(value) if math.isfinite(value) else math.inf
    if not math.isfinite(seconds):
        raise _fail("duration", f"expected a finite duration, got {show_value(value)}")
    if seconds < 0 or (seconds == 0 and not zero):
        raise _fail("duration", f"expected a duration > 0, got {show_value(value)}")
    return seconds


def _duration(value: Any) -> Any:
    _seconds(value, zero=False)
    return value


def _delay(value: Any) -> Any:
    _seconds(value, zero=True)
    return value


_DURATION_SCHEMA = {
    "anyOf": [
        {"type": "number", "exclusiveMinimum": 0},
        {"type": "string", "pattern": DURATION_PATTERN},
    ],
    "description": "A duration: 30s, 5m, 1h30m, 24h, 250ms, 2d, or a number of seconds.",
}
Duration = Annotated[Any, BeforeValidator(_duration), WithJsonSchema(_DURATION_SCHEMA)]
"""A duration > 0, kept as written (the Python API reads the same forms)."""
Delay = Annotated[
    Any,
    BeforeValidator(_delay),
    WithJsonSchema({**_DURATION_SCHEMA, "anyOf": [{"type": "number", "minimum": 0}, _DURATION_SCHEMA["anyOf"][1]]}),
]
"""A duration >= 0 (retry delays)."""

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.:-]*$")


def _name(value: Any) -> Any:
    if not isinstance(value, str) or not _NAME.match(value):
        raise _fail(
            "name", f"expected a name (letters, digits, _ . : -, not starting with a digit), got {show_value(value)}"
        )
    return value


Name = Annotated[Any, BeforeValidator(_name), WithJsonSchema({"type": "string", "pattern": _NAME.pattern})]


def _optional_name(value: Any) -> Any:
    return None if value is None else _name(value)


OptionalName = Annotated[
    Any,
    BeforeValidator(_optional_name),
    WithJsonSchema({"anyOf": [{"type": "string", "pattern": _NAME.pattern}, {"type": "null"}]}),
]


def _reference(value: Any) -> Any:
    if not isinstance(value, str) or not value.strip() or any(c.isspace() for c in value):
        raise _fail(
            "reference",
            f"expected a component name or an import path like package.module:function, got {show_value(value)}",
        )
    return value


Reference = Annotated[
    Any,
    BeforeValidator(_reference),
    WithJsonSchema(
        {"type": "string", "description": "A component's name, or an import path: package.module:function."}
    ),
]


def _text(value: Any) -> Any:
    if not isinstance(value, str) or not value:
        raise _fail("text", f"expected a non-empty string, got {show_value(value)}")
    return value


Text = Annotated[Any, BeforeValidator(_text), WithJsonSchema({"type": "string", "minLength": 1})]


def _expression(value: Any) -> Any:
    if not isinstance(value, str):
        raise _fail("expression", f"expected an expression (a string such as score > 0.9), got {show_value(value)}")
    try:
        return Expression(value)
    except ExpressionError as exc:
        raise _fail("expression", f"invalid expression {value!r}: {exc.reason}", column=exc.column) from None


Expr = Annotated[
    Any,
    BeforeValidator(_expression),
    WithJsonSchema({"type": "string", "description": 'An expression, e.g. score > 0.9 or intent == "refund".'}),
]


def _version(value: Any) -> Any:
    if isinstance(value, str) and value.strip():
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        raise _fail(
            "version",
            f"expected a string, got the number {value!r}; quote it so that YAML keeps it as written: "
            f'version: "{value}"',
        )
    raise _fail("version", f"expected a non-empty string, got {show_value(value)}")


Version = Annotated[Any, BeforeValidator(_version), WithJsonSchema({"type": "string", "minLength": 1})]


def _number(value: Any) -> Any:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise _fail("number", f"expected a finite number, got {show_value(value)}")
    return value


Number = Annotated[Any, BeforeValidator(_number), WithJsonSchema({"type": "number"})]


def _route_key(value: Any) -> Any:
    if value is None or isinstance(value, str | int | float | bool):
        return value
    raise _fail("route_key", f"expected a scalar route key, got {show_value(value)}")


RouteKey = Annotated[Any, BeforeValidator(_route_key)]
PositiveInt = Annotated[int, Field(ge=1)]


class Spec(BaseModel):
    """Base of the schema's models: strict types, unknown keys refused."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, arbitrary_types_allowed=True)

    def given(self, name: str) -> bool:
        """Whether the key was written in the file (``null`` included)."""
        return name in self.model_fields_set


def _form(chooser: Callable[[Any], str | None], error: str) -> Discriminator:
    """The discriminator of a union: ``chooser`` names the member's tag from the raw value."""
    return Discriminator(chooser, custom_error_type="form", custom_error_message=error)


def _by_type(
    mapping: str | None = None, sequence: str | None = None, scalar: str | None = None
) -> Callable[[Any], str | None]:
    def choose(value: Any) -> str | None:
        if isinstance(value, dict):
            return mapping
        if isinstance(value, list):
            return sequence
        return scalar

    return choose


def _by_key(
    keys: dict[str, str], *, scalar: str | None = None, default: str | None = None
) -> Callable[[Any], str | None]:
    def choose(value: Any) -> str | None:
        if isinstance(value, dict):
            return next((tag for key, tag in keys.items() if key in value), default)
        return scalar

    return choose
