"""Workflow definitions: flow charts of steps, and durable async functions.

A graph workflow is a list of nodes run in sequence, each node's output being the next
one's input:

* :class:`Step` — call a function under a policy (timeout, retry, fallback, cache...);
* :class:`Branch` — choose a route on a value or on confidence tiers;
* :class:`Parallel` — run several nodes on the same input (fan-out / fan-in);
* :class:`Map` — run a node over every item of a runtime list, then reduce;
* :class:`Loop` — repeat a body until a condition holds, at most ``max_iterations``;
* :class:`SubWorkflow` — embed another workflow.

A durable function is an ``async def`` taking a :class:`~orchestrate.RunContext` and
calling ``await ctx.step(fn, ...)``; see :func:`workflow`.

Definitions are validated when built; every problem raises
:class:`~orchestrate.errors.DefinitionError` naming the workflow and the place.
"""

from __future__ import annotations

import hashlib
import inspect
import math
import re
import types
import typing
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Literal, Union, overload

from orchestrate.errors import DefinitionError, InvalidInputError
from orchestrate.policies import (
    Cache,
    Fallback,
    Isolation,
    Retry,
    Seconds,
    StepPolicy,
    Timeout,
    _check_step_options,
    to_seconds,
)

if TYPE_CHECKING:
    from orchestrate._engine.context import RunContext
    from orchestrate.store.base import Store

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.:-]*$")


def _check_name(name: Any, where: str) -> str:
    if not isinstance(name, str) or not _NAME.match(name):
        raise DefinitionError(
            f"{where}: name must be a non-empty identifier-like string (letters, digits, _ . : -), got {name!r}"
        )
    return name


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


class Node:
    """Base of the nodes of a graph workflow."""

    name: str


@dataclass(eq=False)
class Step(Node):
    """Call a function under a policy.

    Args:
        name: unique name in the workflow (the step key).
        fn: the function (sync or async). If omitted, the workflow's ``components``
            provide it, looked up by ``name``, then by the ``model`` or ``pipeline`` option.
        timeout: per-attempt timeout in seconds, or a :class:`Timeout`.
        retries: retries after the first attempt (an alias of ``retry``).
        retry: a count of retries or a :class:`Retry`.
        retry_policy: alias of ``retry`` (``ExponentialBackoff(...)``, ``FixedRetry(...)``).
        fallback: a :class:`Fallback` or a chain of them.
        failover_model: name of a component to call when the step fails (a fallback).
        cache: a TTL in seconds or a :class:`Cache`.
        max_concurrency: most executions of this step at once in a process.
        isolation: ``"thread"`` (default for sync functions), ``"process"`` (killable
            on timeout) or ``"inline"`` (run on the event loop; for trivial sync code).
        min_budget: when less run time than this is left, go straight to the fallback.
        gate: a review gate; the run parks after the step until a person decides.
        options: free-form settings (``model=``, ``threshold=``...) readable as
            ``ctx.options`` by the step. Names that read as engine behaviour the step
            does not have (``on_fail=``, ``retry_on=``, ``max_retries=``...) and typos of
            the keywords above are refused, naming the setting to use instead
            (``on_fail="block"`` is ``fallback=Fallback.value(<blocked result>)``).
    """

    name: str
    fn: Callable[..., Any] | None = None
    timeout: Seconds | Timeout | None = None
    retries: int | None = None
    retry: int | Retry | None = None
    retry_policy: Retry | None = None
    fallback: Fallback | Sequence[Fallback] | None = None
    failover_model: str | None = None
    cache: Seconds | Cache | None = None
    max_concurrency: int | None = None
    isolation: Isolation = "thread"
    min_budget: Seconds | None = None
    gate: Any = None
    options: dict[str, Any] = field(default_factory=dict)
    policy: StepPolicy = field(init=False, repr=False)
    plan: CallPlan | None = field(init=False, repr=False, default=None)

    def __init__(
        self,
        name: str,
        fn: Callable[..., Any] | None = None,
        *,
        timeout: Seconds | Timeout | None = None,
        retries: int | None = None,
        retry: int | Retry | None = None,
        retry_policy: Retry | None = None,
        fallback: Fallback | Sequence[Fallback] | None = None,
        failover_model: str | None = None,
        cache: Seconds | Cache | None = None,
        max_concurrency: int | None = None,
        isolation: Isolation = "thread",
        min_budget: Seconds | None = None,
        gate: Any = None,
        **options: Any,
    ) -> None:
        where = f"step {name!r}"
        self.name = _check_name(name, "Step")
        given = [r for r in (retries, retry, retry_policy) if r is not None]
        if len(given) > 1:
            raise DefinitionError(f"{where}: give only one of retries=, retry=, retry_policy=")
        self.fn = fn
        self.timeout, self.retries, self.retry, self.retry_policy = (
            timeout,
            retries,
            retry,
            retry_policy,
        )
        self.fallback, self.failover_model, self.cache = fallback, failover_model, cache
        self.max_concurrency, self.isolation, self.min_budget = max_concurrency, isolation, min_budget
        if failover_model is not None and not (isinstance(failover_model, str) and failover_model):
            raise DefinitionError(
                f"{where}: failover_model must be the name of a component, got {failover_model!r}; "
                "to call a function use fallback=Fallback.call(fn)"
            )
        _check_gate(gate, where)
        self.gate = gate
        _check_step_options(options, where=where)
        self.options = options
        self.policy = StepPolicy.build(
            retry=given[0] if given else None,
            timeout=timeout,
            fallback=fallback,
            cache=cache,
            max_concurrency=max_concurrency,
            isolation=isolation,
            min_budget=min_budget,
            where=where,
        )
        self.plan = CallPlan.of(fn, where) if fn is not None else None

    def bind(self, components: Mapping[str, Callable[..., Any]], where: str) -> None:
        """Resolve the function from ``components`` when none was given; add failover."""
        if self.fn is None:
            for key in (self.name, self.options.get("model"), self.options.get("pipeline")):
                if isinstance(key, str) and key in components:
                    self.fn = components[key]
                    break
            else:
                raise DefinitionError(
                    f"{where}: step {self.name!r} has no function: pass fn, or give the "
                    f"workflow a component named {self.name!r}"
                    + (f" or {self.options['model']!r}" if "model" in self.options else "")
                )
            self.plan = CallPlan.of(self.fn, where)
        if self.failover_model is not None:
            backup = components.get(self.failover_model)
            if backup is None:
                raise DefinitionError(f"{where}: failover_model {self.failover_model!r} is not a component")
            if not any(f.kind == "call" and f.fn is backup for f in self.policy.fallback):
                chain = (*self.policy.fallback, Fallback.call(backup))
                self.policy = self.policy.replace(fallback=chain)


def _check_gate(gate: Any, where: str) -> None:
    if gate is None:
        return
    from orchestrate.review.gate import HumanReviewGate, TieredGate  # the review package imports this module

    if not isinstance(gate, HumanReviewGate | TieredGate):
        raise DefinitionError(f"{where}: gate must be a HumanReviewGate or TieredGate, got {gate!r}")


Route = Node | Sequence[Node] | str | Callable[..., Any]


@dataclass(eq=False)
class Branch(Node):
    """Choose a route.

    Args:
        on: what to decide on: ``None`` (the incoming value), a path
            ``"step_name.field"`` into a recorded step output, or a function of the
            incoming value.
        routes: either a mapping from decided values to routes, or a list of
            ``(predicate, route)`` pairs tried in order. A route is a node, a list of
            nodes (run in sequence on the incoming value), or the name of a later step
            of the workflow to jump to.
        default: the route when nothing matches (else the run fails, naming the value).
        name: the branch's name in the timeline.
    """

    on: str | Callable[[Any], Any] | None
    routes: Mapping[Any, Route] | Sequence[tuple[Callable[[Any], bool], Route]]
    default: Route | None = None
    name: str = ""

    def __init__(
        self,
        on: str | Callable[[Any], Any] | None,
        routes: Mapping[Any, Route] | Sequence[tuple[Callable[[Any], bool], Route]],
        *,
        default: Route | None = None,
        name: str | None = None,
    ) -> None:
        self.on = on
        self.routes = routes
        self.default = default
        label = on if isinstance(on, str) else getattr(on, "__name__", "value")
        self.name = _check_name(name or f"branch:{label}".replace("<lambda>", "fn"), "Branch")
        where = f"Branch {self.name!r}"
        # Normalised once: (label, key or predicate, route) with routes as a step name
        # (a forward jump) or a list of nodes.
        self.cases: list[tuple[str, Any, str | list[Node]]] = []
        self.by_key: dict[Any, str | list[Node]] | None = None
        if isinstance(routes, Mapping):
            self.by_key = {}
            for key, route in routes.items():
                norm = _norm_route(route, f"{where} route {key!r}")
                self.by_key[key] = norm
                self.cases.append((repr(key), key, norm))
        elif isinstance(routes, Sequence) and not isinstance(routes, str):
            for i, item in enumerate(routes):
                if not (isinstance(item, tuple) and len(item) == 2 and callable(item[0])):
                    raise DefinitionError(f"{where}: routes[{i}] must be a (predicate, route) pair")
                self.cases.append((f"routes[{i}]", item[0], _norm_route(item[1], f"{where} routes[{i}]")))
        else:
            raise DefinitionError(f"{where}: routes must be a mapping or a list of (predicate, route)")
        self.default_route = None if default is None else _norm_route(default, f"{where} default")
        if not self.cases and self.default_route is None:
            raise DefinitionError(f"{where}: has no routes")

    @classmethod
    def tiers(
        cls,
        on: str | Callable[[Any], Any] | None,
        tiers: Sequence[tuple[float, Route]],
        *,
        otherwise: Route | None = None,
        name: str | None = None,
    ) -> Branch:
        """Confidence tiers: the first ``(threshold, route)`` whose threshold the score reaches.

        ``Branch.tiers("score", [(0.8, send), (0.5, review)], otherwise=escalate)``.
        """
        where = f"Branch.tiers {name or (on if isinstance(on, str) else 'value')!r}"
        if isinstance(tiers, str) or not isinstance(tiers, Sequence):
            raise DefinitionError(f"{where}: tiers must be a list of (threshold, route) pairs, got {tiers!r}")
        for i, tier in enumerate(tiers):
            if not (isinstance(tier, tuple) and len(tier) == 2):
                raise DefinitionError(f"{where}: tiers[{i}] must be a (threshold, route) pair, got {tier!r}")
            threshold = tier[0]
            if isinstance(threshold, bool) or not isinstance(threshold, int | float) or not math.isfinite(threshold):
                raise DefinitionError(f"{where}: tiers[{i}] threshold must be a finite number, got {threshold!r}")
        ordered = sorted(tiers, key=lambda t: t[0], reverse=True)
        pairs = [(_at_least(threshold), route) for threshold, route in ordered]
        return cls(on, pairs, default=otherwise, name=name)


def _norm_route(route: Any, where: str) -> str | list[Node]:
    if isinstance(route, str):
        return route
    if isinstance(route, Sequence):
        return [as_node(n, where) for n in route]
    return [as_node(route, where)]


def _at_least(threshold: float) -> Callable[[Any], bool]:
    def check(score: Any) -> bool:
        return isinstance(score, int | float) and score >= threshold

    check.__name__ = f">={threshold}"
    return check


@dataclass(eq=False)
class Parallel(Node):
    """Run several nodes on the same input at once; the output is the list of their outputs.

    Args:
        nodes: the branches.
        max_workers: most branches running at once.
        merge: ``"list"`` (in order) or ``"dict"`` (by node name).
    """

    nodes: Sequence[Node]
    max_workers: int | None = None
    merge: Literal["list", "dict"] = "list"
    name: str = "parallel"

    def __init__(
        self,
        nodes: Sequence[Node | Callable[..., Any]],
        *,
        max_workers: int | None = None,
        merge: Literal["list", "dict"] = "list",
        name: str = "parallel",
    ) -> None:
        if isinstance(nodes, str) or not isinstance(nodes, Sequence):
            raise DefinitionError(
                f"Parallel {name!r}: nodes must be a list of steps, nodes or functions, "
                f"got a {type(nodes).__name__}; wrap it in a list"
            )
        self.nodes = [as_node(n, f"Parallel {name!r}") for n in nodes]
        self.max_workers = max_workers
        self.merge = merge
        self.name = _check_name(name, "Parallel")


Reducer = Literal["list", "concat", "merge", "sum"] | Callable[[list[Any]], Any]


@dataclass(eq=False)
class Map(Node):
    """Run ``node`` over each item of a list known only at run time, then reduce.

    Args:
        node: what to run per item (a step or a function).
        over: a function of the incoming value giving the list (default: the value).
        max_workers: most items in flight at once.
        reduce: ``"list"``, ``"concat"`` (flatten lists), ``"merge"`` (dicts),
            ``"sum"``, or a function of the list of outputs.
        name: the map's name; item ``i`` is recorded as ``name[i]``.
    """

    node: Node
    over: Callable[[Any], Sequence[Any]] | None = None
    max_workers: int | None = None
    reduce: Reducer = "list"
    name: str = "map"

    def __init__(
        self,
        node: Node | Callable[..., Any],
        *,
        over: Callable[[Any], Sequence[Any]] | None = None,
        max_workers: int | None = None,
        reduce: Reducer = "list",
        name: str | None = None,
    ) -> None:
        self.node = as_node(node, "Map")
        if over is not None and not callable(over):
            raise DefinitionError(
                f"Map {name or self.node.name!r}: over must be a function of the incoming value, got {over!r}"
            )
        self.over = over
        self.max_workers = max_workers
        self.reduce = reduce
        self.name = _check_name(name or self.node.name, "Map")


@dataclass(eq=False)
class Loop(Node):
    """Repeat ``body`` until ``until(output)`` is true, at most ``max_iterations`` times.

    Args:
        body: nodes run in sequence each iteration; each iteration gets the previous
            iteration's output.
        until: the exit condition on an iteration's output.
        max_iterations: the bound (required: loops without one are rejected).
        on_exhausted: ``"continue"`` with the last output, or ``"fail"`` the run.
        name: the loop's name; iteration ``i`` records its steps under ``name#i/``.
    """

    body: Sequence[Node]
    until: Callable[[Any], bool]
    max_iterations: int
    on_exhausted: Literal["continue", "fail"] = "continue"
    name: str = "loop"

    def __init__(
        self,
        body: Node | Callable[..., Any] | Sequence[Node | Callable[..., Any]],
        *,
        until: Callable[[Any], bool],
        max_iterations: int | None = None,
        on_exhausted: Literal["continue", "fail"] = "continue",
        name: str = "loop",
    ) -> None:
        self.name = _check_name(name, "Loop")
        items = body if isinstance(body, Sequence) else [body]
        self.body = [as_node(n, f"Loop {name!r}") for n in items]
        if not callable(until):
            raise DefinitionError(f"Loop {name!r}: until must be a function of the output")
        self.until = until
        if (
            max_iterations is None
            or isinstance(max_iterations, bool)
            or not isinstance(max_iterations, int)
            or max_iterations < 1
        ):
            raise DefinitionError(f"Loop {name!r} is unbounded: give max_iterations >= 1 (got {max_iterations!r})")
        self.max_iterations = max_iterations
        if on_exhausted not in ("continue", "fail"):
            raise DefinitionError(f"Loop {name!r}: on_exhausted must be 'continue' or 'fail'")
        self.on_exhausted = on_exhausted


@dataclass(eq=False)
class SubWorkflow(Node):
    """Run another graph workflow as one node; its steps are recorded as ``name/step``."""

    workflow: Workflow
    name: str = ""

    def __init__(self, workflow: Workflow, *, name: str | None = None) -> None:
        if not isinstance(workflow, Workflow):
            raise DefinitionError(f"SubWorkflow needs a Workflow, got {workflow!r}")
        self.workflow = workflow
        self.name = _check_name(name or workflow.name, "SubWorkflow")


def as_node(item: Any, where: str) -> Node:
    """Accept nodes and plain functions (a function becomes a step named after it)."""
    if isinstance(item, Node):
        return item
    to_node = getattr(item, "__orchestrate_node__", None)
    if callable(to_node):
        node: Node = to_node()
        return node
    if callable(item):
        return Step(getattr(item, "__name__", "step"), item)
    raise DefinitionError(f"{where}: expected a step, node or function, got {item!r}")


class Workflow:
    """A graph workflow: named, versioned, validated when built.

    Args:
        name: the workflow's name.
        steps: nodes (or plain functions) run in sequence.
        version: an explicit version, a non-empty string (``version="5"``); by default a
            fingerprint of the definition and of its functions' source code, so any
            change makes a new version.
        error_handler: a step run with a failure report when the run fails.
        timeout: the run's time budget in seconds (deadline from the run's start).
        max_concurrency: most runs of this workflow executing at once in a process.
        components: functions for steps declared without one (by step name or model).
        state_store: store URL used by :meth:`run` when no engine is given
            (``"sqlite"``, ``"memory"``, ``"postgresql"`` or a full URL).
    """

    def __init__(
        self,
        name: str,
        steps: Sequence[Node | Callable[..., Any]] | None = None,
        *,
        version: str | None = None,
        error_handler: Step | Callable[..., Any] | None = None,
        timeout: Seconds | None = None,
        max_concurrency: int | None = None,
        components: Mapping[str, Callable[..., Any]] | None = None,
        state_store: str | Store | None = None,
        description: str = "",
    ) -> None:
        self.name = _check_name(name, "Workflow")
        where = f"workflow {name!r}"
        if not isinstance(description, str):
            raise DefinitionError(f"{where}: description must be a string, got {description!r}")
        self.description = description
        self._version = _check_version(version, where)
        self._fingerprint: str | None = None
        self.components = _check_components(components, where)
        self.timeout = to_seconds(timeout, what=f"{where}: timeout")
        self.max_concurrency = _check_max_concurrency(max_concurrency, where)
        self.state_store = _check_state_store(state_store, where)
        if steps is not None and (isinstance(steps, str) or not isinstance(steps, Sequence)):
            raise DefinitionError(
                f"{where}: steps must be a list of steps, nodes or functions, got a {type(steps).__name__}; "
                "wrap it in a list"
            )
        self.nodes: list[Node] = [as_node(s, where) for s in steps or []]
        handler = as_node(error_handler, f"workflow {name!r}: error_handler") if error_handler is not None else None
        if handler is not None and not isinstance(handler, Step):
            raise DefinitionError(f"workflow {name!r}: error_handler must be a Step")
        self.error_handler: Step | None = handler
        self._frozen = False
        if self.nodes:
            self.validate()

    # building ---------------------------------------------------------------------------
    def add_step(self, node: Node | Callable[..., Any]) -> Workflow:
        """Append a node (before the first run); returns the workflow for chaining."""
        if self._frozen:
            raise DefinitionError(f"workflow {self.name!r} already ran; build a new one (a new version) instead")
        self.nodes.append(as_node(node, f"workflow {self.name!r}"))
        self._fingerprint = None
        self.validate()
        return self

    def freeze(self) -> None:
        """Validate once more and forbid further changes (done at registration)."""
        if not self._frozen:
            self.validate()
            self._frozen = True

    @property
    def version(self) -> str:
        """The explicit version, or a fingerprint of the definition and its code."""
        if self._version is not None:
            return self._version
        if self._fingerprint is None:
            self._fingerprint = hashlib.sha256(_describe(self).encode()).hexdigest()[:12]
        return self._fingerprint

    # validation -------------------------------------------------------------------------
    def validate(self) -> None:
        """Check the whole definition; raise :class:`DefinitionError` naming the place."""
        if not self.nodes:
            raise DefinitionError(f"workflow {self.name!r} has no steps")
        _Validator(self).run()

    # running ----------------------------------------------------------------------------
    async def run(self, input: Any = None, /, **kwargs: Any) -> Any:
        """Run to the end in this process and return the output.

        Keyword arguments become the input dict (``run(form_id="F-1")``).

        Raises:
            RunFailedError: the run ended failed, dead or cancelled.
            ApprovalRequired: the run parked waiting for a person.
        """
        from orchestrate._engine.runner import default_engine

        engine = await default_engine(self.state_store)
        return await engine.run(self, _input(input, kwargs))

    async def start(self, input: Any = None, /, **kwargs: Any) -> str:
        """Create a run for a worker to execute; return its id."""
        from orchestrate._engine.runner import default_engine

        engine = await default_engine(self.state_store)
        return await engine.start(self, _input(input, kwargs))

    def __repr__(self) -> str:
        return f"<Workflow {self.name!r} version={self.version!r} steps={len(self.nodes)}>"


Orchestrator = Workflow
"""``Orchestrator(name=...)`` with ``add_step(Step(...))``, as in the seeds: a :class:`Workflow`."""


def _check_version(version: Any, where: str) -> str | None:
    if version is None:
        return None
    if not isinstance(version, str):
        raise DefinitionError(f'{where}: version must be a string, got {version!r}; pass version="{version}"')
    if not version.strip():
        raise DefinitionError(f'{where}: version must be a non-empty string; pass e.g. version="1", or leave it out')
    return version


def _check_max_concurrency(value: Any, where: str) -> int | None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise DefinitionError(f"{where}: max_concurrency must be >= 1 (an int, or None for no limit), got {value!r}")
    return value


def _check_components(components: Any, where: str) -> dict[str, Callable[..., Any]]:
    if components is None:
        return {}
    if not isinstance(components, Mapping):
        raise DefinitionError(f"{where}: components must be a mapping of names to functions, got {components!r}")
    for key, fn in components.items():
        if not isinstance(key, str) or not callable(fn):
            raise DefinitionError(f"{where}: components[{key!r}] must map a name to a function, got {fn!r}")
    return dict(components)


def _check_state_store(state_store: Any, where: str) -> Any:
    if state_store is None:
        return None
    if isinstance(state_store, str):
        if not state_store:
            raise DefinitionError(f"{where}: state_store must be a store URL, got ''; leave it out for the default")
        return state_store
    from orchestrate.store.base import Store  # imported here: the store package is heavier than definitions

    if not isinstance(state_store, Store):
        raise DefinitionError(f"{where}: state_store must be a store URL or a Store, got {state_store!r}")
    return state_store


def _input(value: Any, kwargs: dict[str, Any]) -> Any:
    if kwargs:
        if value is not None:
            raise InvalidInputError("give the input either positionally or as keywords, not both")
        return dict(kwargs)
    return value


class DurableFunction:
    """A workflow written as ``async def fn(ctx, input)`` calling ``await ctx.step(...)``.

    Build it with :func:`workflow`. Replays must call the same steps in the same order;
    a divergence raises :class:`~orchestrate.errors.NonDeterminismError` before any side
    effect runs.
    """

    def __init__(
        self,
        fn: Callable[[RunContext, Any], Awaitable[Any]],
        *,
        name: str,
        version: str | None,
        timeout: Seconds | None,
        max_concurrency: int | None,
        state_store: str | Store | None,
    ) -> None:
        if not inspect.iscoroutinefunction(fn):
            raise DefinitionError(f"durable workflow {name!r} must be an async def")
        self.fn = fn
        self.name = _check_name(name, "workflow")
        where = f"workflow {name!r}"
        self._version = _check_version(version, where)
        self.timeout = to_seconds(timeout, what=f"{where}: timeout")
        self.max_concurrency = _check_max_concurrency(max_concurrency, where)
        self.state_store = _check_state_store(state_store, where)
        self.error_handler: Step | None = None
        self.components: dict[str, Callable[..., Any]] = {}
        self.description = inspect.getdoc(fn) or ""
        self._fingerprint: str | None = None

    @property
    def version(self) -> str:
        """The explicit version, or a fingerprint of the function's source."""
        if self._version is not None:
            return self._version
        if self._fingerprint is None:
            text = f"{self.name}|{_source(self.fn)}"
            self._fingerprint = hashlib.sha256(text.encode()).hexdigest()[:12]
        return self._fingerprint

    def freeze(self) -> None:
        """Nothing to validate beyond construction."""

    run = Workflow.run
    start = Workflow.start

    async def __call__(self, ctx: RunContext, input: Any) -> Any:
        return await self.fn(ctx, input)

    def __repr__(self) -> str:
        return f"<DurableFunction {self.name!r} version={self.version!r}>"


AnyWorkflow = Workflow | DurableFunction


@overload
def workflow(
    fn: Callable[..., Awaitable[Any]],
    *,
    name: str | None = None,
    version: str | None = None,
    timeout: Seconds | None = None,
    max_concurrency: int | None = None,
    state_store: str | Store | None = None,
) -> DurableFunction: ...


@overload
def workflow(
    fn: None = None,
    *,
    name: str | None = None,
    version: str | None = None,
    timeout: Seconds | None = None,
    max_concurrency: int | None = None,
    state_store: str | Store | None = None,
) -> Callable[[Callable[..., Awaitable[Any]]], DurableFunction]: ...


def workflow(
    fn: Callable[..., Awaitable[Any]] | None = None,
    *,
    name: str | None = None,
    version: str | None = None,
    timeout: Seconds | None = None,
    max_concurrency: int | None = None,
    state_store: str | Store | None = None,
) -> Any:
    """Declare a durable-function workflow::

    @workflow(version="1")
    async def support(ctx: RunContext, message: str) -> dict:
        intent = await ctx.step(classify, message, retry=3, timeout=5)
        ...
    """

    def wrap(f: Callable[..., Awaitable[Any]]) -> DurableFunction:
        return DurableFunction(
            f,
            name=name or f.__name__,
            version=version,
            timeout=timeout,
            max_concurrency=max_concurrency,
            state_store=state_store,
        )

    return wrap(fn) if fn is not None else wrap


# fingerprints ---------------------------------------------------------------------------


def _source(obj: Any) -> str:
    target = getattr(obj, "__wrapped__", obj)
    try:
        return inspect.getsource(target)
    except (OSError, TypeError):
        return f"{getattr(target, '__module__', '')}.{getattr(target, '__qualname__', repr(type(target)))}"


def _scalar_cell(cell: Any) -> bool:
    try:
        return isinstance(cell.cell_contents, str | int | float | bool)
    except ValueError:  # an empty cell
        return False


def _describe(obj: Any, depth: int = 0) -> str:
    """A stable text of a definition (no memory addresses) for version fingerprints."""
    if depth > 20:
        return "..."
    if isinstance(obj, Workflow):
        handler = _describe(obj.error_handler, depth + 1) if obj.error_handler else ""
        inner = ",".join(_describe(n, depth + 1) for n in obj.nodes)
        return f"Workflow({obj.name};{obj.timeout};[{inner}];{handler})"
    if isinstance(obj, type):
        return f"{obj.__module__}.{obj.__qualname__}"
    if callable(obj) and not isinstance(obj, Node):
        # A closure's captured numbers and strings are part of what it does
        # (``Branch.tiers`` thresholds): the same source with another threshold is another version.
        cells = getattr(obj, "__closure__", None) or ()
        captured = [repr(c.cell_contents) for c in cells if _scalar_cell(c)]
        return _source(obj) + (f"|{','.join(captured)}" if captured else "")
    if isinstance(obj, str | int | float | bool | type(None)):
        return repr(obj)
    if isinstance(obj, timedelta):
        return f"timedelta({obj.total_seconds()!r})"
    if isinstance(obj, Mapping):
        return "{" + ",".join(f"{_describe(k)}:{_describe(v, depth + 1)}" for k, v in obj.items()) + "}"
    if isinstance(obj, Sequence):
        return "[" + ",".join(_describe(v, depth + 1) for v in obj) + "]"
    fields = getattr(obj, "__dataclass_fields__", None)
    if fields is not None:
        parts = [f"{k}={_describe(getattr(obj, k), depth + 1)}" for k in fields if k not in ("plan",)]
        return f"{type(obj).__name__}({';'.join(parts)})"
    return type(obj).__name__


# validation -----------------------------------------------------------------------------


class _Validator:
    """Checks one scope (the workflow, a loop body, a map item, a sub-workflow)."""

    def __init__(self, wf: Workflow, scope: str = "") -> None:
        self.wf = wf
        self.scope = scope
        self.names: dict[str, str] = {}
        self.order: dict[str, int] = {}

    def fail(self, where: str, message: str) -> DefinitionError:
        return DefinitionError(f"workflow {self.wf.name!r}: {self.scope}{where}: {message}")

    def run(self) -> None:
        self.check(self.wf.nodes, "steps")
        if self.wf.error_handler is not None:
            self.node(self.wf.error_handler, "error_handler")

    def check(self, nodes: Sequence[Node], where: str) -> None:
        for i, node in enumerate(nodes):
            self.order[node.name] = i
        for i, node in enumerate(nodes):
            self.node(node, f"{where}[{i}]", position=i)

    def seq(self, nodes: Sequence[Node], where: str) -> None:
        for i, node in enumerate(nodes):
            self.node(node, f"{where}[{i}]")

    def nested(self, nodes: Sequence[Node], where: str) -> None:
        child = _Validator(self.wf, f"{self.scope}{where}: ")
        child.check(nodes, "body")

    def register(self, node: Node, where: str) -> None:
        if node.name in self.names:
            raise self.fail(
                where,
                f"duplicate name {node.name!r} (also at {self.names[node.name]}); "
                "names are step keys and must be unique",
            )
        self.names[node.name] = where

    def node(self, node: Node, where: str, position: int | None = None) -> None:
        where = f"{where} {type(node).__name__.lower()} {node.name!r}"
        self.register(node, where)
        if isinstance(node, Step):
            node.bind(self.wf.components, f"workflow {self.wf.name!r}: {self.scope}{where}")
        elif isinstance(node, Branch):
            self.branch(node, where, position)
        elif isinstance(node, Parallel):
            if not node.nodes:
                raise self.fail(where, "has no branches")
            self.workers(node.max_workers, where)
            if node.merge not in ("list", "dict"):
                raise self.fail(where, f"merge must be 'list' or 'dict', got {node.merge!r}")
            self.seq(node.nodes, f"{where}.nodes")
        elif isinstance(node, Map):
            self.workers(node.max_workers, where)
            if not (callable(node.reduce) or node.reduce in ("list", "concat", "merge", "sum")):
                raise self.fail(where, f"unknown reduce strategy {node.reduce!r}")
            self.nested([node.node], where)
        elif isinstance(node, Loop):
            self.nested(node.body, where)
        elif isinstance(node, SubWorkflow):
            node.workflow.validate()
        else:
            raise self.fail(where, f"unknown node type {type(node).__name__}")

    def workers(self, value: Any, where: str) -> None:
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise self.fail(where, f"max_workers must be >= 1, got {value!r}")

    def branch(self, node: Branch, where: str, position: int | None) -> None:
        if isinstance(node.on, str):
            head = node.on.split(".", 1)[0]
            if head not in self.order and head not in self.names and head != "input":
                raise self.fail(where, f"decides on {node.on!r} but no step named {head!r} is in its scope")
        elif node.on is not None and not callable(node.on):
            raise self.fail(where, f"on must be a path string or a function, got {node.on!r}")
        cases = [(label, route) for label, _, route in node.cases]
        if node.default_route is not None:
            cases.append(("default", node.default_route))
        # Routes are exclusive (one runs), so the same step may appear in several of them
        # (seed 003: Step("auto_block") on two routes); names stay unique within a route
        # and against everything outside the branch.
        before = dict(self.names)
        merged = dict(before)
        for label, route in cases:
            self.names = dict(before)
            self.route(route, f"{where} route {label}", position)
            for name, place in self.names.items():
                merged.setdefault(name, place)
        self.names = merged

    def route(self, route: str | list[Node], where: str, position: int | None) -> None:
        if isinstance(route, str):
            target = self.order.get(route)
            if target is None:
                raise self.fail(where, f"routes to {route!r}, which is not a step in its scope")
            if position is None or target <= position:
                raise self.fail(
                    where,
                    f"routes back to {route!r}; jumps may only go forward (use Loop with max_iterations to repeat)",
                )
            return
        self.seq(route, where)
