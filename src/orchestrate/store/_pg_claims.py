"""Claiming runs from a PostgreSQL store: due runs, leases, ``SKIP LOCKED`` claims, ``LISTEN``."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import psycopg
from psycopg import sql as pgsql

from orchestrate.store import _pg_sql as q
from orchestrate.store import _sql
from orchestrate.store._pg_conn import Conn, PostgresConnection, cursor, log
from orchestrate.store.base import RunRecord


class PostgresClaims(PostgresConnection):
    """What workers call to find and claim runs (see :class:`~orchestrate.store.base.ClaimingStore`)."""

    async def due_runs(self, *, now: float, limit: int = 100) -> list[RunRecord]:
        """Claimable runs, oldest first (due-ness on the database clock by default)."""
        rows = await self._fetch("due_runs", self._sql.due_runs, {"now": now, "limit": limit})
        return [_sql.run_from_row(r) for r in rows]

    async def claim_run(
        self, run_id: str, *, owner: str, now: float, lease_seconds: float, force: bool = False
    ) -> RunRecord | None:
        """Compare-and-set claim; the lease runs on the database clock by default."""
        params = {"now": now, "owner": owner, "lease": lease_seconds, "run_id": run_id}

        async def op(conn: Conn, attempt: int) -> RunRecord | None:
            if attempt > 1:
                return None  # the first try may have committed: let that lease expire
            row = await (await cursor(conn).execute(self._sql.claim_run(force), params)).fetchone()
            return None if row is None else _sql.run_from_row(row)

        return await self._run("claim_run", op)

    async def renew_lease(self, run_id: str, *, owner: str, fence: int, now: float, lease_seconds: float) -> bool:
        """Extend if still held."""
        params = {"now": now, "lease": lease_seconds, "run_id": run_id, "fence": fence}
        return bool(await self._execute("renew_lease", self._sql.renew_lease, params))

    async def claim_due(
        self,
        *,
        owner: str,
        now: float,
        lease_seconds: float,
        limit: int,
        versions: Sequence[tuple[str, str]] | None = None,
        queues: Sequence[str] | None = None,
        orphans_of: Sequence[str] = (),
        suspects: int | None = None,
    ) -> list[RunRecord]:
        """Claim up to ``limit`` due runs in one statement (``FOR UPDATE SKIP LOCKED``)."""
        if limit <= 0 or (versions is not None and not versions) or (queues is not None and not queues):
            return []
        sql = self._sql.claim_due(versions is not None, queues is not None, bool(orphans_of), suspects is not None)
        params = {"now": now, "owner": owner, "lease": lease_seconds, "limit": limit, "orphans": list(orphans_of)}
        if suspects is not None:
            params["suspects"] = max(min(suspects, limit), 0)
        params.update(q.filter_params(versions, queues))

        async def op(conn: Conn, attempt: int) -> list[RunRecord]:
            if attempt > 1:
                return []  # the first try may have committed: those leases will expire
            return [_sql.run_from_row(r) for r in await (await cursor(conn).execute(sql, params)).fetchall()]

        runs = await self._run("claim_due", op)
        runs.sort(key=lambda r: (r.created_at if r.wake_at is None else r.wake_at, r.run_id))
        return runs

    async def seconds_until_due(
        self,
        *,
        now: float,
        versions: Sequence[tuple[str, str]] | None = None,
        queues: Sequence[str] | None = None,
    ) -> float | None:
        """Until the next timer, scheduled start or lease expiry (database clock by default)."""
        if (versions is not None and not versions) or (queues is not None and not queues):
            return None
        sql = self._sql.next_due(versions is not None, queues is not None)
        row = await self._fetchone("seconds_until_due", sql, {"now": now, **q.filter_params(versions, queues)})
        return None if row is None or row[0] is None else max(float(row[0]), 0.0)

    async def wait_for_work(self, timeout: float) -> bool:
        """Wait for a ``NOTIFY`` from a run becoming claimable, or ``timeout`` seconds."""
        if self._listener is None or self._listener.done():
            self._listener = asyncio.create_task(self._listen(), name="orchestrate-listen")
        if not self._hint.is_set():
            try:
                await asyncio.wait_for(self._hint.wait(), max(timeout, 0.0))
            except TimeoutError:
                return False
        self._hint.clear()
        return True

    async def _listen(self) -> None:
        """Keep a ``LISTEN`` connection open (reconnecting) and turn notifications into hints."""
        delay = 0.1
        while True:
            try:
                conn = await psycopg.AsyncConnection.connect(self.conninfo, **self._kwargs)
                async with conn:
                    await conn.execute(pgsql.SQL("LISTEN {}").format(pgsql.Identifier(self._channel)))
                    self._hint.set()  # notifications may have been missed while disconnected
                    delay = 0.1
                    async for _note in conn.notifies():
                        self._hint.set()
            except asyncio.CancelledError:
                raise
            except (psycopg.Error, OSError) as exc:
                log.warning("store_listen_lost", store="postgresql", error=str(exc)[:200])
            self._hint.set()  # while reconnecting, let the worker poll
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)
