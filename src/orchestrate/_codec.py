"""The one codec: a step hands on exactly what a store would hand back after a restart.

Every value that crosses a step boundary (a step's output, a fallback's value, a cached
output, a run's input) is *settled* when it is recorded, on the first drive: turned into
its stored form (JSON-native data: ``dict`` with ``str`` keys, ``list``, ``str``, ``int``,
finite ``float``, ``bool``, ``None``) and revived from that form into what downstream
steps receive. A resumed run revives the same stored form the same way, so a step sees
equal values of equal types before and after a crash, on every store (memory included).

The rules, by the step's return annotation:

* **No annotation, or a plain one** (``Any``, ``object``, ``dict``, ``list``, ``str``,
  ``int``, ``float``, ``bool``, ``None``): the value must be JSON-native all the way
  down, and is handed on as it is. A value whose top level is a dataclass or a pydantic
  model of the library (``ModelResult``, ``Intent``, ``AgentResult``...) or one defined
  in the step function's own module is stored with its type's name and revived into
  it. Anything else (a tuple, an ``int`` dict key, a ``datetime``, a ``set``, an enum, a
  class from elsewhere, ``nan``) is refused with :class:`~orchestrate.errors.SerializationError`
  naming the step, the path inside the value and the fix.
* **Any other annotation** (a dataclass, a pydantic model, ``tuple[int, str]``,
  ``dict[int, Item]``, ``datetime``, ``Decimal``, ``UUID``, enums, unions...): the value is
  dumped to JSON and validated back through a pydantic ``TypeAdapter`` of the annotation,
  deeply; what comes back is what every later step receives.

Types are only ever revived from a name the library registered or a class defined in
the step's own module, found among modules already imported: reading a store never
imports a module or builds an arbitrary object (no pickle).
"""

from __future__ import annotations

import dataclasses
import importlib
import math
import sys
import types
import typing
from collections.abc import Callable, Mapping, MutableMapping, MutableSequence, Sequence
from functools import lru_cache
from typing import Any

from orchestrate.errors import SerializationError
from orchestrate.policies import MISSING
from orchestrate.state import StepSchema

TYPE_KEY = "type"
"""Key of a step record's ``meta`` naming the type its output revives into."""

_CACHED_TAG = "__orchestrate_type__"
"""Cached outputs of a named type are stored as ``{_CACHED_TAG: name, "value": data}``."""

MAX_DEPTH = 256
"""Deepest nesting of lists and dicts a stored value may have."""

_ATOMS = frozenset({str, int, bool, type(None)})
_PLAIN_ANNOTATIONS = frozenset({None, Any, object, dict, list, str, int, float, bool, type(None)})

# The library's own result types a step may return as they are: stored name -> where the
# class lives. A fixed table (the engine never imports the model layer until a stored
# value names one of these).
_LIBRARY = {
    "orchestrate.ModelResult": "orchestrate.models.base:ModelResult",
    "orchestrate.EmbeddingResult": "orchestrate.models.base:EmbeddingResult",
    "orchestrate.Usage": "orchestrate.models.base:Usage",
    "orchestrate.Intent": "orchestrate.models.local:Intent",
    "orchestrate.Hit": "orchestrate.models.local:Hit",
    "orchestrate.Document": "orchestrate.models.local:Document",
    "orchestrate.RouteDecision": "orchestrate.models.router:RouteDecision",
    "orchestrate.AgentResult": "orchestrate.agents.agent:AgentResult",
    "orchestrate.AgentStep": "orchestrate.agents.agent:AgentStep",
    "orchestrate.ToolCall": "orchestrate.agents.agent:ToolCall",
}
_LIBRARY_NAMES = {where: name for name, where in _LIBRARY.items()}
_REGISTRY: dict[str, type] = {}


def _library_name(cls: type) -> str | None:
    return _LIBRARY_NAMES.get(f"{cls.__module__}:{cls.__qualname__}")


def _library_class(name: str) -> type | None:
    found = _REGISTRY.get(name)
    if found is None and name in _LIBRARY:
        module, _, qualname = _LIBRARY[name].partition(":")
        found = _REGISTRY[name] = getattr(importlib.import_module(module), qualname)
    return found


class Plan:
    """How the values of one step (or a run's input) are settled and revived.

    Args:
        annotation: the declared type (a return annotation), or ``None``.
        module: name of the module whose classes may be revived by name.

    Methods take ``where``, the place named in error messages (``step 'fetch'``).
    """

    __slots__ = ("adapter", "annotation", "module", "plain", "schema")

    def __init__(self, annotation: Any, module: str | None, schema: StepSchema | None = None) -> None:
        annotation = _strip_fallback(annotation)
        self.plain = _is_plain(annotation)
        self.annotation = None if self.plain else annotation
        self.module = module
        self.adapter: Any = None
        self.schema = schema

    def settle(self, value: Any, where: str, what: str = "output") -> tuple[Any, Any, str | None]:
        """``(stored form, value handed on, type name or None)``; refuses what cannot come back.

        With a :class:`~orchestrate.state.StepSchema`, the stored form keeps only its fields,
        and the value handed on is revived from that form, as a resumed run revives it.

        Raises:
            SerializationError: the value would not come back the same after a restart, or
                does not have the fields its schema names.
        """
        if self.schema is not None:
            return self._settle_kept(self.schema, value, where, what)
        return self._settle(value, where, what)

    def _settle(self, value: Any, where: str, what: str) -> tuple[Any, Any, str | None]:
        if type(value) in _ATOMS and self.plain:
            return value, value, None
        if self.plain:
            found = _foreign(value, 0)
            if found is None:
                return value, value, None
            parts, bad = found
            if bad is MISSING:  # a skipped step's output, passed on: stored (and handed on) as None
                value = _without_missing(value)
                return self._settle(value, where, what)
            if not parts and (dataclasses.is_dataclass(bad) or _is_model(bad)) and not isinstance(bad, type):
                return self._settle_named(bad, where, what)
            raise SerializationError(_refusal(where, what, parts, bad))
        adapter = self._adapter(where)
        try:
            stored = adapter.dump_python(value, mode="json", warnings=False)
            handed = adapter.validate_python(stored)
        except Exception as exc:  # noqa: BLE001 - pydantic's errors, named for the user
            raise SerializationError(
                f"{where}: its {what} does not fit its declared type {_type_name(self.annotation)} and "
                f"cannot be stored: {_first_line(exc)}; give a value of that type or change the annotation"
            ) from None
        _check_depth(stored, where, what)
        return stored, handed, None

    def revive(self, stored: Any, type_name: str | None, where: str) -> Any:
        """The value a step receives for ``stored`` (as written by :meth:`settle`)."""
        if type_name is not None:
            cls = self._resolve(type_name, where)
            return _adapter_of(cls).validate_python(stored)
        if self.plain:
            return stored
        return self._adapter(where).validate_python(stored)

    # cached outputs keep their type name inside the value (a cache entry has no meta)
    def to_cache(self, stored: Any, type_name: str | None) -> Any:
        """The cache form of a stored output."""
        return stored if type_name is None else {_CACHED_TAG: type_name, "value": stored}

    @staticmethod
    def from_cache(value: Any) -> tuple[Any, str | None]:
        """``(stored form, type name)`` of a cached output."""
        if type(value) is dict and _CACHED_TAG in value:
            return value.get("value"), str(value[_CACHED_TAG])
        return value, None

    # internals ------------------------------------------------------------------------------
    def _settle_kept(self, schema: StepSchema, value: Any, where: str, what: str) -> tuple[Any, Any, str | None]:
        """:meth:`settle` under the step's schema: the kept fields, revived as a replay would."""
        stored, _, type_name = self._settle(value, where, what)
        kept = schema.apply(stored, f"{where}: its {what}" if what != "output" else where)
        if self.plain and type_name is None:
            return kept, kept, None
        try:
            return kept, self.revive(kept, type_name, where), type_name
        except SerializationError:
            raise
        except Exception as exc:  # noqa: BLE001 - pydantic's error: a dropped field had no default
            raise SerializationError(
                f"{where}: its StepSchema drops fields its type needs to be rebuilt ({_first_line(exc)}); give the "
                "dropped fields defaults or keep them"
            ) from None

    def _adapter(self, where: str) -> Any:
        if self.adapter is None:
            try:
                self.adapter = _adapter_of(self.annotation)
            except Exception as exc:  # noqa: BLE001 - pydantic cannot handle the annotation
                raise SerializationError(
                    f"{where}: its return annotation {_type_name(self.annotation)} cannot be stored: "
                    f"{_first_line(exc)}; annotate with a dataclass, a pydantic model or JSON-native types"
                ) from None
        return self.adapter

    def _settle_named(self, value: Any, where: str, what: str) -> tuple[Any, Any, str | None]:
        cls = type(value)
        name = _library_name(cls)
        if name is None:
            if cls.__module__ != self.module or "<locals>" in cls.__qualname__:
                raise SerializationError(
                    f"{where}: its {what} is a {cls.__qualname__} (from {cls.__module__}) with no declared "
                    f"type; after a restart it could not be rebuilt. Annotate it (-> {cls.__qualname__}) "
                    "or use JSON-native data"
                )
            name = cls.__qualname__
        adapter = _adapter_of(cls)
        stored = adapter.dump_python(value, mode="json", warnings=False)
        handed = adapter.validate_python(stored)
        if name not in _LIBRARY and handed != value:
            raise SerializationError(
                f"{where}: its {what} is a {cls.__qualname__} whose fields change when stored (a field "
                "holds a value its annotation does not describe, e.g. a tuple in a list field); annotate "
                f"the fields precisely or annotate the step (-> {cls.__qualname__})"
            )
        _check_depth(stored, where, what)
        return stored, handed, name

    def _resolve(self, name: str, where: str) -> type:
        cls = _library_class(name)
        if cls is not None:
            return cls
        module = sys.modules.get(self.module or "")
        found: Any = module
        for part in name.split("."):
            found = getattr(found, part, None)
        if isinstance(found, type) and found.__module__ == self.module:
            return found
        raise SerializationError(
            f"{where}: a recorded output is a {name!r}, which is neither a registered type nor a "
            f"class of module {self.module!r}; the step's code changed under a running run"
        )


def _is_plain(annotation: Any) -> bool:
    """Whether ``annotation`` describes only JSON-native data (``dict[str, Any]``, ``list[int]``...)."""
    if _hashable(annotation) and annotation in _PLAIN_ANNOTATIONS:
        return True
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (dict, Mapping, MutableMapping):
        return len(args) == 2 and args[0] in (str, Any) and _is_plain(args[1])
    if origin in (list, Sequence, MutableSequence):
        return len(args) == 1 and _is_plain(args[0])
    if origin is typing.Union or origin is types.UnionType:
        return all(_is_plain(a) for a in args)
    return False


def _hashable(value: Any) -> bool:
    try:
        hash(value)
    except TypeError:
        return False
    return True


def _strip_fallback(annotation: Any) -> Any:
    """``X | Fallback`` declares that the step may route elsewhere: its payload is an ``X``."""
    origin = typing.get_origin(annotation)
    if origin is typing.Union or origin is types.UnionType:
        args = [a for a in typing.get_args(annotation) if getattr(a, "__name__", None) != "Fallback"]
        if len(args) != len(typing.get_args(annotation)):
            return None if not args else args[0] if len(args) == 1 else typing.Union[tuple(args)]  # noqa: UP007
    if getattr(annotation, "__name__", None) == "Fallback":
        return None
    return annotation


def _is_model(value: Any) -> bool:
    return callable(getattr(type(value), "model_validate", None)) and hasattr(value, "model_dump")


@lru_cache(maxsize=1024)
def _adapter_cached(annotation: Any) -> Any:
    from pydantic import ConfigDict, TypeAdapter

    if isinstance(annotation, type) and (dataclasses.is_dataclass(annotation) or _is_model_class(annotation)):
        return TypeAdapter(annotation)
    return TypeAdapter(annotation, config=ConfigDict(arbitrary_types_allowed=False))


def _adapter_of(annotation: Any) -> Any:
    try:
        return _adapter_cached(annotation)
    except TypeError:  # an unhashable annotation: not cached
        return _adapter_cached.__wrapped__(annotation)


def _is_model_class(cls: type) -> bool:
    return callable(getattr(cls, "model_validate", None))


def _without_missing(value: Any) -> Any:
    if value is MISSING:
        return None
    if type(value) is dict:
        return {k: _without_missing(v) for k, v in value.items()}
    if type(value) is list:
        return [_without_missing(v) for v in value]
    return value


def _foreign(value: Any, depth: int) -> tuple[list[Any], Any] | None:
    """The path (innermost last, reversed) and value of the first non-JSON-native part."""
    kind = type(value)
    if kind in _ATOMS:
        return None
    if kind is float:
        return None if math.isfinite(value) else ([], value)
    if depth >= MAX_DEPTH:
        return ([], _TooDeep())
    if kind is dict:
        for key, item in value.items():
            if type(key) is not str:
                return ([_Key(key)], key)
            if type(item) in _ATOMS:
                continue
            found = _foreign(item, depth + 1)
            if found is not None:
                found[0].append(key)
                return found
        return None
    if kind is list:
        for i, item in enumerate(value):
            if type(item) in _ATOMS:
                continue
            found = _foreign(item, depth + 1)
            if found is not None:
                found[0].append(i)
                return found
        return None
    return ([], value)


class _Key:
    """A dict key that is not a string (a path part)."""

    def __init__(self, key: Any) -> None:
        self.key = key


class _TooDeep:
    """Marks nesting past :data:`MAX_DEPTH`."""


def _path(what: str, parts: list[Any]) -> str:
    text = what
    for part in reversed(parts):
        if isinstance(part, _Key):
            break
        text += f"[{part!r}]"
    return text


def _refusal(where: str, what: str, parts: list[Any], bad: Any) -> str:
    path = _path(what, parts)
    fix = "annotate its type to say what it is, or use JSON-native data"
    if isinstance(bad, _TooDeep):
        return f"{where}: its {what} nests deeper than {MAX_DEPTH} levels at {path}; flatten it or store it elsewhere"
    if parts and isinstance(parts[0], _Key):
        key = parts[0].key
        return (
            f"{where}: its {what} has the {type(key).__name__} key {key!r} at {path}; JSON keys are strings, so "
            f"it would come back as {str(key)!r} after a restart. Use str keys, or annotate its type "
            f"(-> dict[{type(key).__name__}, ...])"
        )
    if isinstance(bad, float):
        return f"{where}: its {what} holds {bad!r} at {path}, which JSON cannot store; return a finite number or None"
    kind = type(bad)
    if kind is tuple:
        becomes = "a list"
    elif dataclasses.is_dataclass(bad) or _is_model(bad):
        becomes = "a dict"
    elif isinstance(bad, str | int | float):
        becomes = f"a plain {_json_base(bad)}"
    elif isinstance(bad, dict | list):
        becomes = f"a plain {'dict' if isinstance(bad, dict) else 'list'}"
    else:
        becomes = "something else or nothing at all"
    return (
        f"{where}: its {what} holds a {kind.__qualname__} at {path}, which would come back as {becomes} after a "
        f"restart; {fix} (e.g. -> {_suggest(bad)})"
    )


def _json_base(value: Any) -> str:
    for base in (bool, int, float, str):
        if isinstance(value, base):
            return base.__name__
    return "value"


def _suggest(value: Any) -> str:
    kind = type(value)
    if kind is tuple:
        return "tuple[...]"
    if kind in (set, frozenset):
        return f"{kind.__name__}[...]"
    if isinstance(value, dict | list):
        return f"{kind.__qualname__}, or pass dict(value)" if isinstance(value, dict) else "list[...]"
    return kind.__qualname__


def _check_depth(stored: Any, where: str, what: str) -> None:
    found = _foreign(stored, 0)
    if found is not None and isinstance(found[1], _TooDeep):
        raise SerializationError(_refusal(where, what, found[0], found[1]))


_NESTS = (dict, list, tuple)


def check_depth(value: Any, where: str, what: str) -> None:
    """Refuse ``value`` if its lists and dicts nest deeper than :data:`MAX_DEPTH`.

    For values that enter from outside a step (a signal's value, a review's payload or
    its edit), which are not settled: any data, checked for depth alone, without
    recursion (a value too deep for Python's recursion is what it refuses).

    Raises:
        SerializationError: naming ``where`` and ``what``, e.g. ``signal 'approve': its value``.
    """
    if type(value) not in _NESTS and not isinstance(value, _NESTS):
        return
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        node, depth = stack.pop()
        if depth >= MAX_DEPTH:
            raise SerializationError(
                f"{where}: its {what} nests deeper than {MAX_DEPTH} levels; flatten it or store it elsewhere"
            )
        for item in node.values() if isinstance(node, dict) else node:
            if isinstance(item, _NESTS):
                stack.append((item, depth + 1))


def _type_name(annotation: Any) -> str:
    return getattr(annotation, "__qualname__", None) or repr(annotation).replace("typing.", "")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return " ".join(line.strip() for line in text[:3]) if text else type(exc).__name__


def plan_for(fn: Callable[..., Any] | None, annotation: Any, schema: StepSchema | None = None) -> Plan:
    """The plan of a step function ``fn`` with its return ``annotation`` (and output ``schema``)."""
    return Plan(annotation, getattr(fn, "__module__", None), schema)


def to_json(value: Any, what: str = "the run's output") -> Any:
    """JSON-native data of any value pydantic can serialise (a run's output, a payload shown to people).

    Unlike :meth:`Plan.settle` nothing is revived from it, so nothing must come back the
    same: dataclasses become objects, tuples lists, datetimes ISO-8601 text.
    """
    if type(value) in _ATOMS or (type(value) in (dict, list) and _foreign(value, 0) is None):
        return value
    try:
        return _adapter_of(Any).dump_python(value, mode="json", warnings=False)
    except Exception as exc:  # noqa: BLE001 - pydantic's error, named for the user
        raise SerializationError(f"{what} cannot be stored as JSON: {_first_line(exc)}") from None
