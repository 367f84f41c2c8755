"""The chain every measurement runs: ten trivial steps, each ``x + 1``, and its floors.

The floors are the same ten functions called in a plain Python chain: what the steps
cost with no engine at all.
"""

from __future__ import annotations

import dataclasses
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


def def_workflow(*, timeout: float | None = None, name: str = "bench_chain_def") -> Workflow:
    """The chain of plain ``def`` steps as the README writes them (default isolation).

    With ``timeout`` each step carries that per-attempt timeout, as the quickstart's do.
    """
    suffix = "" if timeout is None else "_timeout"
    return Workflow(
        f"{name}{suffix}",
        [Step(f"s{i}", fn, timeout=timeout) for i, fn in enumerate(SYNC_STEPS)],
        version="1",
    )


def sync_workflow(isolation: Isolation, name: str = "bench_chain_sync") -> Workflow:
    """The chain as a graph workflow of sync steps (``"thread"`` or ``"inline"``)."""
    return Workflow(
        f"{name}_{isolation}",
        [Step(f"s{i}", fn, isolation=isolation) for i, fn in enumerate(SYNC_STEPS)],
        version="1",
    )


# The same chain carrying values users carry: a ~0.5 KB dict of JSON data, and a dataclass
# declared as the steps' return type (revived from its stored form by the codec).

PAYLOAD = {
    "ticket": "T-4829",
    "customer": {"id": "C-1001", "name": "Ada Lovelace", "tier": "gold", "email": "ada@example.org"},
    "message": "My order #4829 was supposed to arrive yesterday but tracking says it is in Memphis.",
    "intent": {"label": "order_status", "confidence": 0.93, "scores": {"order_status": 0.93, "refund": 0.04}},
    "tracking": {"carrier": "UPS", "location": "Memphis, TN", "eta": "2026-12-03", "events": [1, 2, 3, 4]},
    "tags": ["delayed", "priority", "eta-known"],
    "n": 0,
}


PAYLOAD_10K = {
    **PAYLOAD,
    "history": [
        {
            "at": f"2026-11-{1 + i % 28:02d}T10:{i % 60:02d}:00Z",
            "status": "in transit",
            "where": "Memphis, TN",
            "seq": i,
        }
        for i in range(107)
    ],
}
"""About 10 KB once encoded: the 0.5 KB payload with a tracking history."""


def payload_def_step(i: int) -> Callable[[dict[str, object]], dict[str, object]]:
    """The payload step as a plain ``def`` (for peers' sync nodes and our ``def`` chain)."""

    def step(d: dict[str, object]) -> dict[str, object]:
        return {**d, "n": d["n"] + 1}  # type: ignore[operator]

    step.__name__ = step.__qualname__ = f"p{i}"
    return step


PAYLOAD_DEF_STEPS = [payload_def_step(i) for i in range(STEPS)]


def plain_payload_def_chain(d: dict[str, object] = PAYLOAD) -> dict[str, object]:
    """The floor for the payload chain of ``def`` steps."""
    for step in PAYLOAD_DEF_STEPS:
        d = step(d)
    return d


def _payload_step(i: int) -> Callable[[dict[str, object]], Awaitable[dict[str, object]]]:
    async def step(d: dict[str, object]) -> dict[str, object]:
        return {**d, "n": d["n"] + 1}  # type: ignore[operator]

    step.__name__ = step.__qualname__ = f"p{i}"
    return step


@dataclasses.dataclass
class Ticket:
    """A typed value flowing through the chain."""

    ticket: str
    confidence: float
    tags: tuple[str, ...]
    n: int


def _typed_step(i: int) -> Callable[[Ticket], Awaitable[Ticket]]:
    async def step(t: Ticket) -> Ticket:
        return Ticket(t.ticket, t.confidence, t.tags, t.n + 1)

    step.__name__ = step.__qualname__ = f"t{i}"
    return step


PAYLOAD_STEPS = [_payload_step(i) for i in range(STEPS)]
TYPED_STEPS = [_typed_step(i) for i in range(STEPS)]


async def plain_payload_chain(d: dict[str, object] = PAYLOAD) -> dict[str, object]:
    """The floor for the payload chain."""
    for step in PAYLOAD_STEPS:
        d = await step(d)
    return d


async def plain_typed_chain(t: Ticket | None = None) -> Ticket:
    """The floor for the typed chain."""
    t = t or Ticket("T-4829", 0.93, ("delayed", "priority"), 0)
    for step in TYPED_STEPS:
        t = await step(t)
    return t


def payload_workflow() -> Workflow:
    """The payload chain as a graph workflow."""
    return Workflow("bench_payload", [Step(f"p{i}", fn) for i, fn in enumerate(PAYLOAD_STEPS)], version="1")


def payload_def_workflow() -> Workflow:
    """The payload chain of plain ``def`` steps as a graph workflow (default isolation)."""
    return Workflow("bench_payload_def", [Step(f"p{i}", fn) for i, fn in enumerate(PAYLOAD_DEF_STEPS)], version="1")


def typed_workflow() -> Workflow:
    """The typed (dataclass) chain as a graph workflow."""
    return Workflow("bench_typed", [Step(f"t{i}", fn) for i, fn in enumerate(TYPED_STEPS)], version="1")
