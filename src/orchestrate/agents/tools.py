"""Typed tools for agents: a callable, its argument schema, its approval and credential needs.

::

    @tool(credentials=["crm_api_key"])
    async def lookup_order(order_id: str, *, crm_api_key: Secret) -> dict:
        '''Look up an order by its id.'''
        ...

    @tool(requires_approval=True)
    def issue_refund(order_id: str, amount: Annotated[float, Field(gt=0)], idempotency_key: str) -> str:
        '''Refund an order (a person approves first).'''

The model sees the name, the docstring's first paragraph and a JSON schema of the
arguments it may pass. Schema and validation both come from pydantic, so they agree:
nested models, lists, enums, ``Literal``, ``Annotated`` constraints and optional fields
are described exactly and checked exactly. Credential parameters are hidden from the
model and filled in by the agent from its own scoped credentials; a parameter named
``idempotency_key`` is hidden too and receives the call's stable idempotency key (the
durable step's key when the agent runs inside a workflow), to pass on to the API the
tool calls.
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import pydantic

from orchestrate.errors import DefinitionError

IDEMPOTENCY_PARAM = "idempotency_key"
"""The parameter name through which a tool receives its call's idempotency key."""


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
        wants_idempotency_key: the function takes an ``idempotency_key`` parameter.
        timeout: seconds a call may take (``None``: the agent's ``tool_timeout``).
    """

    name: str
    fn: Callable[..., Any]
    description: str
    parameters: Mapping[str, Any]
    requires_approval: bool = False
    credentials: tuple[str, ...] = ()
    wants_idempotency_key: bool = False
    timeout: float | None = None
    _arguments: type[pydantic.BaseModel] | None = field(default=None, repr=False, compare=False)
    _schema_check: Callable[[Mapping[str, Any]], None] | None = field(default=None, repr=False, compare=False)

    @property
    def is_async(self) -> bool:
        """Whether calling it returns an awaitable."""
        return inspect.iscoroutinefunction(self.fn)

    @property
    def required(self) -> frozenset[str]:
        """Names of the arguments the model must pass."""
        return frozenset(self.parameters.get("required", ()))

    def signature_line(self) -> str:
        """``name(arg: type, ...)``: the compact form shown to the model."""
        props = self.parameters.get("properties", {})
        defs = self.parameters.get("$defs", {})
        args = ", ".join(
            f"{name}: {_type_name(spec, defs)}{'' if name in self.required else ' (optional)'}"
            for name, spec in props.items()
        )
        return f"{self.name}({args})"

    def check_args(self, args: Any) -> dict[str, Any]:
        """Validate the model's arguments against the tool's signature (pydantic, lax mode).

        Returns:
            the arguments to call the function with (nested models built, numbers
            coerced where lossless); arguments the model left out are not included, so
            the function's own defaults apply.

        Raises:
            ToolArgumentError: with a message for the model.
        """
        if not isinstance(args, Mapping):
            raise ToolArgumentError(f"arguments of {self.name} must be a JSON object, got {type(args).__name__}")
        allowed = set(self.parameters.get("properties", {}))
        unknown = sorted(set(args) - allowed, key=str)
        if unknown:
            raise ToolArgumentError(f"{self.name} has no argument(s) {unknown}; it takes {sorted(allowed)}")
        missing = sorted(self.required - set(args))
        if missing:
            raise ToolArgumentError(f"{self.name} is missing argument(s) {missing}")
        if self._arguments is None:
            if self._schema_check is not None:
                self._schema_check(args)  # a tool known by its JSON schema only (an MCP server's)
            return dict(args)
        try:
            checked = self._arguments.model_validate(dict(args))
        except pydantic.ValidationError as exc:
            raise ToolArgumentError(_describe(self.name, exc)) from None
        return {name: getattr(checked, name) for name in checked.model_fields_set}

    def spec(self) -> Any:
        """The :class:`~orchestrate.models.base.ToolSpec` offered to native tool calling."""
        from orchestrate.models.base import ToolSpec

        return ToolSpec(self.name, self.description, self.parameters)


def _describe(name: str, exc: pydantic.ValidationError) -> str:
    problems = []
    for error in exc.errors(include_url=False)[:5]:
        where = ".".join(str(part) for part in error["loc"])
        problems.append(f"{name}.{where}: {error['msg']} (got {error.get('input')!r})")
    more = len(exc.errors()) - len(problems)
    return "; ".join(problems) + (f"; and {more} more" if more > 0 else "")


def _type_name(spec: Mapping[str, Any], defs: Mapping[str, Any]) -> str:
    ref = spec.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/$defs/"):
        found = defs.get(ref.removeprefix("#/$defs/"))
        return _type_name(found, {}) if isinstance(found, Mapping) else "object"
    if "enum" in spec:
        return "one of " + ", ".join(repr(v) for v in spec["enum"])
    if "type" in spec:
        kind = spec["type"]
        if kind == "array" and isinstance(spec.get("items"), Mapping):
            return f"array of {_type_name(spec['items'], defs)}"
        return str(kind)
    for key in ("anyOf", "oneOf"):
        if key in spec:
            options = [_type_name(o, defs) for o in spec[key] if o.get("type") != "null"]
            return " | ".join(options) or "null"
    return "any"


def _clean(schema: Any) -> Any:
    """The schema without pydantic's generated ``title`` keywords (noise to a model)."""
    if isinstance(schema, dict):
        return {k: _clean(v) for k, v in schema.items() if not (k == "title" and isinstance(v, str))}
    if isinstance(schema, list):
        return [_clean(v) for v in schema]
    return schema


def tool(
    fn: Callable[..., Any] | None = None,
    *,
    name: str | None = None,
    description: str | None = None,
    requires_approval: bool = False,
    credentials: Iterable[str] = (),
    timeout: float | None = None,
) -> Any:
    """Make a :class:`Tool` of a function (usable bare, ``@tool``, or with options).

    Args:
        fn: the function.
        name: the tool's name (default: the function's).
        description: for the model (default: the docstring's first paragraph).
        requires_approval: each call needs the agent's ``approve`` callback to allow it.
        credentials: keyword-only parameters the agent fills with its own secrets; they
            are never part of what the model sees or passes.
        timeout: seconds one call may take (default: the agent's ``tool_timeout``).
    """
    if timeout is not None and not timeout > 0:
        raise DefinitionError(f"tool timeout must be > 0 seconds, got {timeout!r}")

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
            hints = typing.get_type_hints(func, include_extras=True)
        except (NameError, TypeError):
            hints = {}
        sig = inspect.signature(func)
        for cred in creds:
            if cred not in sig.parameters:
                raise DefinitionError(f"tool {tool_name!r} has no parameter {cred!r} for its credential")
        fields: dict[str, Any] = {}
        for param in sig.parameters.values():
            if param.name in creds or param.name == IDEMPOTENCY_PARAM:
                continue
            if param.kind in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD):
                raise DefinitionError(f"tool {tool_name!r}: *args/**kwargs cannot be described to a model")
            if param.kind is inspect.Parameter.POSITIONAL_ONLY:
                raise DefinitionError(f"tool {tool_name!r}: positional-only parameter {param.name!r} cannot be named")
            hint = hints.get(param.name, Any)
            default = ... if param.default is inspect.Parameter.empty else param.default
            fields[param.name] = (hint, default)
        try:
            arguments = pydantic.create_model(
                f"{tool_name}_arguments", __config__=pydantic.ConfigDict(extra="forbid"), **fields
            )
            schema = _clean(arguments.model_json_schema())
        except (pydantic.PydanticSchemaGenerationError, pydantic.PydanticUserError, TypeError) as exc:
            raise DefinitionError(
                f"tool {tool_name!r}: its parameters cannot be described as JSON ({exc}); "
                "use JSON-friendly types (str, int, float, bool, lists, dicts, enums, pydantic models)"
            ) from None
        schema.setdefault("properties", {})
        schema.setdefault("required", [])
        doc = inspect.getdoc(func) or ""
        text = description or doc.split("\n\n", 1)[0].replace("\n", " ").strip() or tool_name
        return Tool(
            tool_name,
            func,
            text,
            schema,
            requires_approval,
            creds,
            IDEMPOTENCY_PARAM in sig.parameters,
            timeout,
            arguments,
        )

    return build(fn) if fn is not None else build
