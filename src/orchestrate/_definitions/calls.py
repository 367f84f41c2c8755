"""How the engine calls a step's function with the value flowing into it.

A :class:`CallPlan` is computed once per function: async or not, its parameters, whether
it takes a ``ctx``, and the annotations the codec revives values into.
"""

from __future__ import annotations

import inspect
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Union

from orchestrate.errors import DefinitionError


@dataclass(frozen=True)
class CallPlan:
    """How to call a step function with the value flowing into it (computed once)."""

    fn: Callable[..., Any]
    is_async: bool
    params: tuple[str, ...]
    wants_ctx: bool
    returns: Any
    ctx_index: int | None = None  # position of a positional ``ctx`` parameter (else passed by keyword)
    first_type: Any = None  # annotation of a lone parameter: tells a whole dict from fields to spread

    @classmethod
    def of(cls, fn: Callable[..., Any], where: str) -> CallPlan:
        """Inspect ``fn`` once: async or not, parameter names, return annotation."""
        if not callable(fn):
            raise DefinitionError(f"{where}: expected a callable, got {fn!r}")
        try:
            sig = inspect.signature(fn)
        except (TypeError, ValueError):
            return cls(fn, _is_async(fn), ("value",), False, None)
        params: list[str] = []
        wants_ctx = False
        ctx_index: int | None = None
        for p in sig.parameters.values():
            if p.name == "ctx":
                wants_ctx = True
                if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD):
                    ctx_index = len(params)
            elif p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY):
                if p.default is p.empty or p.kind is not p.KEYWORD_ONLY:
                    params.append(p.name)
        try:
            hints = typing.get_type_hints(fn)
        except Exception:  # noqa: BLE001 - unresolvable annotations just disable revival
            hints = {}
        first = hints.get(params[0]) if len(params) == 1 else None
        return cls(fn, _is_async(fn), tuple(params), wants_ctx, hints.get("return"), ctx_index, first)

    def arguments(self, value: Any) -> tuple[tuple[Any, ...], dict[str, Any]]:
        """Positional and keyword arguments for ``value``.

        A dict whose keys include every parameter name is spread as keyword arguments
        (so ``run(form_id=...)`` reaches ``def extract(form_id)``); otherwise the value
        is the single positional argument; a function with no parameters gets none.
        A lone parameter annotated to accept the whole dict (``def f(diagnosis: dict)``)
        gets the whole dict even when it has a field of the parameter's name, one-key
        dicts included (``{"diagnosis": 1}`` arrives whole).
        """
        if not self.params:
            return (), {}
        if (
            isinstance(value, dict)
            and all(p in value for p in self.params)
            and (len(self.params) > 1 or not _accepts(self.first_type, value))
        ):
            return (), {p: value[p] for p in self.params}
        return (value,), {}


def _accepts(annotation: Any, value: Any) -> bool:
    """Whether ``value`` fits ``annotation`` (unannotated: no, so fields are spread as before)."""
    if annotation is None:
        return False
    if annotation is Any:
        return True
    origin = typing.get_origin(annotation) or annotation
    if origin is Union or origin is types.UnionType:
        return any(_accepts(arg, value) for arg in typing.get_args(annotation))
    try:
        return isinstance(origin, type) and isinstance(value, origin)
    except TypeError:  # TypedDict and other classes that refuse isinstance
        return isinstance(value, dict)


def _is_async(fn: Any) -> bool:
    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(
        getattr(fn, "__call__", None)  # noqa: B004 - async callable objects
    )


def source_of(obj: Any) -> str:
    """The source text of a function (or its qualified name where there is none): what
    versions and cache keys fingerprint."""
    target = getattr(obj, "__wrapped__", obj)
    try:
        return inspect.getsource(target)
    except (OSError, TypeError):
        return f"{getattr(target, '__module__', '')}.{getattr(target, '__qualname__', repr(type(target)))}"
