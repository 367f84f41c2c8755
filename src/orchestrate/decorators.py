"""Decorator style, as the seeds write it: ``AgentWorkflow`` with ``@wf.step``, and
``@parallel`` / ``@reduce`` / ``@branch`` / ``@fallback`` / ``@gate``.

Decorated functions are durable steps when awaited inside a run (a durable function or
a graph step): recorded in that run under keys numbered in call order, so a resumed run
replays them from the store instead of calling them again. Awaited outside any run they
run under their policies on a throw-away in-memory engine that writes nothing to disk
(a ``@gate`` needs a run to park, and is refused there).
"""

from __future__ import annotations

import asyncio
import functools
import weakref
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Literal, Unpack

from orchestrate._definitions.calls import source_of
from orchestrate._definitions.nodes import StepOptions
from orchestrate._engine.context import RunContext
from orchestrate._engine.defaults import default_engine
from orchestrate._engine.interpreter import RouteError, reduce_outputs
from orchestrate._engine.runner import Engine
from orchestrate._engine.state import current_run
from orchestrate.errors import DefinitionError
from orchestrate.policies import Fallback, Retry, Seconds, Timeout
from orchestrate.review._outcomes import continue_with
from orchestrate.review.gate import HumanReviewGate, TieredGate
from orchestrate.state import Compression, StepSchema
from orchestrate.store import InMemoryStore
from orchestrate.workflow import Map, Node, Step, Workflow, workflow


class AgentWorkflow(Workflow):
    """A sequential workflow built with ``@wf.step(...)`` decorators (seed 001).

    Args:
        name: the workflow's name.
        max_concurrency: most runs executing at once in a process.
        state_store: ``"sqlite"``, ``"memory"``, ``"postgresql"`` or a store URL.
        version, timeout, components: as for :class:`Workflow`.
    """

    def __init__(
        self,
        name: str,
        *,
        max_concurrency: int | None = None,
        state_store: str | None = None,
        version: str | None = None,
        timeout: Seconds | None = None,
        components: dict[str, Callable[..., Any]] | None = None,
    ) -> None:
        super().__init__(
            name,
            [],
            version=version,
            timeout=timeout,
            max_concurrency=max_concurrency,
            state_store=state_store,
            components=components,
        )

    def step(
        self,
        fn: Callable[..., Any] | None = None,
        *,
        name: str | None = None,
        retry: int | Retry | None = None,
        timeout: Seconds | Timeout | None = None,
        fallback: Fallback | Sequence[Fallback] | None = None,
        gate: HumanReviewGate | TieredGate | None = None,
        schema: StepSchema | None = None,
        compress: Compression | None = None,
        **options: Unpack[StepOptions],
    ) -> Any:
        """Append the decorated function as the next step; the function stays callable.

        ``schema`` and ``compress`` are as for :class:`~orchestrate.Step`; a function
        decorated with ``@StepSchema(...)`` or ``@compress_after(...)`` under this
        decorator gets them from there.
        """

        def add(f: Callable[..., Any]) -> Callable[..., Any]:
            self.add_step(
                Step(
                    name or f.__name__,
                    f,
                    retry=retry,
                    timeout=timeout,
                    fallback=fallback,
                    gate=gate,
                    schema=schema,
                    compress=compress,
                    **options,
                )
            )
            return f

        return add(fn) if fn is not None else add


async def _in_run(name: str, body: Callable[[RunContext], Awaitable[Any]]) -> Any:
    """Run ``body`` in the enclosing run, or in a run of its own on a throw-away engine.

    Outside any run the run lives in an in-memory store that is dropped afterwards:
    nothing is written to disk, whatever store the process is configured with.
    """
    ctx = current_run.get()
    if ctx is not None:
        return await body(ctx)

    async def call(ctx: RunContext, _: Any) -> Any:
        return await body(ctx)

    async with Engine(InMemoryStore()) as engine:
        return await engine.run(workflow(call, name=f"call:{name}", version="1"))


class _DurableCall:
    """Base of the decorated functions that are awaited: ``await fn(*args)`` records the
    call as step(s) of the enclosing run, under keys numbered in call order (``name``,
    ``name#2``...), which a replay calls again in the same order and so finds recorded."""

    fn: Callable[..., Any]

    async def __call__(self, *args: Any) -> Any:
        return await _in_run(self.fn.__name__, lambda ctx: self._run_in(ctx, *args))

    async def _run_in(self, ctx: RunContext, *args: Any) -> Any:
        """The call's steps in ``ctx``'s run."""
        raise NotImplementedError


# A run's maps of one function are keyed ``name[i]``, then ``name#2[i]``...; counted per
# execution of the run (a resume makes a new context and counts again from the start).
_MAP_CALLS: weakref.WeakKeyDictionary[RunContext, Counter[str]] = weakref.WeakKeyDictionary()


def _map_prefix(ctx: RunContext, name: str) -> str:
    counts = _MAP_CALLS.setdefault(ctx, Counter())
    counts[name] += 1
    return name if counts[name] == 1 else f"{name}#{counts[name]}"


class ParallelFunction(_DurableCall):
    """A function decorated with :func:`parallel`: ``await fn.map(items)`` fans out.

    ``await fn(item)`` runs it once, as one step.
    """

    def __init__(self, fn: Callable[..., Any], *, max_workers: int, **policy: Any) -> None:
        functools.update_wrapper(self, fn)
        self.fn = fn
        self.max_workers = max_workers
        self.policy = policy

    async def _run_in(self, ctx: RunContext, *args: Any) -> Any:
        return await ctx.step(self.fn, *args, **self.policy)

    async def map(self, items: Sequence[Any]) -> list[Any]:
        """Run the function over ``items``, at most ``max_workers`` at once, each item a
        step keyed ``name[i]`` (``name#2[i]`` for the run's second map of it...)."""
        if not isinstance(items, list | tuple):
            raise DefinitionError(f"{self.fn.__name__}.map needs a list, got {type(items).__name__}")
        values = list(items)
        return list(await _in_run(self.fn.__name__, lambda ctx: self._map_in(ctx, values)))

    async def _map_in(self, ctx: RunContext, items: list[Any]) -> list[Any]:
        prefix = _map_prefix(ctx, self.fn.__name__)
        limit = asyncio.Semaphore(self.max_workers)

        async def one(i: int, item: Any) -> Any:
            async with limit:
                return await ctx.step(self.fn, item, key=f"{prefix}[{i}]", **self.policy)

        return await ctx.gather(*(one(i, item) for i, item in enumerate(items)))

    def __orchestrate_node__(self) -> Node:
        return Map(Step(self.fn.__name__, self.fn, **self.policy), max_workers=self.max_workers)


def parallel(
    *, max_workers: int = 4, retry: int | Retry | None = None, timeout: Seconds | None = None
) -> Callable[[Callable[..., Any]], ParallelFunction]:
    """Make a per-item function fan out with ``await fn.map(items)`` (seed 001)."""
    if not isinstance(max_workers, int) or max_workers < 1:
        raise DefinitionError(f"parallel(max_workers=...) must be >= 1, got {max_workers!r}")
    policy = {k: v for k, v in (("retry", retry), ("timeout", timeout)) if v is not None}
    return lambda fn: ParallelFunction(fn, max_workers=max_workers, **policy)


ReduceStrategy = Literal["list", "concat", "merge", "sum"]


class ReduceFunction(_DurableCall):
    """A function decorated with :func:`reduce`: the strategy is applied before the body.

    ``await fn(results)`` is one step.
    """

    def __init__(self, fn: Callable[..., Any], strategy: ReduceStrategy) -> None:
        functools.update_wrapper(self, fn)
        self.fn = fn
        self.strategy = strategy

        @functools.wraps(fn)
        def reducer(results: list[Any]) -> Any:
            return fn(reduce_outputs(strategy, list(results)))

        self.reducer = reducer

    async def _run_in(self, ctx: RunContext, *args: Any) -> Any:
        if len(args) != 1:
            raise TypeError(f"{self.fn.__name__}() takes the list of results to reduce, got {len(args)} arguments")
        return await ctx.step(self.reducer, list(args[0]))

    def __orchestrate_node__(self) -> Node:
        return Step(self.fn.__name__, self.reducer)


def reduce(*, strategy: ReduceStrategy = "list") -> Callable[[Callable[..., Any]], ReduceFunction]:
    """Declare a reducer of a map's outputs (seed 001: ``@reduce(strategy="concat")``)."""
    if strategy not in ("list", "concat", "merge", "sum"):
        raise DefinitionError(f"reduce strategy must be list, concat, merge or sum, got {strategy!r}")
    return lambda fn: ReduceFunction(fn, strategy)


_STRATEGIES = ("model_switch", "local_model", "cached", "default", "skip")


class FallbackFunction(_DurableCall):
    """A function decorated with :func:`fallback`: awaiting it is one step, with its
    retries and fallback."""

    def __init__(self, fn: Callable[..., Any], policy: dict[str, Any]) -> None:
        functools.update_wrapper(self, fn)
        self.fn = fn
        self.policy = policy

    async def _run_in(self, ctx: RunContext, *args: Any) -> Any:
        return await ctx.step(self.fn, *args, name=self.fn.__name__, **self.policy)

    def __orchestrate_node__(self) -> Node:
        return Step(self.fn.__name__, self.fn, **self.policy)


def fallback(
    strategy: str = "model_switch",
    *,
    to: Callable[..., Any] | None = None,
    value: Any = None,
    max_retries: int = 0,
    timeout: Seconds | None = None,
) -> Callable[[Callable[..., Any]], FallbackFunction]:
    """Give a function retries and a fallback (seed 001: ``@fallback(strategy="model_switch")``).

    Args:
        strategy: ``"model_switch"`` or ``"local_model"`` (call ``to`` with the same
            input), ``"cached"`` (the last good output), ``"default"`` (``value``),
            ``"skip"`` (a partial result).
        to: the backup function for the switching strategies.
        max_retries: retries of the primary before falling back.
    """
    if strategy not in _STRATEGIES:
        raise DefinitionError(f"fallback strategy must be one of {', '.join(_STRATEGIES)}, got {strategy!r}")
    if strategy in ("model_switch", "local_model") and to is None:
        raise DefinitionError(f"fallback(strategy={strategy!r}) needs to=<backup function>")
    if strategy in ("model_switch", "local_model"):
        assert to is not None
        chain = Fallback.call(to)
    elif strategy == "cached":
        chain = Fallback.cached()
    elif strategy == "default":
        chain = Fallback.value(value)
    else:
        chain = Fallback.skip()
    policy: dict[str, Any] = {"retry": Retry(max_attempts=max_retries + 1, initial_delay=0.2), "fallback": chain}
    if strategy == "cached":
        policy["cache"] = 365 * 24 * 3600.0
    if timeout is not None:
        policy["timeout"] = timeout
    return lambda fn: FallbackFunction(fn, policy)


class BranchFunction(_DurableCall):
    """A routing function decorated with :func:`branch`; register handlers with ``.route(key)``.

    ``await fn(value)`` (or ``await fn.run(value)``) decides, as a step keyed by ``on``,
    then runs the chosen handler, as a step named after it.
    """

    def __init__(self, fn: Callable[..., Any], on: str) -> None:
        functools.update_wrapper(self, fn)
        self.fn = fn
        self.on = on
        self.routes: dict[Any, Callable[..., Any]] = {}

    def route(self, key: Any, handler: Callable[..., Any] | None = None) -> Any:
        """Register the handler of a decided value (usable as a decorator)."""

        def add(h: Callable[..., Any]) -> Callable[..., Any]:
            self.routes[key] = h
            return h

        return add(handler) if handler is not None else add

    async def run(self, value: Any, *, state_store: str | None = None) -> Any:
        """Decide, then run the chosen handler: as ``await fn(value)``.

        Args:
            state_store: outside any run, run the branch as a durable run of its own on
                this store (its workflow is :meth:`as_workflow`) instead of a throw-away
                in-memory one.

        Raises:
            DefinitionError: ``state_store`` was given inside a run, where the branch is
                a step of that run.
        """
        if state_store is None:
            return await self(value)
        if current_run.get() is not None:
            raise DefinitionError(
                f"branch {self.fn.__name__!r}: inside a run it is a step of that run; "
                "state_store= is for a run of its own, outside any run"
            )
        engine = await default_engine(state_store)
        return await engine.run(self.as_workflow(), value)

    async def _run_in(self, ctx: RunContext, *args: Any) -> Any:
        key = await ctx.step(self.fn, *args, name=self.on)
        handler = self.routes.get(key)
        if handler is None:
            raise RouteError(
                f"branch {self.on!r}: value {key!r} has no handler (routes: {sorted(map(str, self.routes))})"
            )
        if isinstance(handler, _DurableCall):
            return await handler._run_in(ctx, *args)
        return await ctx.step(handler, *args)

    def as_workflow(self) -> Any:
        """This branch and its handlers as a durable-function workflow."""

        async def dispatch(ctx: RunContext, value: Any) -> Any:
            return await self._run_in(ctx, value)

        dispatch.__qualname__ = dispatch.__name__ = f"branch_{self.fn.__name__}"
        return workflow(dispatch, name=self.fn.__name__, version=_routes_version(self))


def _routes_version(branch: BranchFunction) -> str:
    from orchestrate import _serde

    parts = [source_of(branch.fn)] + [
        f"{k}={source_of(getattr(h, 'fn', h))}" for k, h in sorted(branch.routes.items(), key=str)
    ]
    return _serde.input_hash(parts)[:12]


def branch(*, on: str) -> Callable[[Callable[..., Any]], BranchFunction]:
    """Declare a routing decision (seed 001: ``@branch(on="complexity_score")``)."""
    if not isinstance(on, str) or not on:
        raise DefinitionError("branch(on=...) needs the name of what is decided on")
    return lambda fn: BranchFunction(fn, on)


class GateFunction(_DurableCall):
    """A function decorated with :func:`gate`: a step people must approve.

    Awaited inside a run it is a step followed by a review of its output the run parks
    on, or (``at="before"``) a review of its input followed by the step, which runs only
    once approved; outside any run there is nothing to park, so it is refused.
    """

    def __init__(self, fn: Callable[..., Any], review: HumanReviewGate) -> None:
        functools.update_wrapper(self, fn)
        self.fn = fn
        self.review = review

    def __orchestrate_node__(self) -> Node:
        return Step(self.fn.__name__, self.fn, gate=self.review)

    async def __call__(self, *args: Any) -> Any:
        ctx = current_run.get()
        if ctx is None:
            raise DefinitionError(f"gate {self.fn.__name__!r} needs a run to park: use it as a step of a workflow")
        return await self._run_in(ctx, *args)

    async def _run_in(self, ctx: RunContext, *args: Any) -> Any:
        if self.review.at == "before":
            key = ctx._next_key(self.fn.__name__)
            payload = args[0] if len(args) == 1 else list(args)
            outcome = await ctx.review(payload, gate=self.review, key=key, step=key)
            value, route = continue_with(outcome, rejected=f"the input of step {key!r} was rejected by a reviewer")
            if route is not None:
                return Fallback(route, value)
            return await ctx.step(self.fn, *((value,) if len(args) == 1 else value), key=key)
        output = await ctx.step(self.fn, *args)
        last = ctx.last_key
        assert last is not None  # set by the ctx.step just above
        outcome = await ctx.review(output, gate=self.review, key=last, step=last)
        value, route = continue_with(outcome, rejected=f"step {last!r} was rejected by a reviewer")
        return value if route is None else Fallback(route, value)


def gate(
    *,
    timeout: Seconds | None = None,
    escalate_on_timeout: bool = False,
    required_approvals: Sequence[str] | int = (),
    roles: Sequence[str] = (),
    priority: str = "normal",
    **options: Any,
) -> Callable[[Callable[..., Any]], GateFunction]:
    """Gate a step on people (seed 001: ``@gate(timeout=300, required_approvals=[...])``).

    Other keywords (``at="before"`` to approve the input before the function runs,
    ``escalate_to``, ``on_timeout``, ``on_reject``, ``warn_before``, ``notify``...) are
    those of :class:`~orchestrate.review.HumanReviewGate`.
    """
    review = HumanReviewGate(
        roles=roles,
        required_approvals=required_approvals,
        timeout=timeout,
        escalate_on_timeout=escalate_on_timeout,
        priority=priority,
        **options,
    )
    return lambda fn: GateFunction(fn, review)
