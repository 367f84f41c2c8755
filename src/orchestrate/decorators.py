"""Decorator style, as the seeds write it: ``AgentWorkflow`` with ``@wf.step``, and
``@parallel`` / ``@reduce`` / ``@branch`` / ``@fallback`` / ``@gate``.

Decorated functions are durable steps when awaited inside a run (a durable function or
a graph step), and run under their policies on a throw-away in-memory engine when
awaited outside any run.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any, Literal

from orchestrate._engine.context import current_run
from orchestrate.errors import DefinitionError
from orchestrate.policies import Fallback, Retry, Seconds, Timeout
from orchestrate.review.gate import HumanReviewGate, TieredGate
from orchestrate.workflow import Map, Node, Step, Workflow, workflow


class AgentWorkflow(Workflow):
    """A sequential workflow built with ``@wf.step(...)`` decorators (seed 001).

    Args:
        name: the workflow's name.
        max_concurrency: most runs executing at once in a process.
        state_store: ``"sqlite"``, ``"memory"``, ``"postgresql"`` or a store URL.
        version, timeout, error_handler, components: as for :class:`Workflow`.
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
        **options: Any,
    ) -> Any:
        """Append the decorated function as the next step; the function stays callable."""

        def add(f: Callable[..., Any]) -> Callable[..., Any]:
            self.add_step(
                Step(name or f.__name__, f, retry=retry, timeout=timeout, fallback=fallback, gate=gate, **options)
            )
            return f

        return add(fn) if fn is not None else add


async def _one_off(fn: Callable[..., Any], *args: Any, **policy: Any) -> Any:
    """Run a single step durably inside the current run, or on a throw-away engine."""
    ctx = current_run.get()
    if ctx is not None:
        return await ctx.step(fn, *args, **policy)
    from orchestrate._engine.runner import Engine
    from orchestrate.store import InMemoryStore

    @workflow(name=f"call:{getattr(fn, '__name__', 'fn')}", version="1")
    async def single(ctx: Any, _: Any) -> Any:
        return await ctx.step(fn, *args, **policy)

    async with Engine(InMemoryStore()) as engine:
        return await engine.run(single)


class ParallelFunction:
    """A function decorated with :func:`parallel`: ``await fn.map(items)`` fans out."""

    def __init__(self, fn: Callable[..., Any], *, max_workers: int, **policy: Any) -> None:
        functools.update_wrapper(self, fn)
        self.fn = fn
        self.max_workers = max_workers
        self.policy = policy

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.fn(*args, **kwargs)

    async def map(self, items: Sequence[Any]) -> list[Any]:
        """Run the function over ``items`` with at most ``max_workers`` at once."""
        import asyncio

        if not isinstance(items, list | tuple):
            raise DefinitionError(f"{self.fn.__name__}.map needs a list, got {type(items).__name__}")
        limit = asyncio.Semaphore(self.max_workers)
        name = self.fn.__name__
        ctx = current_run.get()

        async def one(i: int, item: Any) -> Any:
            async with limit:
                if ctx is not None:
                    return await ctx.step(self.fn, item, key=f"{name}[{i}]", **self.policy)
                return await _one_off(self.fn, item, **self.policy)

        if ctx is not None:
            return await ctx.gather(*(one(i, item) for i, item in enumerate(items)))
        return list(await asyncio.gather(*(one(i, item) for i, item in enumerate(items))))

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


class ReduceFunction:
    """A function decorated with :func:`reduce`: the strategy is applied before the body."""

    def __init__(self, fn: Callable[..., Any], strategy: ReduceStrategy) -> None:
        functools.update_wrapper(self, fn)
        self.fn = fn
        self.strategy = strategy

        @functools.wraps(fn)
        def reducer(results: list[Any]) -> Any:
            from orchestrate._engine.interpreter import reduce_outputs

            return fn(reduce_outputs(strategy, list(results)))

        self.reducer = reducer

    async def __call__(self, results: Sequence[Any]) -> Any:
        return await _one_off(self.reducer, list(results))

    def __orchestrate_node__(self) -> Node:
        return Step(self.fn.__name__, self.reducer)


def reduce(*, strategy: ReduceStrategy = "list") -> Callable[[Callable[..., Any]], ReduceFunction]:
    """Declare a reducer of a map's outputs (seed 001: ``@reduce(strategy="concat")``)."""
    if strategy not in ("list", "concat", "merge", "sum"):
        raise DefinitionError(f"reduce strategy must be list, concat, merge or sum, got {strategy!r}")
    return lambda fn: ReduceFunction(fn, strategy)


_STRATEGIES = ("model_switch", "local_model", "cached", "default", "skip")


class FallbackFunction:
    """A function decorated with :func:`fallback`: awaiting it applies retries and the fallback."""

    def __init__(self, fn: Callable[..., Any], policy: dict[str, Any]) -> None:
        functools.update_wrapper(self, fn)
        self.fn = fn
        self.policy = policy

    async def __call__(self, *args: Any) -> Any:
        return await _one_off(self.fn, *args, name=self.fn.__name__, **self.policy)

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


class BranchFunction:
    """A routing function decorated with :func:`branch`; register handlers with ``.route(key)``."""

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

    def __call__(self, *args: Any) -> Any:
        return self.fn(*args)

    async def run(self, value: Any, *, state_store: str | None = None) -> Any:
        """Decide (a recorded step), then run the chosen handler, as a durable run."""
        from orchestrate._engine.runner import default_engine

        engine = await default_engine(state_store)
        return await engine.run(self.as_workflow(), value)

    def as_workflow(self) -> Any:
        """This branch and its handlers as a durable-function workflow."""
        routes, decide, on = self.routes, self.fn, self.on

        async def dispatch(ctx: Any, value: Any) -> Any:
            key = await ctx.step(decide, value, name=on)
            handler = routes.get(key)
            if handler is None:
                from orchestrate._engine.interpreter import RouteError

                raise RouteError(f"branch {on!r}: value {key!r} has no handler (routes: {sorted(map(str, routes))})")
            if isinstance(handler, FallbackFunction):
                return await ctx.step(handler.fn, value, **handler.policy)
            return await ctx.step(handler, value)

        dispatch.__qualname__ = dispatch.__name__ = f"branch_{self.fn.__name__}"
        return workflow(dispatch, name=self.fn.__name__, version=_routes_version(self))


def _routes_version(branch: BranchFunction) -> str:
    from orchestrate import _serde
    from orchestrate.workflow import _source

    parts = [_source(branch.fn)] + [
        f"{k}={_source(getattr(h, 'fn', h))}" for k, h in sorted(branch.routes.items(), key=str)
    ]
    return _serde.input_hash(parts)[:12]


def branch(*, on: str) -> Callable[[Callable[..., Any]], BranchFunction]:
    """Declare a routing decision (seed 001: ``@branch(on="complexity_score")``)."""
    if not isinstance(on, str) or not on:
        raise DefinitionError("branch(on=...) needs the name of what is decided on")
    return lambda fn: BranchFunction(fn, on)


class GateFunction:
    """A function decorated with :func:`gate`: a step whose output a person must approve."""

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
        output = await ctx.step(self.fn, *args)
        key = ctx.last_key
        assert key is not None  # set by the ctx.step just above
        from orchestrate.review._runtime import continue_with

        outcome = await ctx.review(output, gate=self.review, key=key, step=key)
        value, route = continue_with(outcome, rejected=f"step {key!r} was rejected by a reviewer")
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

    Other keywords (``escalate_to``, ``on_timeout``, ``on_reject``, ``warn_before``,
    ``notify``...) are those of :class:`~orchestrate.review.HumanReviewGate`.
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
