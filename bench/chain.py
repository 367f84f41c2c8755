"""The chain every measurement runs: ten trivial steps, each ``x + 1``, and its floors.

The floors are the same ten functions called in a plain Python chain: what the steps
cost with no engine at all.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from bench.harness import STEPS
from orchestrate import Step, Workflow
from orchestrate.policies import Isolation


def _async_step(i: int) -> Callable[[int], Awaitable[int]]:
    async def step(x: int) -> int:
        return x + 1

    step.__name__ = step.__qualname__ = f"s{i}"
    return step


def _sync_step(i: int) -> Callable[[int], int]:
    def step(x: int) -> int:
        return x + 1

    step.__name__ = step.__qualname__ = f"s{i}"
    return step


ASYNC_STEPS = [_async_step(i) for i in range(STEPS)]
SYNC_STEPS = [_sync_step(i) for i in range(STEPS)]


async def plain_async_chain(x: int = 0) -> int:
    """The floor for async steps: await the ten functions in turn."""
    for step in ASYNC_STEPS:
        x = await step(x)
    return x


def plain_sync_chain(x: int = 0) -> int:
    """The floor for sync steps: call the ten functions in turn."""
    for step in SYNC_STEPS:
        x = step(x)
    return x


async def plain_sync_chain_async(x: int = 0) -> int:
    """The sync floor called from a coroutine (as an engine running on a loop calls it)."""
    for step in SYNC_STEPS:
        x = step(x)
    return x


def async_workflow(name: str = "bench_chain") -> Workflow:
    """The chain as a graph workflow of async steps."""
    return Workflow(name, [Step(f"s{i}", fn) for i, fn in enumerate(ASYNC_STEPS)], version="1")


def sync_workflow(isolation: Isolation, name: str = "bench_chain_sync") -> Workflow:
    """The chain as a graph workflow of sync steps (``"thread"`` or ``"inline"``)."""
    return Workflow(
        f"{name}_{isolation}",
        [Step(f"s{i}", fn, isolation=isolation) for i, fn in enumerate(SYNC_STEPS)],
        version="1",
    )
