"""Claiming runs from an SQLite store: due runs, leases, and the worker's claim of many."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Sequence

from orchestrate.store import _sql
from orchestrate.store._sqlite_io import SQLiteConnection
from orchestrate.store.base import RunRecord


class SQLiteClaims(SQLiteConnection):
    """What workers call to find and claim runs (see :class:`~orchestrate.store.base.ClaimingStore`)."""

    async def due_runs(self, *, now: float, limit: int = 100) -> list[RunRecord]:
        """Claimable runs."""

        def op(cur: sqlite3.Cursor) -> list[RunRecord]:
            rows = cur.execute(_sql.DUE_RUNS, (now, now, now, limit))
            return [_sql.run_from_row(r) for r in rows]

        result: list[RunRecord] = await self._call(op, write=False)
        return result

    async def claim_run(
        self, run_id: str, *, owner: str, now: float, lease_seconds: float, force: bool = False
    ) -> RunRecord | None:
        """Compare-and-set claim."""
        condition = "(status = 'running' OR " + _sql.CLAIMABLE + ")" if force else _sql.CLAIMABLE

        def op(cur: sqlite3.Cursor) -> RunRecord | None:
            cur = cur.execute(
                _sql.CLAIM_RUN + condition,
                (owner, now + lease_seconds, now, run_id, now, now, now),
            )
            if not cur.rowcount:
                return None
            return _sql.run_from_row(cur.execute(_sql.SELECT_RUN, (run_id,)).fetchone())

        result: RunRecord | None = await self._call(op, run=run_id)
        return result

    async def renew_lease(self, run_id: str, *, owner: str, fence: int, now: float, lease_seconds: float) -> bool:
        """Extend if still held."""

        def op(cur: sqlite3.Cursor) -> bool:
            return bool(cur.execute(_sql.RENEW_LEASE, (now + lease_seconds, run_id, fence)).rowcount)

        return bool(await self._call(op, run=run_id))

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
        """Claim due runs in one transaction (the write lock makes it atomic across processes)."""
        where, params = _sql.claim_filter(versions, queues)
        orphans = _sql.orphans_condition(orphans_of)
        claim = f"{_sql.CLAIM_RUN}({_sql.CLAIMABLE}{orphans})"
        # (statement, most rows, owners it names): suspects first, then the others.
        selects: list[tuple[str, int, Sequence[str]]] = []
        if suspects is None:
            selects.append((_sql.DUE_IDS.format(where=where, orphans=orphans), limit, orphans_of))
        else:
            if suspects > 0:
                suspect = _sql.DUE_IDS.format(where=f"{where} AND {_sql.SUSPECT}", orphans=orphans)
                selects.append((suspect, suspects, orphans_of))
            selects.append((_sql.DUE_IDS.format(where=f"{where} AND NOT {_sql.SUSPECT}", orphans=""), limit, ()))

        def op(cur: sqlite3.Cursor) -> list[RunRecord]:
            ids: list[str] = []
            for select, most, owners in selects:
                most = min(most, limit - len(ids))
                if most > 0:
                    ids += [row[0] for row in cur.execute(select, (now, now, now, *owners, *params, most))]
            claimed = []
            for run_id in ids:
                if cur.execute(claim, (owner, now + lease_seconds, now, run_id, now, now, now, *orphans_of)).rowcount:
                    claimed.append(_sql.run_from_row(cur.execute(_sql.SELECT_RUN, (run_id,)).fetchone()))
            return claimed

        result: list[RunRecord] = await self._call(op)
        return result

    async def seconds_until_due(
        self,
        *,
        now: float,
        versions: Sequence[tuple[str, str]] | None = None,
        queues: Sequence[str] | None = None,
    ) -> float | None:
        """Until the next timer, scheduled start or lease expiry."""
        where, params = _sql.claim_filter(versions, queues)
        sql = _sql.NEXT_DUE.format(where=where)

        def op(cur: sqlite3.Cursor) -> float | None:
            value = cur.execute(sql, params).fetchone()[0]
            return None if value is None else max(float(value) - now, 0.0)

        result: float | None = await self._call(op, write=False)
        return result

    async def wait_for_work(self, timeout: float) -> bool:
        """SQLite sends no hints: sleep (the engine polls)."""
        await asyncio.sleep(max(timeout, 0.0))
        return False
