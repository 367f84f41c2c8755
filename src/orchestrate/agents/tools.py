"""Typed tools for agents: a callable, its argument schema, its approval and credential needs.

::

    @tool(credentials=["crm_api_key"])
    async def lookup_order(order_id: str, *, crm_api_key: Secret) -> dict:
        '''Look up an order by its id.'''
        ...

    @tool(requires_approval=True)
    def issue_refund(order_id: str, amount: float) -> str:
        '''Refund an order (a person approves first).'''

The model sees the name, the docstring's first paragraph and a JSON schema of the
arguments it may pass; credential parameters are hidden from it and filled in by the
agent from its own scoped credentials.
"""

from __future__ import annotations

import inspect
import types
import typing
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Union, get_args, get_origin

from orchestrate.errors import DefinitionError

_JSON_TYPES: dict[Any, str] = {
    str: "string",
    int: "integer",
    float: "number",
    bool: "boolean",
    list: "array",
    dict: "object",
}


class ToolArgumentError(ValueError):
    """The model passed arguments that do not fit the tool's signature."""


@dataclass(frozen=True)
class Tool:
    """A function an agent may call.

    Attributes:
        name: the name the model uses.
        fn: the function (sync or async).
        description: what it does, for the model.
        parameters: the JSON schema of the arguments the model passes.
        requires_approval: a person (the agent's ``approve`` callback) must allow each call.
        credentials: names of keyword parameters filled from the agent's credentials.
    """

    name: str
    fn: Callable[..., Any]
    description: str
    parameters: Mapping[str, Any]
    requires_approval: bool = False
    credentials: tuple[str, ...] = ()
    _hints: Mapping[str, Any] = field(default_factory=dict, repr=False)
    _required: frozenset[str] = field(default_factory=frozenset, repr=False)

    @property
    def is_async(self) -> bool:
        """Whether calling it returns an awaitable."""
        return inspect.iscoroutinefunction(self.fn)

    def signature_line(self) -> str:
        """``name(arg: type, ...)``: the compact form shown to the model."""
        props = self.parameters.get("properties", {})
        args = ", ".join(
            f"{name}: {spec.get('type', 'any')}{'' if name in self._required else ' (optional)'}"
            for name, spec in props.items()
        )
        return f"{self.name}({args})"

    def check_args(self, args: Any) -> dict[str, Any]:
        """Validate (and lightly coerce) the model's arguments.

        Raises:
            ToolArgumentError: with a message for the model.
        """
        if not isinstance(args, Mapping):
            raise ToolArgumentError(f"arguments of {self.name} must be a JSON object, got {type(args).__name__}")
        allowed = set(self.parameters.get("properties", {}))
        unknown = sorted(set(args) - allowed)
        if unknown:
            raise ToolArgumentError(f"{self.name} has no argument(s) {unknown}; it takes {sorted(allowed)}")
        missing = sorted(self._required - set(args))
        if missing:
            raise ToolArgumentError(f"{self.name} is missing argument(s) {missing}")
        return {name: _coerce(value, self._hints.get(name, Any), f"{self.name}.{name}") for name, value in args.items()}


def _coerce(value: Any, hint: Any, where: str) -> Any:
    if hint is Any or hint is inspect.Parameter.empty:
        return value
    origin = get_origin(hint)
    if origin in (Union, types.UnionType):
        options = get_args(hint)
        if value is None and type(None) in options:
            return None
        for option in options:
            if option is type(None):
                continue
            try:
                return _coerce(value, option, where)
            except ToolArgumentError:
                continue
        raise ToolArgumentError(f"{where}: {value!r} fits none of {hint}")
    if origin is Literal:
        if value in get_args(hint):
            return value
        raise ToolArgumentError(f"{where}: {value!r} is not one of {list(get_args(hint))}")
    base = origin or hint
    if base is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if base is int and isinstance(value, float) and value.is_integer():
        return int(value)
    if base in (list, tuple) and isinstance(value, list):
        return value if base is list else tuple(value)
    if isinstance(base, type) and isinstance(value, base) and not (base is int and isinstance(value, bool)):
        return value
    raise ToolArgumentError(
        f"{where}: expected {getattr(base, '__name__', base)}, got {type(value).__name__} {value!r}"
    )


def _schema_of(hint: Any) -> dict[str, Any]:
    origin = get_origin(hint)
    if origin in (Union, types.UnionType):
        options = [o for o in get_args(hint) if o is not type(None)]
        return _schema_of(options[0]) if len(options) == 1 else {"anyOf": [_schema_of(o) for o in options]}
    if origin is Literal:
        return {"enum": list(get_args(hint))}
    base = origin or hint
    if base is tuple:
        base = list
    json_type = _JSON_TYPES.get(base)
    return {"type": json_type} if json_type else {}


def tool(
    fn: Callable[..., Any] | None = None,
    *,
    name: str | None = None,
    description: str | None = None,
    requires_approval: bool = False,
    credentials: Iterable[str] = (),
) -> Any:
    """Make a :class:`Tool` of a function (usable bare, ``@tool``, or with options).

    Args:
        fn: the function.
        name: the tool's name (default: the function's).
        description: for the model (default: the docstring's first paragraph).
        requires_approval: each call needs the agent's ``approve`` callback to allow it.
        credentials: keyword-only parameters the agent fills with its own secrets; they
            are never part of what the model sees or passes.
    """

    def build(func: Callable[..., Any]) -> Tool:
        if isinstance(func, Tool):
            return func
        if not callable(func):
            raise DefinitionError(f"tool() needs a callable, got {func!r}")
        tool_name = name or getattr(func, "__name__", None)
        if not tool_name or not tool_name.isidentifier():
            raise DefinitionError(f"a tool needs an identifier-like name, got {tool_name!r}")
        creds = tuple(credentials)
        try:
            hints = typing.get_type_hints(func)
        except (NameError, TypeError):
            hints = {}
        sig = inspect.signature(func)
        for cred in creds:
            if cred not in sig.parameters:
                raise DefinitionError(f"tool {tool_name!r} has no parameter {cred!r} for its credential")
        properties: dict[str, Any] = {}
        required: list[str] = []
        arg_hints: dict[str, Any] = {}
        for param in sig.parameters.values():
            if param.name in creds:
                continue
            if param.kind in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD):
                raise DefinitionError(f"tool {tool_name!r}: *args/**kwargs cannot be described to a model")
            hint = hints.get(param.name, Any)
            arg_hints[param.name] = hint
            properties[param.name] = _schema_of(hint)
            if param.default is inspect.Parameter.empty:
                required.append(param.name)
        doc = inspect.getdoc(func) or ""
        text = description or doc.split("\n\n", 1)[0].replace("\n", " ").strip() or tool_name
        schema = {"type": "object", "properties": properties, "required": required}
        return Tool(tool_name, func, text, schema, requires_approval, creds, arg_hints, frozenset(required))

    return build(fn) if fn is not None else build
