"""The nodes of a graph workflow: steps, branches, parallel branches, maps and loops.

Each validates its own arguments when built and raises
:class:`~orchestrate.errors.DefinitionError` naming the place; the workflow checks how they
fit together (:mod:`orchestrate.workflow`).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TypedDict, Unpack

from orchestrate._definitions.calls import CallPlan
from orchestrate.errors import DefinitionError
from orchestrate.policies import (
    Cache,
    Fallback,
    Isolation,
    Retry,
    Seconds,
    StepPolicy,
    Timeout,
    _check_step_options,
)
from orchestrate.review.gate import HumanReviewGate, TieredGate
from orchestrate.state import Compression, StepSchema, compression_of, resolve_schema

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.:-]*$")


def _check_name(name: Any, where: str) -> str:
    if not isinstance(name, str) or not _NAME.match(name):
        raise DefinitionError(
            f"{where}: name must be a non-empty identifier-like string (letters, digits, _ . : -), got {name!r}"
        )
    return name


class Node:
    """Base of the nodes of a graph workflow."""

    name: str


class StepOptions(TypedDict, total=False):
    """The free-form options a :class:`Step` takes besides its settings (``ctx.options``).

    The keywords are closed for the type checker, so that a misspelt setting
    (``retires=3``) is a type error, as it is a :class:`~orchestrate.errors.DefinitionError`
    when the step is built; others still reach the step at run time.
    """

    model: str  # the model (or component) the step calls; also names the step's component
    pipeline: str  # the component that serves the step
    threshold: float  # a score the step compares against
    prompt: str  # the prompt of a model step
    temperature: float  # a model step's sampling temperature
    max_tokens: int  # a model step's output limit
    top_k: int  # how many results a retrieval step returns
    target: str  # where the step sends its output
    role: str  # the role or persona of an agent step


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
        isolation: where a sync function runs: ``"auto"`` (default: on the event loop
            once its calls have proved quick, else in a thread), ``"thread"`` (always a
            thread), ``"process"`` (killable on timeout) or ``"inline"`` (always on the loop).
        min_budget: when less run time than this is left, go straight to the fallback.
        gate: a review gate; the run parks after the step until a person decides.
        schema: a :class:`~orchestrate.StepSchema`: the fields of the output that later
            steps receive and the record keeps (default: the one the function is
            decorated with, if any).
        compress: :func:`~orchestrate.compress_after`: the run stores the values it
            records after that step compressed (default: the function's decorator's).
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
    isolation: Isolation = "auto"
    min_budget: Seconds | None = None
    gate: Any = None
    schema: StepSchema | None = None
    compress: Compression | None = None
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
        isolation: Isolation = "auto",
        min_budget: Seconds | None = None,
        gate: HumanReviewGate | TieredGate | None = None,
        schema: StepSchema | None = None,
        compress: Compression | None = None,
        **options: Unpack[StepOptions],
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
        self.options: dict[str, Any] = dict(options)
        # state that stays small (orchestrate.state): given here, or by the function's decorators
        self.schema = resolve_schema(schema, fn, where)
        if compress is not None and not isinstance(compress, Compression):
            raise DefinitionError(f"{where}: compress must be compress_after(step=..., strategy=...), got {compress!r}")
        self.compress = compress if compress is not None else compression_of(fn) if fn is not None else None
        self.policy = StepPolicy.build(
            retry=given[0] if given else None,
            timeout=timeout,
            fallback=fallback,
            cache=cache,
            max_concurrency=max_concurrency,
            isolation=isolation,
            min_budget=min_budget,
            schema=self.schema,
            where=where,
        )
        self.plan = CallPlan.of(fn, where) if fn is not None else None
        if self.plan is not None and self.schema is not None:
            self.schema.check(self.plan.returns, where)

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
            # a component's decorators count as the function's would
            self.schema = resolve_schema(self.schema, self.fn, where)
            if self.compress is None:
                self.compress = compression_of(self.fn)
            if self.schema is not None:
                self.policy = self.policy.replace(schema=self.schema)
                self.schema.check(self.plan.returns, where)
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
