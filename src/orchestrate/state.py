"""State that stays small: what a step's output keeps, and how recorded values are stored.

Seed 001's "after 10 steps the state object becomes a 50MB JSON blob" has three answers
here, each declared where the step or the workflow is written:

* :class:`StepSchema` says which fields of a step's output are kept (``keep=``) and which
  are dropped (``discard=``). It applies to what is recorded *and* to what later steps
  receive, identically on the first drive and after a crash: the value handed on is the
  one a resumed run revives from the record.
* :func:`compress_after` stores the values recorded after a run's ``step``-th step (or
  after the step of that name) compressed, with ``gzip`` (the standard library) or
  ``zstd`` (the ``zstd`` extra). Compression changes how values are stored, never what a
  step receives.
* Values whose stored form is larger than the store's offload size go to its blob store
  (a directory next to a SQLite file, or the one named by ``?blob_dir=``), with a
  reference in the step record; a resumed run reads them back when a step needs them, and
  pruning a run deletes its blobs.

Both ``StepSchema(...)`` and ``compress_after(...)`` also decorate a step function, as
seed 001 writes them::

    @StepSchema(keep=["patient_id", "extracted_fields"], discard=["raw_ocr", "tokens"])
    @compress_after(step=5, strategy="gzip")
    def step_data_extraction(form_id: str) -> dict: ...
"""

from __future__ import annotations

import dataclasses
import types
import typing
import weakref
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from orchestrate.errors import DefinitionError, SerializationError

__all__ = ["Compression", "StepSchema", "compress_after", "compression_of", "schema_of"]

Strategy = Literal["gzip", "zstd"]
"""How compressed values are encoded: ``gzip`` (standard library) or ``zstd`` (the ``zstd`` extra)."""

STRATEGIES: tuple[str, ...] = ("gzip", "zstd")

_SCHEMA_ATTR = "__orchestrate_schema__"
_COMPRESS_ATTR = "__orchestrate_compress__"

F = TypeVar("F")


def _names(value: Any, what: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str) or not isinstance(value, Iterable):
        raise DefinitionError(f"StepSchema: {what} must be a list of field names, got {value!r}")
    names = tuple(value)
    for name in names:
        if not isinstance(name, str) or not name:
            raise DefinitionError(f"StepSchema: {what} must hold field names (non-empty strings), got {name!r}")
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise DefinitionError(f"StepSchema: {what} names {duplicates[0]!r} twice")
    return names


@dataclass(frozen=True, init=False)
class StepSchema:
    """Which fields of a step's output later steps receive, and the record keeps.

    With ``keep`` alone, only those fields are kept; with ``discard`` alone, every field but
    those. With both, ``keep`` says what is kept and ``discard`` names fields known to be
    dropped (each checked to exist); they may not share a name. The output must be an object
    (a dict, a dataclass, a pydantic model) that has every field named: a field it lacks is a
    :class:`~orchestrate.errors.DefinitionError` when the step declares its return type, else
    a :class:`~orchestrate.errors.SerializationError` when the step returns.

    When the step's return type is a dataclass or a pydantic model, later steps receive that
    type again, with its defaults in the dropped fields: a dropped field must have a default.

    Use it as ``Step(..., schema=StepSchema(...))``, ``ctx.step(fn, schema=...)``,
    ``@wf.step(schema=...)`` or as a decorator of the step function.

    Args:
        keep: the fields kept.
        discard: the fields dropped.

    Raises:
        DefinitionError: neither is given, a name is not a string, or both name the same field.
    """

    keep: tuple[str, ...] | None
    discard: tuple[str, ...]

    def __init__(self, keep: Iterable[str] | None = None, discard: Iterable[str] | None = None) -> None:
        kept = None if keep is None else _names(keep, "keep")
        dropped = _names(discard, "discard")
        if kept is None and not dropped:
            raise DefinitionError("StepSchema: give keep=[...] (the fields later steps need) or discard=[...]")
        both = sorted(set(kept or ()) & set(dropped))
        if both:
            raise DefinitionError(f"StepSchema: field {both[0]!r} is in both keep and discard")
        object.__setattr__(self, "keep", kept)
        object.__setattr__(self, "discard", dropped)

    def __call__(self, fn: F) -> F:
        """Decorate a step function: its steps use this schema (unless one is given to the step)."""
        return _attach(fn, _SCHEMA_ATTR, self, "StepSchema")

    @property
    def named(self) -> tuple[str, ...]:
        """Every field the schema names."""
        return (*(self.keep or ()), *self.discard)

    def apply(self, stored: Any, where: str) -> dict[str, Any]:
        """The kept part of a step's stored output (a JSON object).

        Raises:
            SerializationError: the output is not an object or lacks a field the schema names.
        """
        if type(stored) is not dict:
            raise SerializationError(
                f"{where}: its StepSchema keeps fields of an object, but the step returned "
                f"{_kind(stored)}; return a dict, a dataclass or a pydantic model, or drop the schema"
            )
        for name in self.named:
            if name not in stored:
                present = ", ".join(repr(k) for k in list(stored)[:8]) or "none"
                raise SerializationError(
                    f"{where}: its StepSchema names field {name!r}, which its output lacks (it has {present}); "
                    "fix the name in keep/discard or return the field"
                )
        if self.keep is not None:
            return {name: stored[name] for name in self.keep}
        dropped = self.discard
        return {k: v for k, v in stored.items() if k not in dropped}

    def check(self, annotation: Any, where: str) -> None:
        """Check the schema against a declared return type (nothing to check for plain ones).

        Raises:
            DefinitionError: the type has no field of a name, or a dropped field has no default.
        """
        found = fields_of(annotation)
        if found is None:
            return
        names, required, type_name = found
        for name in self.named:
            if name not in names:
                raise DefinitionError(
                    f"{where}: StepSchema names field {name!r}, which {type_name} does not have "
                    f"(its fields: {', '.join(names) or 'none'})"
                )
        kept = set(self.keep) if self.keep is not None else set(names) - set(self.discard)
        for name in names:
            if name not in kept and name in required:
                raise DefinitionError(
                    f"{where}: StepSchema drops field {name!r} of {type_name}, which has no default, so later "
                    f"steps could not receive a {type_name}; give {name!r} a default, or keep it"
                )


def fields_of(annotation: Any) -> tuple[tuple[str, ...], frozenset[str], str] | None:
    """``(field names, required ones, type name)`` of a dataclass, pydantic model or TypedDict.

    ``None`` for any other annotation (nothing is known of its fields before it returns).
    ``X | Fallback`` is read as ``X``.
    """
    origin = typing.get_origin(annotation)
    if origin is typing.Union or origin is types.UnionType:
        args = [a for a in typing.get_args(annotation) if getattr(a, "__name__", None) != "Fallback"]
        if len(args) != 1:
            return None
        annotation = args[0]
    if not isinstance(annotation, type):
        return None
    name = annotation.__qualname__
    if dataclasses.is_dataclass(annotation):
        fields = dataclasses.fields(annotation)
        required = {
            f.name for f in fields if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        }
        return tuple(f.name for f in fields if f.init), frozenset(required), name
    model_fields = getattr(annotation, "model_fields", None)
    if isinstance(model_fields, Mapping) and callable(getattr(annotation, "model_validate", None)):
        required = {k for k, info in model_fields.items() if info.is_required()}
        return tuple(model_fields), frozenset(required), name
    if typing.is_typeddict(annotation):
        hints = typing.get_type_hints(annotation)
        return tuple(hints), frozenset(getattr(annotation, "__required_keys__", ())), name
    return None


@dataclass(frozen=True, init=False)
class Compression:
    """Store a run's values compressed once it is past a step (build it with :func:`compress_after`).

    Attributes:
        after: a number ``n``: values recorded after the run's ``n``-th step are compressed;
            a step name: values recorded after that step's record.
        strategy: ``"gzip"`` or ``"zstd"``.
        level: the compression level (``None``: the strategy's default).
    """

    after: int | str
    strategy: Strategy
    level: int | None

    def __init__(self, after: int | str, strategy: Strategy = "gzip", level: int | None = None) -> None:
        where = "compress_after"
        if isinstance(after, bool) or not isinstance(after, int | str):
            raise DefinitionError(f"{where}: step must be a step number (0 or more) or a step's name, got {after!r}")
        if isinstance(after, int) and after < 0:
            raise DefinitionError(f"{where}: step must be 0 or more (0 compresses from the first step), got {after}")
        if isinstance(after, str) and not after:
            raise DefinitionError(f"{where}: step must name a step, got an empty string")
        if strategy not in STRATEGIES:
            raise DefinitionError(f"{where}: strategy must be 'gzip' or 'zstd', got {strategy!r}")
        if level is not None and (isinstance(level, bool) or not isinstance(level, int)):
            raise DefinitionError(f"{where}: level must be an int, got {level!r}")
        if strategy == "zstd":
            try:
                import zstandard  # noqa: F401
            except ImportError:
                raise DefinitionError(
                    f"{where}: strategy 'zstd' needs the zstandard package: pip install 'orchestrate-ai[zstd]'"
                ) from None
        object.__setattr__(self, "after", after)
        object.__setattr__(self, "strategy", strategy)
        object.__setattr__(self, "level", level)

    def __call__(self, target: F) -> F:
        """Decorate a step function or a workflow: the runs that take it compress as said."""
        return _attach(target, _COMPRESS_ATTR, self, "compress_after")

    def applies(self, position: int, recorded: Iterable[str]) -> bool:
        """Whether a value recorded as the run's ``position``-th step is compressed.

        Args:
            position: 1 for the run's first step record.
            recorded: the step keys the run has recorded before it.
        """
        if isinstance(self.after, int):
            return position > self.after
        name = self.after
        return any(key == name or key.startswith(f"{name}#") or key.endswith(f"/{name}") for key in recorded)


def compress_after(*, step: int | str, strategy: Strategy = "gzip", level: int | None = None) -> Compression:
    """Store the values a run records after its ``step``-th step (or the step so named) compressed.

    Seed 001's ``@compress_after(step=5, strategy="gzip")``: decorate a step function (or a
    workflow), or pass it as ``Step(..., compress=...)``. What steps receive does not change:
    values are decompressed when read back.

    Args:
        step: a number (``5``: from the sixth recorded step on; ``0``: every value) or a
            step's name (every value recorded after that step's).
        strategy: ``"gzip"`` or ``"zstd"``.
        level: the compression level; default the strategy's own.

    Raises:
        DefinitionError: a bad step or strategy, or ``zstd`` without its package.
    """
    return Compression(step, strategy, level)


def _attach(target: F, attr: str, value: Any, what: str) -> F:
    try:
        setattr(target, attr, value)
    except (AttributeError, TypeError):
        raise DefinitionError(f"{what} decorates a function or a workflow, not {target!r}") from None
    return target


def schema_of(fn: Any) -> StepSchema | None:
    """The :class:`StepSchema` a step function was decorated with, if any."""
    found = getattr(fn, _SCHEMA_ATTR, None)
    return found if isinstance(found, StepSchema) else None


def compression_of(obj: Any) -> Compression | None:
    """The :class:`Compression` a step function, a step or a workflow was given, if any."""
    found = getattr(obj, _COMPRESS_ATTR, None)
    if isinstance(found, Compression):
        return found
    found = getattr(obj, "compress", None)
    return found if isinstance(found, Compression) else None


_FOUND: weakref.WeakKeyDictionary[Any, tuple[Compression | None]] = weakref.WeakKeyDictionary()


def compression_in(definition: Any) -> Compression | None:
    """The :class:`Compression` of a workflow: its own, its function's, else its steps'.

    A graph workflow's steps (at any depth) may carry one (``Step(compress=...)`` or a
    decorated function); two different ones are a :class:`~orchestrate.errors.DefinitionError`.
    Read once per workflow (a registered workflow no longer changes).
    """
    try:
        cached = _FOUND.get(definition)
    except TypeError:
        return _compression_in(definition)
    if cached is None:
        cached = _FOUND[definition] = (_compression_in(definition),)
    return cached[0]


def _compression_in(definition: Any) -> Compression | None:
    own = compression_of(definition) or compression_of(getattr(definition, "fn", None))
    if own is not None:
        return own
    found: list[Compression] = []
    stack: list[tuple[Any, int]] = [(node, 0) for node in getattr(definition, "nodes", ())]
    handler = getattr(definition, "error_handler", None)
    if handler is not None:
        stack.append((handler, 0))
    while stack:
        node, depth = stack.pop()
        if depth > 64:
            continue
        setting = compression_of(node)
        if setting is not None and setting not in found:
            found.append(setting)
        inner: list[Any] = [*getattr(node, "nodes", ()), *getattr(node, "body", ())]
        for attr in ("node", "workflow"):
            child = getattr(node, attr, None)
            if child is not None:
                inner.extend(getattr(child, "nodes", [child]) if attr == "workflow" else [child])
        for _, _, route in getattr(node, "cases", ()):
            inner.extend(route if isinstance(route, list) else ())
        default = getattr(node, "default_route", None)
        inner.extend(default if isinstance(default, list) else ())
        stack.extend((child, depth + 1) for child in inner)
    if len(found) > 1:
        name = getattr(definition, "name", "?")
        raise DefinitionError(
            f"workflow {name!r}: its steps give two compress_after settings ({found[0]}, {found[1]}); keep one"
        )
    return found[0] if found else None


def _kind(value: Any) -> str:
    return "None" if value is None else f"a {type(value).__name__}"


def resolve_schema(given: Any, fn: Callable[..., Any] | None, where: str) -> StepSchema | None:
    """The schema of a step: the one given, else its function's; both must agree.

    Raises:
        DefinitionError: ``given`` is not a StepSchema, or differs from the function's.
    """
    if given is not None and not isinstance(given, StepSchema):
        raise DefinitionError(f"{where}: schema must be a StepSchema(keep=[...], discard=[...]), got {given!r}")
    decorated = schema_of(fn) if fn is not None else None
    if given is not None and decorated is not None and given != decorated:
        raise DefinitionError(f"{where}: schema= differs from the StepSchema its function is decorated with")
    return given if given is not None else decorated
