"""Review items in a PostgreSQL store: insert-if-absent, queue order, compare-and-set decisions."""

from __future__ import annotations

from collections.abc import Sequence

import psycopg

from orchestrate.store import _limits, _sql
from orchestrate.store import _pg_sql as q
from orchestrate.store._pg_conn import Conn, PostgresConnection
from orchestrate.store.base import Event, ReviewRecord, ReviewStatus, StepRecord


class PostgresReviews(PostgresConnection):
    """Review items and the decisions that deliver a run's signal."""

    async def create_review(self, review: ReviewRecord, *, event: Event | None = None) -> ReviewRecord:
        """Insert unless present; return the stored item."""
        _limits.review_depth(review)
        params = _sql.review_params(review)
        large = _sql.review_size(review, params[7], self.payload_limits, report=True)
        evs = [_sql.event_params(e) for e in (event, large) if e is not None]

        async def op(conn: Conn, _attempt: int) -> ReviewRecord:
            async with conn.transaction():
                if (await conn.execute(q.INSERT_REVIEW, params)).rowcount:
                    for ev in evs:
                        await conn.execute(q.INSERT_EVENT, ev)
                row = await (await conn.execute(q.SELECT_REVIEW, (review.review_id,))).fetchone()
            assert row is not None
            return _sql.review_from_row(row)

        return await self._run("create_review", op)

    async def find_review_ids(self, prefix: str, *, limit: int = 5) -> list[str]:
        """In id order."""
        rows = await self._fetch("find_review_ids", q.FIND_REVIEW_IDS, (_sql.like_prefix(prefix), limit))
        return [row[0] for row in rows]

    async def get_review(self, review_id: str) -> ReviewRecord | None:
        """The item or ``None``."""
        row = await self._fetchone("get_review", q.SELECT_REVIEW, (review_id,))
        return None if row is None else _sql.review_from_row(row)

    async def list_reviews(
        self,
        *,
        status: Sequence[ReviewStatus] | None = None,
        role: str | None = None,
        run_id: str | None = None,
        limit: int = 100,
    ) -> list[ReviewRecord]:
        """Most urgent first."""
        sql, params = _sql.list_reviews_sql(status, role, run_id)
        rows = await self._fetch("list_reviews", q.fmt(sql), (*params, limit))
        return [_sql.review_from_row(r) for r in rows]

    async def update_review(
        self,
        review: ReviewRecord,
        *,
        expected_version: int,
        now: float,
        events: Sequence[Event] = (),
        signal: StepRecord | None = None,
    ) -> bool:
        """Compare-and-set on the version; with ``signal``, record it and wake the run too."""
        _limits.review_depth(review)
        if signal is not None:
            _limits.signal_depth(signal)
        params = _sql.review_update_params(review, expected_version=expected_version, now=now)
        _sql.review_size(review, params[1], self.payload_limits, report=False)
        evs = [_sql.event_params(e) for e in events]
        step = _sql.step_params(signal) if signal is not None else None
        if signal is not None and step is not None:
            large = _sql.step_size(signal, step[4], self.payload_limits)
            if large is not None:
                evs.append(_sql.event_params(large))

        async def op(conn: Conn, attempt: int) -> bool:
            async with conn.transaction() as tx:
                if not (await conn.execute(q.UPDATE_REVIEW, params)).rowcount:
                    if attempt > 1:  # did our first try commit before its acknowledgement was lost?
                        row = await (await conn.execute(q.REVIEW_WRITTEN, (review.review_id,))).fetchone()
                        return row is not None and tuple(row) == params[:-2]
                    return False
                if step is not None and signal is not None:
                    if not (await conn.execute(q.INSERT_STEP, step)).rowcount:
                        raise psycopg.Rollback(tx)  # the signal was delivered already: undo the item too
                    await conn.execute(q.DELETE_ATTEMPTS, (signal.run_id, signal.step_key))
                    await conn.execute(q.WAKE_RUN, (now, signal.run_id))
                for ev in evs:
                    await conn.execute(q.INSERT_EVENT, ev)
                return True
            return False  # rolled back

        return await self._run("update_review", op)
