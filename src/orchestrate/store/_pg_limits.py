"""Rate-limit windows and circuit breakers shared through a PostgreSQL store."""

from __future__ import annotations

from orchestrate.store import _pg_sql as q
from orchestrate.store import _sql
from orchestrate.store._pg_conn import Conn, PostgresConnection
from orchestrate.store.base import BreakerRecord, RateGrant, decide_rate


class PostgresLimits(PostgresConnection):
    """Shared limits (see :class:`~orchestrate.store.base.LimitsStore`), on the database clock by default."""

    async def acquire_rate(
        self, resource: str, *, limit: float, per_seconds: float, cost: float = 1.0, now: float
    ) -> RateGrant:
        """Sliding-window grant, serialised per resource by a row lock; database clock by default."""

        async def op(conn: Conn, _attempt: int) -> RateGrant:
            async with conn.transaction():
                row = await (await conn.execute(self._sql.rate_lock, {"resource": resource, "now": now})).fetchone()
                assert row is not None
                at = float(row[0])
                cur = await conn.execute(q.RATE_WINDOW, (resource, at - per_seconds, resource, at - per_seconds))
                window = [(float(a), float(c)) for a, c in await cur.fetchall()]
                grant = decide_rate(window, limit=limit, per_seconds=per_seconds, cost=cost, now=at)
                if grant.granted:
                    await conn.execute(q.RATE_INSERT, (resource, grant.at, cost))
                return grant

        # A retry after a lost acknowledgement may take a second grant: never more calls
        # than the limit, at worst one fewer.
        return await self._run("acquire_rate", op)

    async def load_breaker(self, resource: str, *, now: float) -> tuple[BreakerRecord, float]:
        """The breaker's state and the store's time."""
        rows = await self._fetch("load_breaker", self._sql.breaker_get, {"resource": resource, "now": now})
        (row,) = rows
        at = float(row[-1])
        if row[0] is None:
            return BreakerRecord(resource=resource), at
        return _sql.breaker_from_row(row[:-1]), at

    async def save_breaker(self, record: BreakerRecord, *, expected_version: int) -> bool:
        """Compare-and-set on the version."""
        if expected_version == 0:
            sql, params = q.BREAKER_INSERT, _sql.breaker_params(record, 1)
        else:
            sql, params = q.BREAKER_UPDATE, _sql.breaker_update_params(record, expected_version)

        async def op(conn: Conn, attempt: int) -> bool:
            if (await conn.execute(sql, params)).rowcount:
                return True
            if attempt > 1:  # our first try may have committed
                row = await (await conn.execute(q.BREAKER_GET, (record.resource,))).fetchone()
                return row is not None and tuple(row) == _sql.breaker_params(record, expected_version + 1)
            return False

        saved = await self._run("save_breaker", op)
        if saved:
            record.version = expected_version + 1
        return saved
