"""Group commit for PostgreSQL: the step records of concurrent runs share transactions.

A step record is one statement and, alone, one commit: one WAL flush, the floor of a
durable step. When many runs of a process record steps at the same moment, the
statements waiting while a commit is in flight are sent together as the next batch: one
transaction, one round trip (psycopg's pipeline mode), one flush for all of them. A
lone run never waits: with nothing in flight, its statement goes out at once.

Statements are ordered by run id inside a batch, so that concurrent batches of
different processes take row locks in the same order. The batch is all or nothing:
when it fails, every statement in it is retried on its own by its caller (each is
idempotent and recognises an earlier commit of its own).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

Row = tuple[Any, ...] | None
Send = Callable[[list[tuple[str, Any]]], Awaitable[list[Row]]]


class BatchError(Exception):
    """The batch holding a statement failed; the caller retries the statement alone."""


class Batcher:
    """Collects statements submitted while a batch is in flight and sends them as the next one.

    Args:
        send: writes a batch of ``(sql, params)`` in one transaction and returns the
            first row of each statement's result, in order.
    """

    def __init__(self, send: Send) -> None:
        self._send = send
        self._queue: list[tuple[str, Any, str, asyncio.Future[Row]]] = []
        self._busy = False
        self._driver: asyncio.Task[None] | None = None
        self.batches = 0
        """Batches written (for benchmarks and tests)."""
        self.statements = 0
        """Statements written through batches."""

    async def submit(self, sql: str, params: Any, *, order: str) -> Row:
        """Write one statement, possibly together with others; its first result row.

        Raises:
            BatchError: the batch failed (the cause is chained); retry the statement alone.
        """
        if not self._busy:
            # Nothing in flight (so nothing queued): this caller writes right away, alone,
            # then hands on what queued meanwhile.
            self._busy = True
            try:
                try:
                    (row,) = await self._send([(sql, params)])
                except Exception as exc:
                    raise BatchError(str(exc)) from exc
                self.batches += 1
                self.statements += 1
                return row
            finally:
                self._hand_over()
        future: asyncio.Future[Row] = asyncio.get_running_loop().create_future()
        self._queue.append((sql, params, order, future))
        return await future

    def _hand_over(self) -> None:
        if self._queue:
            self._driver = asyncio.create_task(self._drain())
        else:
            self._busy = False

    async def _drain(self) -> None:
        try:
            while self._queue:
                await self._flush()
        finally:
            self._busy = False
            if self._queue:  # cancelled mid-way: keep the queue moving
                self._busy = True
                self._hand_over()

    async def _flush(self) -> None:
        batch, self._queue = self._queue, []
        batch.sort(key=lambda item: item[2])  # stable: a run's own statements keep their order
        try:
            rows = await self._send([(sql, params) for sql, params, _, _ in batch])
        except BaseException as exc:
            for *_, future in batch:
                if not future.done():
                    failed = BatchError(str(exc))
                    failed.__cause__ = exc
                    future.set_exception(failed)
            if not isinstance(exc, Exception):
                raise
            return
        self.batches += 1
        self.statements += len(batch)
        for (*_, future), row in zip(batch, rows, strict=True):
            if not future.done():
                future.set_result(row)
