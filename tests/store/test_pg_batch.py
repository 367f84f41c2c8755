"""Group commit for PostgreSQL (:mod:`orchestrate.store._pg_batch`), without a server."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from orchestrate.store._pg_batch import Batcher, BatchError


class FakeSend:
    """Records the batches it is given; each takes a moment, as a commit does."""

    def __init__(self, fail: bool = False) -> None:
        self.batches: list[list[tuple[str, Any]]] = []
        self.fail = fail

    async def __call__(self, items: list[tuple[str, Any]]) -> list[tuple[Any, ...] | None]:
        self.batches.append(items)
        await asyncio.sleep(0.01)
        if self.fail:
            raise RuntimeError("the batch failed")
        return [(sql, params) for sql, params in items]


async def test_a_lone_statement_is_sent_at_once_alone() -> None:
    send = FakeSend()
    batcher = Batcher(send)
    assert await batcher.submit("s1", 1, order="a") == ("s1", 1)
    assert await batcher.submit("s2", 2, order="a") == ("s2", 2)
    assert send.batches == [[("s1", 1)], [("s2", 2)]]
    assert (batcher.batches, batcher.statements) == (2, 2)


async def test_statements_submitted_while_one_is_in_flight_go_out_together_in_run_order() -> None:
    send = FakeSend()
    batcher = Batcher(send)
    first = asyncio.create_task(batcher.submit("first", 0, order="m"))
    await asyncio.sleep(0)  # the first is in flight
    rest = [batcher.submit(f"s{i}", i, order=order) for i, order in enumerate(["c", "a", "b"])]
    results = await asyncio.gather(first, *rest)
    assert results == [("first", 0), ("s0", 0), ("s1", 1), ("s2", 2)]
    assert send.batches == [[("first", 0)], [("s1", 1), ("s2", 2), ("s0", 0)]]
    assert (batcher.batches, batcher.statements) == (2, 4)


async def test_a_failed_batch_fails_each_of_its_statements_with_the_cause_chained() -> None:
    send = FakeSend(fail=True)
    batcher = Batcher(send)
    first = asyncio.create_task(batcher.submit("first", 0, order="a"))
    await asyncio.sleep(0)
    results = await asyncio.gather(first, batcher.submit("s", 1, order="b"), return_exceptions=True)
    assert all(isinstance(r, BatchError) and isinstance(r.__cause__, RuntimeError) for r in results)
    send.fail = False
    assert await batcher.submit("again", 2, order="a") == ("again", 2)  # the batcher goes on


async def test_a_cancelled_lone_writer_hands_the_queue_on() -> None:
    send = FakeSend()
    batcher = Batcher(send)
    first = asyncio.create_task(batcher.submit("first", 0, order="a"))
    await asyncio.sleep(0)
    second = asyncio.create_task(batcher.submit("second", 1, order="b"))
    await asyncio.sleep(0)
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    assert await second == ("second", 1)
