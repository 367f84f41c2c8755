"""Review items in an SQLite store: insert-if-absent, queue order, compare-and-set decisions."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from orchestrate.errors import ConflictError
from orchestrate.store import _limits, _sql
from orchestrate.store._sqlite_io import SQLiteConnection
from orchestrate.store.base import Event, ReviewRecord, ReviewStatus, StepRecord

_FIND_REVIEW_IDS = _sql.FIND_REVIEW_IDS.replace("LIKE ? ESCAPE '!'", "GLOB ?")


class SQLiteReviews(SQLiteConnection):
    """Review items and the decisions that deliver a run's signal."""

    async def create_review(self, review: ReviewRecord, *, event: Event | None = None) -> ReviewRecord:
        """Insert unless present; return the stored item."""
        _limits.review_depth(review)
        params = _sql.review_params(review)
        large = _sql.review_size(review, params[7], self.payload_limits, report=True)
        evs = [_sql.event_params(e) for e in (event, large) if e is not None]

        def op(cur: sqlite3.Cursor) -> ReviewRecord:
            if cur.execute(_sql.INSERT_REVIEW, params).rowcount:
                for ev in evs:
                    cur.execute(_sql.INSERT_EVENT, ev)
            return _sql.review_from_row(cur.execute(_sql.SELECT_REVIEW, (review.review_id,)).fetchone())

        result: ReviewRecord = await self._call(op)
        return result

    async def find_review_ids(self, prefix: str, *, limit: int = 5) -> list[str]:
        """In id order."""
        return await self._find_ids(_FIND_REVIEW_IDS, prefix, limit)

    async def get_review(self, review_id: str) -> ReviewRecord | None:
        """The item or ``None``."""

        def op(cur: sqlite3.Cursor) -> ReviewRecord | None:
            row = cur.execute(_sql.SELECT_REVIEW, (review_id,)).fetchone()
            return None if row is None else _sql.review_from_row(row)

        result: ReviewRecord | None = await self._call(op, write=False)
        return result

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

        def op(cur: sqlite3.Cursor) -> list[ReviewRecord]:
            return [_sql.review_from_row(r) for r in cur.execute(sql, (*params, limit))]

        result: list[ReviewRecord] = await self._call(op, write=False)
        return result

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

        def op(cur: sqlite3.Cursor) -> bool:
            if not cur.execute(_sql.UPDATE_REVIEW, params).rowcount:
                return False
            if step is not None and signal is not None:
                if not cur.execute(_sql.INSERT_STEP, step).rowcount:
                    # Raising rolls the savepoint back: the item update is undone too.
                    raise ConflictError(f"run {signal.run_id!r} already received {signal.step_key!r}")
                cur.execute(_sql.DELETE_ATTEMPTS, (signal.run_id, signal.step_key))
                cur.execute(_sql.WAKE_RUN, (now, signal.run_id))
            for ev in evs:
                cur.execute(_sql.INSERT_EVENT, ev)
            return True

        try:
            return bool(await self._call(op))
        except ConflictError:
            return False
