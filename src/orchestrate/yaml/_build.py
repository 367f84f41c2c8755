"""Turning a validated YAML definition into the Python API's objects.

Every node becomes what its Python twin would write (``Step(...)``, ``Branch(...)``,
``HumanReviewGate(...)``...), passing only the keys the file gives so that the defaults
are the Python API's own: a YAML workflow and its twin have the same version. Problems
found while building (a function that cannot be imported, a step with no function, a
value the Python API refuses) are collected with their place in the file and raised
together as one :class:`YamlDefinitionError`.
"""

from __future__ import annotations

import builtins
import difflib
import functools
import importlib
import json
import os
import sys
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar, get_args, get_origin

from pydantic import Tag, ValidationError

from orchestrate import errors as orchestrate_errors
from orchestrate.errors import DefinitionError
from orchestrate.models.base import Model, ModelResult
from orchestrate.policies import Cache, ExponentialBackoff, Fallback, FixedRetry, Retry, Timeout, parse_duration
from orchestrate.review.gate import Default, Escalate, HumanReviewGate, RouteTo, Tier, TieredGate
from orchestrate.state import Compression, StepSchema, compress_after
from orchestrate.workflow import Branch, Loop, Map, Node, Parallel, Step, SubWorkflow, Workflow
from orchestrate.yaml._errors import Problem, YamlDefinitionError, from_validation, is_tag, show_path
from orchestrate.yaml._expr import Expression, ExpressionError
from orchestrate.yaml._monitors import build_monitor, declare, step_names
from orchestrate.yaml._scalars import Spec
from orchestrate.yaml._schema import (
    TAGS,
    BranchSpec,
    CachedFallbackSpec,
    CacheSpec,
    CallFallbackSpec,
    ComponentSpec,
    CompressSpec,
    DefaultActionSpec,
    EscalateActionSpec,
    EscalateSpec,
    ExponentialRetrySpec,
    FixedRetrySpec,
    GateSpec,
    LoopSpec,
    MapSpec,
    ParallelSpec,
    RouteActionSpec,
    SkipFallbackSpec,
    StepSpec,
    SubWorkflowSpec,
    TieredGateSpec,
    TimeoutSpec,
    ValueFallbackSpec,
    WorkflowSpec,
)
from orchestrate.yaml._source import Document, parse

Loc = tuple[Any, ...]
T = TypeVar("T")

_REDUCERS = ("list", "concat", "merge", "sum")


class _Failed(Exception):  # noqa: N818 - a control signal inside the builder, never raised out of it
    """A problem was recorded; the part being built is left out."""


def model_step(model: Model) -> Callable[[Any], Awaitable[ModelResult]]:
    """A step function that asks ``model``: a string is sent as the user's message.

    A mapping with a ``prompt`` string sends that prompt; any other value is sent as
    JSON. The step returns the :class:`~orchestrate.models.ModelResult`, so its model,
    tokens and cost are in the step's record. YAML definitions use this for components
    that are models; a Python twin passes ``components={"gpt-4o": model_step(gpt4o)}``.
    """

    async def ask_model(prompt: Any) -> ModelResult:
        if isinstance(prompt, Mapping) and isinstance(prompt.get("prompt"), str):
            prompt = prompt["prompt"]
        text = prompt if isinstance(prompt, str) else json.dumps(prompt, ensure_ascii=False, default=str)
        return await model.chat(text)

    ask_model.__qualname__ = ask_model.__name__ = f"ask_model[{model.model_id}]"
    return ask_model


def allowed_keys(loc: Sequence[Any]) -> list[str]:
    """The keys the schema allows at ``loc`` (a path from the workflow's top, union tags included)."""
    current: Any = WorkflowSpec
    for item in loc:
        if is_tag(item):
            current = TAGS.get(item) or _member(current, item)
            continue
        current = _unwrap(current)
        if isinstance(current, type) and issubclass(current, Spec):
            field = _fields(current).get(item) if isinstance(item, str) else None
            if field is None:
                return []
            current = field.annotation
        elif get_origin(current) is list:
            current = get_args(current)[0]
        elif get_origin(current) is dict:
            current = get_args(current)[1]
        else:
            return []
    current = _unwrap(current)
    return list(_fields(current)) if isinstance(current, type) and issubclass(current, Spec) else []


def _fields(spec: type[Spec]) -> dict[str, Any]:
    """A spec's fields by the key written in a file (``schema``, not the attribute ``schema_``)."""
    return {field.alias or name: field for name, field in spec.model_fields.items()}


def _member(annotation: Any, tag: str) -> Any:
    """The member of a tagged union that ``tag`` selects (``None`` when there is none)."""
    for member in get_args(_unwrap(annotation)):
        if any(isinstance(m, Tag) and m.tag == tag for m in getattr(member, "__metadata__", ())):
            return member
    return None


def _unwrap(annotation: Any) -> Any:
    """Strip ``Annotated`` and ``None`` from a field's annotation, keeping a single member."""
    while True:
        args = get_args(annotation)
        if hasattr(annotation, "__metadata__"):
            annotation = args[0]
            continue
        members = [a for a in args if a is not type(None)]
        if args and get_origin(annotation) not in (list, dict) and len(members) == 1:
            annotation = members[0]
            continue
        return annotation


class Builder:
    """Builds one file's workflow; sub-workflow files get their own builder."""

    def __init__(
        self,
        document: Document,
        *,
        components: Mapping[str, Any],
        workflows: Mapping[str, Workflow],
        base_dir: Path | None,
        stack: tuple[Path, ...],
    ) -> None:
        self.doc = document
        self.given = dict(components)
        self.workflows = dict(workflows)
        self.base_dir = base_dir
        self.stack = stack
        self.problems: list[Problem] = []
        self.raw: dict[str, Any] = {}  # components by name: functions and models, as built
        self.specs: dict[str, tuple[ComponentSpec, Loc]] = {}
        self.building: list[str] = []
        self.failed: set[str] = set()  # components whose problem is recorded already

    # problems -------------------------------------------------------------------------------

    def problem(self, loc: Loc, message: str, *, key: bool = False, offset: int | None = None) -> _Failed:
        position = self.doc.locate(loc, key=key, offset=offset)
        self.problems.append(Problem(self.doc.source, position.line, position.column, show_path(loc), message))
        return _Failed()

    def attempt(self, loc: Loc, build: Callable[[], T]) -> T:
        """Call ``build``; a DefinitionError from the Python API becomes a problem at ``loc``."""
        try:
            return build()
        except YamlDefinitionError as exc:
            self.problems.extend(exc.problems)
            raise _Failed() from None
        except DefinitionError as exc:
            raise self.problem(loc, str(exc)) from None

    # the workflow --------------------------------------------------------------------------

    def workflow(self) -> Workflow:
        try:
            spec = WorkflowSpec.model_validate(self.doc.data)
        except ValidationError as exc:
            raise YamlDefinitionError(from_validation(exc, self.doc, allowed_keys)) from None
        for name, component in spec.components.items():
            full = component if isinstance(component, ComponentSpec) else ComponentSpec(use=component)
            self.specs[name] = (full, ("components", name))
        for name in spec.components:
            try:
                self.component(name)
            except _Failed:
                pass
        steps = self.nodes(spec.steps, ("steps",))
        handler = None
        if spec.error_handler is not None:
            try:
                handler = self.step(spec.error_handler, ("error_handler",))
            except _Failed:
                pass
        monitors = self.monitors(spec, steps)
        if self.problems:
            raise YamlDefinitionError(self.problems)
        options: dict[str, Any] = {}
        for key in ("version", "timeout", "max_concurrency", "state_store"):
            if getattr(spec, key) is not None:
                options[key] = getattr(spec, key)
        try:
            built = Workflow(
                spec.name,
                steps,
                error_handler=handler,
                components=self.callables(),
                description=spec.description,
                **options,
            )
            if spec.compress_after is not None:  # the run's values after that step, compressed
                wanted = spec.compress_after
                compress_after(step=wanted.step, strategy=wanted.strategy, level=wanted.level)(built)
            declare(built, monitors)
            return built
        except DefinitionError as exc:
            self.problem(("steps",), str(exc), key=True)
            raise YamlDefinitionError(self.problems) from None

    def monitors(self, spec: WorkflowSpec, steps: Sequence[Node]) -> list[Any]:
        """The file's monitors, each watching a step of ``steps`` (problems recorded)."""
        names = [*step_names(steps), *([spec.error_handler.step] if spec.error_handler is not None else [])]

        def resolve(ref: str, loc: Loc) -> Any:
            return self.resolve(ref, loc, "function")

        built: list[Any] = []
        for i, entry in enumerate(spec.monitors):
            loc = ("monitors", i)
            try:
                monitor = build_monitor(
                    entry, workflow=spec.name, steps=names, problem=self.problem, loc=loc, resolve=resolve
                )
            except _Failed:
                continue
            if monitor is None:
                continue
            if any(m.name == monitor.name for m in built):
                where = (*loc, "name") if entry.name is not None else loc
                self.problem(where, f"two monitors are named {monitor.name!r}; give one a different name")
                continue
            built.append(monitor)
        return built

    def callables(self) -> dict[str, Callable[..., Any]]:
        """Every component as a step function (models are asked with :func:`model_step`)."""
        out: dict[str, Callable[..., Any]] = {}
        for name, obj in {**self.given, **self.raw}.items():
            if isinstance(obj, Model) and not callable(obj):
                out[name] = model_step(obj)
            elif callable(obj):
                out[name] = obj
        return out

    # components ---------------------------------------------------------------------------

    def component(self, name: str) -> Any:
        if name in self.raw:
            return self.raw[name]
        if name in self.failed:
            raise _Failed()
        if name not in self.specs:
            return self.given[name]
        spec, loc = self.specs[name]
        if name in self.building:
            cycle = " -> ".join([*self.building[self.building.index(name) :], name])
            raise self.problem((*loc, "use"), f"components use each other in a circle: {cycle}")
        self.building.append(name)
        try:
            obj = self.resolve(spec.use, (*loc, "use"), "component", own=name)
            if spec.rate_limit is not None or spec.circuit_breaker is not None:
                obj = self.guarded(name, obj, spec, loc)
            elif not (callable(obj) or isinstance(obj, Model)):
                raise self.problem((*loc, "use"), f"{spec.use!r} is {_a(obj)}, not a function or a model")
        except _Failed:
            self.failed.add(name)
            raise
        finally:
            self.building.pop()
        self.raw[name] = obj
        return obj

    def guarded(self, name: str, obj: Any, spec: ComponentSpec, loc: Loc) -> Any:
        from orchestrate.models.reliability import CircuitBreaker, CircuitBreakerModel, RateLimitedModel, RateLimiter

        if not isinstance(obj, Model):
            key = "rate_limit" if spec.rate_limit is not None else "circuit_breaker"
            raise self.problem(
                (*loc, key),
                f"{key} wraps a model, but {spec.use!r} is {_a(obj)}; "
                "for a function, put the limit inside it (orchestrate.models.RateLimiter, CircuitBreaker)",
                key=True,
            )
        model: Model = obj
        if spec.rate_limit is not None:
            limits = {k: v for k, v in spec.rate_limit.model_dump().items() if v is not None}
            limiter = self.attempt((*loc, "rate_limit"), lambda: RateLimiter(**limits, name=name))
            model = RateLimitedModel(model, limiter)
        if spec.circuit_breaker is not None:
            breaker_spec = spec.circuit_breaker
            where = (*loc, "circuit_breaker")
            options: dict[str, Any] = {
                "failure_threshold": breaker_spec.failure_threshold,
                "window": None if breaker_spec.window is None else _seconds(breaker_spec.window),
                "recovery_timeout": _seconds(breaker_spec.recovery_timeout),
                "half_open_max_requests": breaker_spec.half_open_max_requests,
            }
            if breaker_spec.failure_codes is not None:
                options["failure_codes"] = [
                    self.failure_code(code, (*where, "failure_codes", i))
                    for i, code in enumerate(breaker_spec.failure_codes)
                ]
            breaker = self.attempt(where, lambda: CircuitBreaker(**options, name=name))
            fallback = None
            if breaker_spec.fallback is not None:
                fallback = self.resolve(breaker_spec.fallback, (*where, "fallback"), "model")
                if not isinstance(fallback, Model):
                    raise self.problem(
                        (*where, "fallback"), f"the breaker's fallback must be a model, got {_a(fallback)}"
                    )
            model = CircuitBreakerModel(model, breaker, fallback=fallback)
        return model

    def failure_code(self, code: Any, loc: Loc) -> Any:
        if isinstance(code, int) or code in ("timeout", "connection", "invalid_output"):
            return code
        return self.exception(code, loc)

    # references ----------------------------------------------------------------------------

    def resolve(self, ref: str, loc: Loc, what: str, *, own: str | None = None) -> Any:
        """A component by name, else an object imported from ``package.module:attribute``."""
        if ref == own and ref in self.given:
            return self.given[ref]  # a YAML component wrapping the given one of the same name
        if ref != own and (ref in self.specs or ref in self.given):
            return self.component(ref)
        module_name, colon, attribute = ref.partition(":")
        if not colon or not module_name or not attribute:
            known = sorted({*self.specs, *self.given} - {own})
            close = difflib.get_close_matches(ref, known, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise self.problem(
                loc,
                f"no component named {ref!r}{hint}; define it under components: ({ref}: package.module:function), "
                f"pass it to load(components={{{ref!r}: ...}}), or give an import path package.module:{ref}",
            )
        self.importable()
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name and module_name.startswith(exc.name):
                where = f" (looked next to {self.doc.source} and on sys.path)" if self.base_dir else ""
                raise self.problem(
                    loc,
                    f"cannot import {what} {ref!r}: no module named {module_name!r}{where}; "
                    f"install it, put {module_name.replace('.', '/')}.py next to the YAML file, "
                    f"or pass the {what} to load(components=...)",
                ) from None
            raise self.problem(loc, f"importing {module_name!r} failed: {type(exc).__name__}: {exc}") from None
        except Exception as exc:  # noqa: BLE001 - user code may raise anything while importing
            raise self.problem(loc, f"importing {module_name!r} failed: {type(exc).__name__}: {exc}") from None
        found: Any = module
        for part in attribute.split("."):
            if not hasattr(found, part):
                names = [n for n in dir(found) if not n.startswith("_")]
                close = difflib.get_close_matches(part, names, n=1)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                raise self.problem(
                    loc, f"cannot import {what} {ref!r}: {module_name!r} has no attribute {part!r}{hint}"
                )
            found = getattr(found, part)
        return found

    def importable(self) -> None:
        # As `python file.py` would: modules next to the YAML file can be imported.
        if self.base_dir is not None and str(self.base_dir) not in sys.path:
            sys.path.insert(0, str(self.base_dir))

    def function(self, ref: str, loc: Loc, what: str = "function") -> Callable[..., Any]:
        obj = self.resolve(ref, loc, what)
        if isinstance(obj, Model) and not callable(obj):
            return model_step(obj)
        if not callable(obj):
            raise self.problem(loc, f"{ref!r} is {_a(obj)}, not a {what}")
        return obj  # type: ignore[no-any-return]

    def exception(self, ref: str, loc: Loc) -> type[BaseException]:
        found = getattr(builtins, ref, None) or getattr(orchestrate_errors, ref, None)
        if found is None:
            if ":" not in ref:
                raise self.problem(
                    loc,
                    f"unknown exception type {ref!r}: name a built-in one (TimeoutError, ConnectionError...), "
                    "one of orchestrate.errors (RateLimitedError, ServerError...), or package.module:ErrorClass",
                )
            found = self.resolve(ref, loc, "exception type")
        if not (isinstance(found, type) and issubclass(found, BaseException)):
            raise self.problem(loc, f"{ref!r} is {_a(found)}, not an exception type")
        return found

    def expression(self, text: str, loc: Loc) -> Expression:
        try:
            return Expression(text)
        except ExpressionError as exc:
            raise self.problem(loc, f"invalid expression {text!r}: {exc.reason}", offset=exc.column) from None

    # nodes ---------------------------------------------------------------------------------

    def nodes(self, specs: Sequence[Any], loc: Loc) -> list[Node]:
        built: list[Node] = []
        for i, spec in enumerate(specs):
            try:
                built.append(self.node(spec, (*loc, i)))
            except _Failed:
                pass
        return built

    def node(self, spec: Any, loc: Loc) -> Node:
        if isinstance(spec, StepSpec):
            return self.step(spec, loc)
        if isinstance(spec, BranchSpec):
            return self.branch(spec, loc)
        if isinstance(spec, ParallelSpec):
            nodes = self.nodes(spec.steps, (*loc, "steps"))
            self.complete(nodes, spec.steps)
            return self.attempt(
                loc,
                lambda: Parallel(
                    nodes, max_workers=spec.max_workers, merge=spec.merge, name=spec.parallel or "parallel"
                ),
            )
        if isinstance(spec, MapSpec):
            return self.map(spec, loc)
        if isinstance(spec, LoopSpec):
            body = self.nodes(spec.steps, (*loc, "steps"))
            self.complete(body, spec.steps)
            return self.attempt(
                loc,
                lambda: Loop(
                    body,
                    until=spec.until,
                    max_iterations=spec.max_iterations,
                    on_exhausted=spec.on_exhausted,
                    name=spec.loop or "loop",
                ),
            )
        if isinstance(spec, SubWorkflowSpec):
            return self.subworkflow(spec, loc)
        raise self.problem(loc, f"unknown node {type(spec).__name__}")  # pragma: no cover - the schema decides

    @staticmethod
    def complete(built: Sequence[Node], specs: Sequence[Any]) -> None:
        if len(built) != len(specs):
            raise _Failed()  # a problem inside was recorded already

    def step(self, spec: StepSpec, loc: Loc) -> Step:
        fn = None
        if spec.call is not None:
            fn = self.function(spec.call, (*loc, "call"))
        else:
            known = {*self.given, *self.specs}
            wanted = [spec.step, spec.model, spec.pipeline]
            if not any(isinstance(key, str) and key in known for key in wanted):
                named = " or ".join(repr(k) for k in wanted if k is not None)
                raise self.problem(
                    (*loc, "step"),
                    f"step {spec.step!r} has no function: add call: package.module:function, or define a component "
                    f"named {named} (under components:, or in load(components=...))",
                )
            for key in (spec.step, spec.model, spec.pipeline):
                if isinstance(key, str) and key in known:
                    self.component(key)
                    break
        if spec.failover_model is not None:
            if spec.failover_model not in {*self.given, *self.specs}:
                raise self.problem(
                    (*loc, "failover_model"),
                    f"failover_model {spec.failover_model!r} is not a component; define it under components: "
                    "or pass it to load(components=...)",
                )
            self.component(spec.failover_model)
        reserved = sorted(set(spec.options) & {*_fields(StepSpec), "name", "fn", "retries", "retry_policy"})
        if reserved:
            raise self.problem(
                (*loc, "options", reserved[0]),
                f"{reserved[0]!r} is a step setting, not a free-form option: write it at the step's top level",
                key=True,
            )
        options: dict[str, Any] = {}
        if spec.model is not None:
            options["model"] = spec.model
        if spec.pipeline is not None:
            options["pipeline"] = spec.pipeline
        options.update(spec.options)
        policy: dict[str, Any] = {}
        timeout, cache = spec.timeout, spec.cache
        if isinstance(timeout, TimeoutSpec):
            policy["timeout"] = self.attempt((*loc, "timeout"), lambda: Timeout(**_given(timeout)))
        elif timeout is not None:
            policy["timeout"] = timeout
        if spec.retry is not None:
            policy["retry"] = self.retry(spec.retry, (*loc, "retry"))
        if spec.fallback is not None:
            policy["fallback"] = (
                [self.fallback(item, (*loc, "fallback", i)) for i, item in enumerate(spec.fallback)]
                if isinstance(spec.fallback, list)
                else self.fallback(spec.fallback, (*loc, "fallback"))
            )
        if spec.failover_model is not None:
            policy["failover_model"] = spec.failover_model
        if isinstance(cache, CacheSpec):
            policy["cache"] = self.attempt((*loc, "cache"), lambda: Cache(cache.ttl))
        elif cache is not None:
            policy["cache"] = cache
        if spec.max_concurrency is not None:
            policy["max_concurrency"] = spec.max_concurrency
        if spec.given("isolation"):
            policy["isolation"] = spec.isolation
        if spec.min_budget is not None:
            policy["min_budget"] = spec.min_budget
        if spec.gate is not None:
            policy["gate"] = self.gate(spec.gate, (*loc, "gate"))
        if spec.schema_ is not None:  # state that stays small (orchestrate.state)
            kept = spec.schema_
            policy["schema"] = self.attempt((*loc, "schema"), lambda: StepSchema(keep=kept.keep, discard=kept.discard))
        if spec.compress is not None:
            policy["compress"] = self.compression(spec.compress, (*loc, "compress"))
        return self.attempt(loc, lambda: Step(spec.step, fn, **policy, **options))

    def compression(self, spec: CompressSpec, loc: Loc) -> Compression:
        """``compress_after(step=..., strategy=..., level=...)``."""
        return self.attempt(loc, lambda: compress_after(step=spec.step, strategy=spec.strategy, level=spec.level))

    def retry(self, spec: Any, loc: Loc) -> int | Retry:
        if isinstance(spec, int):
            return spec
        errors: dict[str, Any] = {}
        for key in ("retry_on", "give_up_on"):
            names = getattr(spec, key)
            if names is not None:
                errors[key] = tuple(self.exception(name, (*loc, key, i)) for i, name in enumerate(names))
        if isinstance(spec, FixedRetrySpec):
            fixed = {k: getattr(spec, k) for k in ("delay", "jitter") if getattr(spec, k) is not None}
            return self.attempt(loc, lambda: FixedRetry(spec.max_attempts, **fixed, **errors))
        assert isinstance(spec, ExponentialRetrySpec)
        keys = ("initial_delay", "backoff", "max_delay", "jitter")
        exponential = {k: getattr(spec, k) for k in keys if getattr(spec, k) is not None}
        return self.attempt(loc, lambda: ExponentialBackoff(spec.max_attempts, **exponential, **errors))

    def fallback(self, spec: Any, loc: Loc) -> Fallback:
        if spec == "skip":
            return Fallback.skip()
        if spec == "cached":
            return Fallback.cached()
        flag = {"flag": spec.flag} if spec.flag is not None else {}
        if isinstance(spec, ValueFallbackSpec):
            return self.attempt(loc, lambda: Fallback.value(spec.value, **flag))
        if isinstance(spec, CallFallbackSpec):
            fn = self.function(spec.call, (*loc, "call"))
            return self.attempt(loc, lambda: Fallback.call(fn, **flag))
        if isinstance(spec, CachedFallbackSpec):
            age = {"max_age": spec.max_age} if spec.max_age is not None else {}
            return self.attempt(loc, lambda: Fallback.cached(**age, **flag))
        assert isinstance(spec, SkipFallbackSpec)
        return self.attempt(loc, lambda: Fallback.skip(**flag))

    # gates ---------------------------------------------------------------------------------

    def gate(self, spec: Any, loc: Loc) -> HumanReviewGate | TieredGate:
        if isinstance(spec, TieredGateSpec):
            return self.tiered(spec, loc)
        return self.review(spec, loc)

    def review(self, spec: GateSpec, loc: Loc) -> HumanReviewGate:
        options: dict[str, Any] = {}
        for key in GateSpec.model_fields:
            if key in spec.model_fields_set and key not in ("on_timeout", "notify", "warn_before"):
                options[key] = getattr(spec, key)
        if spec.on_timeout is not None:
            options["on_timeout"] = self.action(spec.on_timeout, (*loc, "on_timeout"))
        if spec.warn_before is not None:
            options["warn_before"] = 0 if _seconds(spec.warn_before) == 0 else spec.warn_before
        if spec.notify:
            options["notify"] = [
                target
                if target.startswith(("http://", "https://"))
                else self.function(target, (*loc, "notify", i), "hook")
                for i, target in enumerate(spec.notify)
            ]
        return self.attempt(loc, lambda: HumanReviewGate(**options))

    def action(self, spec: Any, loc: Loc) -> Any:
        if isinstance(spec, str):
            return spec
        if isinstance(spec, EscalateActionSpec):
            return self.escalate(spec.escalate, (*loc, "escalate"))
        if isinstance(spec, DefaultActionSpec):
            return Default(spec.default)
        assert isinstance(spec, RouteActionSpec)
        return self.attempt(loc, lambda: RouteTo(spec.route_to))

    def escalate(self, spec: EscalateSpec, loc: Loc) -> Escalate:
        options: dict[str, Any] = {}
        for key in ("timeout", "priority"):
            if key in spec.model_fields_set:
                options[key] = getattr(spec, key)
        if spec.warn_before is not None:
            options["warn_before"] = 0 if _seconds(spec.warn_before) == 0 else spec.warn_before
        if "on_timeout" in spec.model_fields_set:
            options["on_timeout"] = self.action(spec.on_timeout, (*loc, "on_timeout"))
        return self.attempt(loc, lambda: Escalate(spec.to, **options))

    def tiered(self, spec: TieredGateSpec, loc: Loc) -> TieredGate:
        on_text = spec.on
        expression = self.expression(on_text, (*loc, "on"))
        on: Any = on_text if expression.path is not None and expression.path[0] != "value" else expression
        tiers = []
        for i, tier in enumerate(spec.tiers):
            where = (*loc, "tiers", i)
            gate = self.review(tier.review, (*where, "review")) if tier.review is not None else None
            extra: dict[str, Any] = {}
            if tier.when is not None:
                extra["when"] = tier.when
            if tier.name is not None:
                extra["name"] = tier.name
            tiers.append(self.attempt(where, functools.partial(Tier, tier.at_least, gate, **extra)))
        otherwise = self.review(spec.otherwise, (*loc, "otherwise")) if spec.otherwise is not None else None
        extra_options = {"at": spec.at} if spec.given("at") else {}
        return self.attempt(loc, lambda: TieredGate(on, tiers, otherwise=otherwise, **extra_options))

    # routing and the other nodes --------------------------------------------------------------

    def route(self, spec: Any, loc: Loc) -> Any:
        if isinstance(spec, str):
            return spec
        if isinstance(spec, list):
            nodes = self.nodes(spec, loc)
            self.complete(nodes, spec)
            return nodes
        return self.node(spec, loc)

    def branch(self, spec: BranchSpec, loc: Loc) -> Branch:
        default = self.route(spec.default, (*loc, "default")) if spec.default is not None else None
        failed = False
        if spec.routes is not None:
            routes: dict[Any, Any] = {}
            for key, route in spec.routes.items():
                try:
                    routes[key] = self.route(route, (*loc, "routes", key))
                except _Failed:
                    failed = True
            if failed:
                raise _Failed()
            return self.attempt(loc, lambda: Branch(spec.on, routes, default=default, name=spec.branch))
        if spec.rules is not None:
            pairs = []
            for i, rule in enumerate(spec.rules):
                try:
                    pairs.append((rule.when, self.route(rule.then, (*loc, "rules", i, "then"))))
                except _Failed:
                    failed = True
            if failed:
                raise _Failed()
            return self.attempt(loc, lambda: Branch(spec.on, pairs, default=default, name=spec.branch))
        tiers = []
        for i, tier in enumerate(spec.tiers or ()):
            try:
                tiers.append((tier.at_least, self.route(tier.then, (*loc, "tiers", i, "then"))))
            except _Failed:
                failed = True
        if failed:
            raise _Failed()
        return self.attempt(loc, lambda: Branch.tiers(spec.on, tiers, otherwise=default, name=spec.branch))

    def map(self, spec: MapSpec, loc: Loc) -> Map:
        each = self.node(spec.each, (*loc, "each"))
        reduce: Any = spec.reduce
        if reduce not in _REDUCERS:
            reduce = self.function(spec.reduce, (*loc, "reduce"), "reduce function")
        return self.attempt(
            loc, lambda: Map(each, over=spec.over, max_workers=spec.max_workers, reduce=reduce, name=spec.map)
        )

    def subworkflow(self, spec: SubWorkflowSpec, loc: Loc) -> SubWorkflow:
        if spec.file is not None:
            path = Path(spec.file)
            if not path.is_absolute():
                path = (self.base_dir or Path.cwd()) / path
            path = path.resolve()
            if path in self.stack:
                chain = " -> ".join(p.name for p in (*self.stack, path))
                raise self.problem((*loc, "file"), f"sub-workflow files include each other: {chain}")
            if not path.is_file():
                raise self.problem((*loc, "file"), f"no such file: {spec.file!r} (looked for {path})")
            inner = self.attempt(
                (*loc, "file"),
                lambda: load_file(path, components=self.given, workflows=self.workflows, stack=(*self.stack, path)),
            )
        else:
            ref = spec.workflow or ""
            found = self.workflows.get(ref)
            if found is None:
                if ":" not in ref:
                    known = ", ".join(sorted(self.workflows)) or "none"
                    raise self.problem(
                        (*loc, "workflow"),
                        f"no workflow named {ref!r} was given to load(workflows=...) (given: {known}); "
                        "name a YAML file with file:, or give an import path package.module:workflow",
                    )
                found = self.resolve(ref, (*loc, "workflow"), "workflow")
            if not isinstance(found, Workflow):
                raise self.problem((*loc, "workflow"), f"{ref!r} is {_a(found)}, not a graph Workflow")
            inner = found
        return self.attempt(loc, lambda: SubWorkflow(inner, name=spec.subworkflow))


def _given(spec: Spec) -> dict[str, Any]:
    return {key: getattr(spec, key) for key in spec.model_fields_set}


def _seconds(value: Any) -> float:
    return parse_duration(value) if isinstance(value, str) else float(value)


def _a(obj: Any) -> str:
    kind = type(obj).__name__
    return f"{'an' if kind[:1].lower() in 'aeiou' else 'a'} {kind}"


# entry points ------------------------------------------------------------------------------------


def build(
    text: str,
    *,
    source: str,
    components: Mapping[str, Any] | None,
    workflows: Mapping[str, Workflow] | Sequence[Workflow] | None,
    base_dir: Path | None,
    stack: tuple[Path, ...] = (),
) -> Workflow:
    """Parse, validate and build one workflow (see :func:`orchestrate.yaml.loads`)."""
    if components is not None and not isinstance(components, Mapping):
        raise DefinitionError(f"components must be a mapping of names to functions or models, got {components!r}")
    by_name: dict[str, Workflow] = {}
    if isinstance(workflows, Mapping):
        by_name = dict(workflows)
    elif workflows is not None:
        for wf in workflows:
            if not isinstance(wf, Workflow):
                raise DefinitionError(f"workflows must hold graph Workflows, got {wf!r}")
            by_name[wf.name] = wf
    document = parse(text, source)
    builder = Builder(document, components=components or {}, workflows=by_name, base_dir=base_dir, stack=stack)
    return builder.workflow()


def load_file(
    path: str | os.PathLike[str],
    *,
    components: Mapping[str, Any] | None,
    workflows: Mapping[str, Workflow] | Sequence[Workflow] | None,
    stack: tuple[Path, ...] = (),
) -> Workflow:
    """Read and build the workflow of a YAML file (see :func:`orchestrate.yaml.load`)."""
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise YamlDefinitionError([Problem(str(path), 1, 1, "", "no such file")]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise YamlDefinitionError([Problem(str(path), 1, 1, "", f"cannot read the file: {exc}")]) from None
    resolved = file.resolve()
    return build(
        text,
        source=str(path),
        components=components,
        workflows=workflows,
        base_dir=resolved.parent,
        stack=stack or (resolved,),
    )
