"""Rate-limit windows and circuit breakers shared through an SQLite store."""

from __future__ import annotations

import sqlite3

from orchestrate.store import _sql
from orchestrate.store._sqlite_io import SQLiteConnection
from orchestrate.store.base import BreakerRecord, RateGrant, decide_rate


class SQLiteLimits(SQLiteConnection):
    """Shared limits (see :class:`~orchestrate.store.base.LimitsStore`)."""

    async def acquire_rate(
        self, resource: str, *, limit: float, per_seconds: float, cost: float = 1.0, now: float
    ) -> RateGrant:
        """Sliding-window grant under the database's write lock."""

        def op(cur: sqlite3.Cursor) -> RateGrant:
            cur.execute(_sql.RATE_PRUNE, (resource, now - per_seconds))
            window = [(float(a), float(c)) for a, c in cur.execute(_sql.RATE_WINDOW, (resource, now - per_seconds))]
            grant = decide_rate(window, limit=limit, per_seconds=per_seconds, cost=cost, now=now)
            if grant.granted:
                cur.execute(_sql.RATE_INSERT, (resource, grant.at, cost))
            return grant

        result: RateGrant = await self._call(op)
        return result

    async def load_breaker(self, resource: str, *, now: float) -> tuple[BreakerRecord, float]:
        """The breaker's state and ``now``."""

        def op(cur: sqlite3.Cursor) -> BreakerRecord:
            row = cur.execute(_sql.BREAKER_GET, (resource,)).fetchone()
            return BreakerRecord(resource=resource) if row is None else _sql.breaker_from_row(row)

        record: BreakerRecord = await self._call(op, write=False)
        return record, now

    async def save_breaker(self, record: BreakerRecord, *, expected_version: int) -> bool:
        """Compare-and-set on the version."""
        if expected_version == 0:
            sql, params = _sql.BREAKER_INSERT, _sql.breaker_params(record, 1)
        else:
            sql, params = _sql.BREAKER_UPDATE, _sql.breaker_update_params(record, expected_version)
        saved = bool(await self._call(lambda cur: cur.execute(sql, params).rowcount))
        if saved:
            record.version = expected_version + 1
        return saved
