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
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Generic, TypeVar, overload

from orchestrate._definitions import seam
from orchestrate._definitions.calls import CallPlan, source_of
from orchestrate._definitions.nodes import (
    Branch,
    Loop,
    Map,
    Node,
    Parallel,
    Reducer,
    Route,
    Step,
    _check_name,
    as_node,
)
from orchestrate._definitions.seam import block_on
from orchestrate.errors import DefinitionError, InvalidInputError
from orchestrate.policies import Seconds, to_seconds
from orchestrate.state import Compression, StepSchema

if TYPE_CHECKING:
    from orchestrate._engine.context import RunContext
    from orchestrate.store.base import Store

Out = TypeVar("Out")
"""What a durable function returns."""

__all__ = [
    "AnyWorkflow",
    "Branch",
    "CallPlan",
    "DurableFunction",
    "Loop",
    "Map",
    "Node",
    "Orchestrator",
    "Parallel",
    "Reducer",
    "Route",
    "Step",
    "SubWorkflow",
    "Workflow",
    "as_node",
    "workflow",
]


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
        engine = await seam.default_engine(self.state_store)
        return await engine.run(self, _input(input, kwargs))

    def run_sync(self, input: Any = None, /, **kwargs: Any) -> Any:
        """:meth:`run` for code without an event loop: a script, a notebook cell written
        without ``await``.

        Runs on this thread's own event loop, kept between calls (the process's default
        engines hold connections tied to it), and returns the output.

        Raises:
            RuntimeError: called from async code (an event loop is running on this
                thread): ``await wf.run(...)`` there instead.
            RunFailedError: the run ended failed, dead or cancelled.
            ApprovalRequired: the run parked waiting for a person.
        """
        return block_on(self.run(input, **kwargs))

    async def start(self, input: Any = None, /, **kwargs: Any) -> str:
        """Create a run for a worker to execute; return its id."""
        engine = await seam.default_engine(self.state_store)
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


class DurableFunction(Generic[Out]):
    """A workflow written as ``async def fn(ctx, input)`` calling ``await ctx.step(...)``.

    Build it with :func:`workflow`. Replays must call the same steps in the same order;
    a divergence raises :class:`~orchestrate.errors.NonDeterminismError` before any side
    effect runs. ``Out`` is what the function returns: :meth:`run` has that type.
    """

    def __init__(
        self,
        fn: Callable[[RunContext, Any], Awaitable[Out]],
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
            text = f"{self.name}|{source_of(self.fn)}"
            self._fingerprint = hashlib.sha256(text.encode()).hexdigest()[:12]
        return self._fingerprint

    def freeze(self) -> None:
        """Nothing to validate beyond construction."""

    async def run(self, input: Any = None, /, **kwargs: Any) -> Out:
        """Run to the end in this process and return the output (see :meth:`Workflow.run`).

        Raises:
            RunFailedError: the run ended failed, dead or cancelled.
            ApprovalRequired: the run parked waiting for a person.
        """
        engine = await seam.default_engine(self.state_store)
        output: Out = await engine.run(self, _input(input, kwargs))
        return output

    def run_sync(self, input: Any = None, /, **kwargs: Any) -> Out:
        """:meth:`run` for code without an event loop (a script, a notebook cell without
        ``await``); see :meth:`Workflow.run_sync`."""
        return block_on(self.run(input, **kwargs))

    async def start(self, input: Any = None, /, **kwargs: Any) -> str:
        """Create a run for a worker to execute; return its id."""
        engine = await seam.default_engine(self.state_store)
        return await engine.start(self, _input(input, kwargs))

    async def __call__(self, ctx: RunContext, input: Any) -> Out:
        return await self.fn(ctx, input)

    def __repr__(self) -> str:
        return f"<DurableFunction {self.name!r} version={self.version!r}>"


AnyWorkflow = Workflow | DurableFunction[Any]
"""A workflow of either kind."""


@overload
def workflow(
    fn: Callable[..., Awaitable[Out]],
    *,
    name: str | None = None,
    version: str | None = None,
    timeout: Seconds | None = None,
    max_concurrency: int | None = None,
    state_store: str | Store | None = None,
) -> DurableFunction[Out]: ...


@overload
def workflow(
    fn: None = None,
    *,
    name: str | None = None,
    version: str | None = None,
    timeout: Seconds | None = None,
    max_concurrency: int | None = None,
    state_store: str | Store | None = None,
) -> Callable[[Callable[..., Awaitable[Out]]], DurableFunction[Out]]: ...


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

    def wrap(f: Callable[..., Awaitable[Any]]) -> DurableFunction[Any]:
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
    if callable(obj) and not isinstance(obj, Node | StepSchema | Compression):  # those two decorate, by their fields
        # A closure's captured numbers and strings are part of what it does
        # (``Branch.tiers`` thresholds): the same source with another threshold is another version.
        cells = getattr(obj, "__closure__", None) or ()
        captured = [repr(c.cell_contents) for c in cells if _scalar_cell(c)]
        return source_of(obj) + (f"|{','.join(captured)}" if captured else "")
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
