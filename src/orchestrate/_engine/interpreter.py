"""The graph interpreter: walks a workflow's nodes as calls on the run context.

Routes are pure functions of recorded outputs, so a replay walks the same path and
finds every finished step in the store. Keys: a step's name; ``map[i]`` for map items;
``loop#i/step`` inside loops; ``sub/step`` inside sub-workflows.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Sequence
from typing import Any

from orchestrate._definitions.nodes import Branch, Loop, Map, Node, Parallel, Step
from orchestrate._engine.gates import await_review
from orchestrate._engine.state import RunState, gather_all
from orchestrate._engine.steps import run_step
from orchestrate.errors import RunFailedError
from orchestrate.policies import MISSING
from orchestrate.review._outcomes import continue_with
from orchestrate.workflow import SubWorkflow, Workflow


class RouteError(RunFailedError):
    """A branch found no route for its value, or a route pointed nowhere at run time."""

    def __init__(self, message: str) -> None:
        super().__init__(message, run=None)


class _Jump(Exception):  # noqa: N818 - internal control flow
    def __init__(self, target: str, value: Any) -> None:
        self.target = target
        self.value = value


async def run_graph(ctx: RunState, wf: Workflow, value: Any) -> Any:
    """Run the workflow's nodes in sequence from ``value``; return the last output."""
    shape = _SHAPES.get(wf)
    if shape is None:
        last = wf.nodes[-1] if wf.nodes else None
        final = last.name if isinstance(last, Step) and last.gate is None else None
        shape = _SHAPES[wf] = (_names(wf.nodes), final)
    ctx.jump_targets = shape[0]
    ctx.final_key = shape[1]  # the final step's record ends the run in the same write
    try:
        return await _sequence(ctx, wf.nodes, value, "")
    except _Jump as jump:
        raise RouteError(
            f"route to {jump.target!r} goes backwards or out of its scope; jumps only go forward"
        ) from None


# Per workflow (definitions do not change once built): its jump targets and final step.
_SHAPES: weakref.WeakKeyDictionary[Workflow, tuple[frozenset[str], str | None]] = weakref.WeakKeyDictionary()


def _names(nodes: Sequence[Node]) -> frozenset[str]:
    return frozenset(_collect(nodes))


def _collect(nodes: Sequence[Node]) -> set[str]:
    names: set[str] = set()
    for node in nodes:
        names.add(node.name)
        if isinstance(node, Parallel):
            names |= _collect(node.nodes)
        elif isinstance(node, Branch):
            for _, _, route in node.cases:
                if not isinstance(route, str):
                    names |= _collect(route)
    return names


async def _sequence(ctx: RunState, nodes: Sequence[Node], value: Any, prefix: str) -> Any:
    index = {node.name: i for i, node in enumerate(nodes)}
    i = 0
    while i < len(nodes):
        node = nodes[i]
        try:
            if type(node) is Step:  # the common case, one coroutine frame fewer
                value = await _step(ctx, node, value, prefix + node.name if prefix else node.name)
            else:
                value = await _node(ctx, node, value, prefix)
        except _Jump as jump:
            target = index.get(jump.target)
            if target is None or target <= i:
                raise
            i, value = target, jump.value
            continue
        i += 1
    return value


async def _node(ctx: RunState, node: Node, value: Any, prefix: str) -> Any:
    if isinstance(node, Step):
        return await _step(ctx, node, value, prefix + node.name)
    if isinstance(node, Branch):
        return await _branch(ctx, node, value, prefix)
    if isinstance(node, Parallel):
        return await _parallel(ctx, node, value, prefix)
    if isinstance(node, Map):
        return await _map(ctx, node, value, prefix)
    if isinstance(node, Loop):
        return await _loop(ctx, node, value, prefix)
    if isinstance(node, SubWorkflow):
        return await _sequence(ctx, node.workflow.nodes, value, f"{prefix}{node.name}/")
    raise TypeError(f"unknown node {node!r}")  # pragma: no cover - validated at build


async def _step(ctx: RunState, node: Step, value: Any, key: str) -> Any:
    spec = ctx.engine.spec_of_step(node)
    output, route = await run_step(ctx, spec, value, key)
    if route is None:
        return output
    if route in ctx.jump_targets:
        raise _Jump(route, output)
    # Not a step: a queue of people. Park on a review item until someone decides.
    outcome = await await_review(
        ctx, ctx.engine.queue_gate(route), key=f"queue:{route}:{key}", step_key=key, payload=output, queue=route
    )
    if outcome.outcome == "signal":
        return outcome.value  # a raw signal's value goes on as it is
    value, then = continue_with(
        outcome, rejected=f"{route}: item from step {key!r} was rejected", codec=spec.codec, where=f"step {key!r}"
    )
    if then is None:
        return value
    if then in ctx.jump_targets:
        raise _Jump(then, value)
    raise RouteError(f"{route}: the item from step {key!r} routes to {then!r}, which is no step of this workflow")


def _resolve(ctx: RunState, on: Any, value: Any, prefix: str) -> Any:
    if on is None:
        return value
    if callable(on):
        return on(value)
    head, _, rest = str(on).partition(".")
    if head == "input":
        current = ctx.input
    elif prefix + head in ctx.outputs:
        current = ctx.outputs[prefix + head]
    elif head in ctx.outputs:
        current = ctx.outputs[head]
    else:
        raise RouteError(f"branch on {on!r}: step {head!r} has not produced an output in this run")
    for part in rest.split(".") if rest else ():
        if isinstance(current, dict):
            if part not in current:
                raise RouteError(f"branch on {on!r}: the output has no field {part!r}")
            current = current[part]
        else:
            if not hasattr(current, part):
                raise RouteError(f"branch on {on!r}: the output has no field {part!r}")
            current = getattr(current, part)
    return current


async def _branch(ctx: RunState, node: Branch, value: Any, prefix: str) -> Any:
    decided = _resolve(ctx, node.on, value, prefix)
    route = None
    if node.by_key is not None:
        route = node.by_key.get(decided)
    else:
        for _label, predicate, candidate in node.cases:
            if predicate(decided):
                route = candidate
                break
    if route is None:
        route = node.default_route
    if route is None:
        labels = [label for label, _, _ in node.cases]
        raise RouteError(
            f"branch {node.name!r}: value {decided!r} matches no route ({', '.join(labels)}) and there is no default"
        )
    ctx.outputs[prefix + node.name] = decided
    if isinstance(route, str):
        raise _Jump(route, value)
    return await _sequence(ctx, route, value, prefix)


async def _parallel(ctx: RunState, node: Parallel, value: Any, prefix: str) -> Any:
    limit = asyncio.Semaphore(node.max_workers) if node.max_workers else None

    async def one(child: Node) -> Any:
        if limit is None:
            return await _node(ctx, child, value, prefix)
        async with limit:
            return await _node(ctx, child, value, prefix)

    results = await gather_all([one(child) for child in node.nodes])
    if node.merge == "dict":
        return {child.name: result for child, result in zip(node.nodes, results, strict=True)}
    return results


async def _map(ctx: RunState, node: Map, value: Any, prefix: str) -> Any:
    items = node.over(value) if node.over is not None else value
    if not isinstance(items, list | tuple):
        raise RouteError(f"map {node.name!r} expected a list to map over, got {type(items).__name__}")
    limit = asyncio.Semaphore(node.max_workers) if node.max_workers else None
    base = f"{prefix}{node.name}"
    inner = node.node

    async def one(i: int, item: Any) -> Any:
        if isinstance(inner, Step):
            if limit is None:
                return await _step(ctx, inner, item, f"{base}[{i}]")
            async with limit:
                return await _step(ctx, inner, item, f"{base}[{i}]")
        if limit is None:
            return await _node(ctx, inner, item, f"{base}[{i}]/")
        async with limit:
            return await _node(ctx, inner, item, f"{base}[{i}]/")

    results = await gather_all([one(i, item) for i, item in enumerate(items)])
    return reduce_outputs(node.reduce, results)


def reduce_outputs(strategy: Any, results: list[Any]) -> Any:
    """Apply a map's reduce strategy; skipped items (``MISSING``) are left out but in ``list``."""
    if callable(strategy):
        return strategy(results)
    present = [r for r in results if r is not MISSING]
    if strategy == "concat":
        out: list[Any] = []
        for r in present:
            out.extend(r) if isinstance(r, list | tuple) else out.append(r)
        return out
    if strategy == "merge":
        merged: dict[str, Any] = {}
        for r in present:
            if not isinstance(r, dict):
                raise RouteError(f"reduce 'merge' needs dict outputs, got {type(r).__name__}")
            merged.update(r)
        return merged
    if strategy == "sum":
        return sum(present)
    return results


async def _loop(ctx: RunState, node: Loop, value: Any, prefix: str) -> Any:
    for i in range(node.max_iterations):
        value = await _sequence(ctx, node.body, value, f"{prefix}{node.name}#{i}/")
        if node.until(value):
            return value
    if node.on_exhausted == "fail":
        raise RouteError(f"loop {node.name!r} did not meet its exit condition in {node.max_iterations} iterations")
    return value
