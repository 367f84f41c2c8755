"""Step results, feedback and alerts in the SQL stores (schema 8), and :func:`quality_for`.

Statements use ``?`` placeholders (PostgreSQL's are rewritten once) and run through the
store's own connection, as :mod:`._access_sql` does.
"""

from __future__ import annotations

import json
import weakref
from collections.abc import Sequence
from typing import Any

from orchestrate.store import _sql
from orchestrate.store._access_sql import _dialect, _Sql, unwrap
from orchestrate.store._quality import (
    AlertRecord,
    AlertState,
    FeedbackRecord,
    MemoryQualityStore,
    QualityStore,
    QueueDepth,
)
from orchestrate.store.base import StepRecord

_MEMORY: weakref.WeakKeyDictionary[Any, MemoryQualityStore] = weakref.WeakKeyDictionary()

_STEP_COLUMNS = ", ".join(f"s.{c.strip()}" for c in _sql.STEP_COLUMNS.split(","))
_FEEDBACK_COLUMNS = "feedback_id, run_id, workflow, at, given_by, outcome, score, label, step, data"
INSERT_FEEDBACK = (
    f"INSERT INTO orchestrate_feedback ({_FEEDBACK_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
    " ON CONFLICT (feedback_id) DO NOTHING"
)
FEEDBACK_BY_ID = f"SELECT {_FEEDBACK_COLUMNS} FROM orchestrate_feedback WHERE feedback_id = ?"
_ALERT_COLUMNS = (
    "alert_id, workflow, monitor, step, incident, state, value, reason, action, fired_at, updated_at,"
    " resolved_at, acked_at, acked_by, version"
)
INSERT_ALERT = (
    f"INSERT INTO orchestrate_alerts ({_ALERT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
    " ON CONFLICT (alert_id) DO NOTHING"
)
UPDATE_ALERT = (
    "UPDATE orchestrate_alerts SET state = ?, value = ?, reason = ?, updated_at = ?, resolved_at = ?, acked_at = ?,"
    " acked_by = ?, version = ? WHERE alert_id = ? AND version = ?"
)
ALERT_BY_ID = f"SELECT {_ALERT_COLUMNS} FROM orchestrate_alerts WHERE alert_id = ?"
LAST_ALERT = (
    f"SELECT {_ALERT_COLUMNS} FROM orchestrate_alerts WHERE workflow = ? AND monitor = ? ORDER BY incident DESC LIMIT 1"
)

QUEUE_DEPTHS = (
    "SELECT queue, COUNT(*), MIN(COALESCE(wake_at, created_at)) FROM orchestrate_runs"
    " WHERE (status = 'pending' AND (wake_at IS NULL OR wake_at <= ?))"
    " OR (status = 'waiting' AND wake_at <= ?) GROUP BY queue ORDER BY queue"
)


def _feedback(row: Sequence[Any]) -> FeedbackRecord:
    return FeedbackRecord(
        feedback_id=row[0],
        run_id=row[1],
        workflow=row[2],
        at=float(row[3]),
        by=row[4],
        outcome=row[5],
        score=None if row[6] is None else float(row[6]),
        label=row[7],
        step=row[8],
        data=json.loads(row[9]),
    )


def _alert(row: Sequence[Any]) -> AlertRecord:
    return AlertRecord(
        alert_id=row[0],
        workflow=row[1],
        monitor=row[2],
        step=row[3],
        incident=int(row[4]),
        state=AlertState(row[5]),
        value=float(row[6]),
        reason=row[7],
        action=row[8],
        fired_at=float(row[9]),
        updated_at=float(row[10]),
        resolved_at=None if row[11] is None else float(row[11]),
        acked_at=None if row[12] is None else float(row[12]),
        acked_by=row[13],
        version=int(row[14]),
    )


class SqlQualityStore:
    """Step results from ``orchestrate_steps``; feedback and alerts in their own tables."""

    def __init__(self, store: Any, dialect: str) -> None:
        self._db = _Sql(store, dialect)

    async def step_results(
        self, name: str, *, last: int, workflow: str | None = None, before: float | None = None
    ) -> list[tuple[str, StepRecord]]:
        """Newest first: one range of the ``(name, finished_at)`` index, read backwards."""
        where: list[str] = ["s.name = ?"]
        params: list[Any] = [name]
        if workflow is not None:
            where.append("r.workflow = ?")
            params.append(workflow)
        if before is not None:
            where.append("s.finished_at < ?")
            params.append(before)
        sql = (
            f"SELECT COALESCE(r.workflow, ''), {_STEP_COLUMNS} FROM orchestrate_steps s"
            f" LEFT JOIN orchestrate_runs r ON r.run_id = s.run_id WHERE {' AND '.join(where)}"
            " ORDER BY s.finished_at DESC LIMIT ?"
        )
        rows = await self._db.fetch(sql, (*params, last))
        return [(str(r[0]), _sql.step_from_row(r[1:])) for r in rows]

    async def queue_depths(self, *, now: float) -> list[QueueDepth]:
        """Due runs per queue: two ranges of the ``(status, wake_at)`` index."""
        rows = await self._db.fetch(QUEUE_DEPTHS, (now, now))
        return [QueueDepth(queue=str(r[0]), due=int(r[1]), oldest_due_at=float(r[2])) for r in rows]

    async def steps_since(self, names: Sequence[str], *, after: float, limit: int) -> list[tuple[str, StepRecord]]:
        """Oldest first: a range of the ``(name, finished_at)`` index per name."""
        if not names:
            return []
        marks = ", ".join("?" for _ in names)
        sql = (
            f"SELECT COALESCE(r.workflow, ''), {_STEP_COLUMNS} FROM orchestrate_steps s"
            f" LEFT JOIN orchestrate_runs r ON r.run_id = s.run_id WHERE s.name IN ({marks}) AND s.finished_at >= ?"
            " ORDER BY s.finished_at, s.run_id, s.step_key LIMIT ?"
        )
        rows = await self._db.fetch(sql, (*names, after, limit))
        return [(str(r[0]), _sql.step_from_row(r[1:])) for r in rows]

    async def add_feedback(self, record: FeedbackRecord) -> FeedbackRecord:
        """Insert unless present; the stored entry."""
        data = _sql.to_json(record.data, f"feedback {record.feedback_id!r}: its data") or "{}"
        params = (
            record.feedback_id,
            record.run_id,
            record.workflow,
            record.at,
            record.by,
            record.outcome,
            record.score,
            record.label,
            record.step,
            data,
        )
        if await self._db.execute(INSERT_FEEDBACK, params):
            return record
        rows = await self._db.fetch(FEEDBACK_BY_ID, (record.feedback_id,))
        return _feedback(rows[0]) if rows else record

    async def list_feedback(
        self,
        *,
        run_id: str | None = None,
        workflow: str | None = None,
        after: float | None = None,
        limit: int = 100,
    ) -> list[FeedbackRecord]:
        """Oldest first."""
        where: list[str] = []
        params: list[Any] = []
        for column, value in (("run_id", run_id), ("workflow", workflow)):
            if value is not None:
                where.append(f"{column} = ?")
                params.append(value)
        if after is not None:
            where.append("at >= ?")
            params.append(after)
        clause = f" WHERE {' AND '.join(where)}" if where else ""
        sql = f"SELECT {_FEEDBACK_COLUMNS} FROM orchestrate_feedback{clause} ORDER BY at, feedback_id LIMIT ?"
        return [_feedback(r) for r in await self._db.fetch(sql, (*params, limit))]

    async def insert_alert(self, record: AlertRecord) -> bool:
        """Insert unless present (version 1)."""
        params = (
            record.alert_id,
            record.workflow,
            record.monitor,
            record.step,
            record.incident,
            record.state.value,
            record.value,
            record.reason,
            record.action,
            record.fired_at,
            record.updated_at,
            record.resolved_at,
            record.acked_at,
            record.acked_by,
            1,
        )
        inserted = bool(await self._db.execute(INSERT_ALERT, params))
        if inserted:
            record.version = 1
        return inserted

    async def update_alert(self, record: AlertRecord, *, expected_version: int) -> bool:
        """Compare-and-set on the version."""
        params = (
            record.state.value,
            record.value,
            record.reason,
            record.updated_at,
            record.resolved_at,
            record.acked_at,
            record.acked_by,
            expected_version + 1,
            record.alert_id,
            expected_version,
        )
        saved = bool(await self._db.execute(UPDATE_ALERT, params))
        if saved:
            record.version = expected_version + 1
        return saved

    async def get_alert(self, alert_id: str) -> AlertRecord | None:
        """The alert, or ``None``."""
        rows = await self._db.fetch(ALERT_BY_ID, (alert_id,))
        return _alert(rows[0]) if rows else None

    async def list_alerts(
        self,
        *,
        states: Sequence[AlertState] | None = None,
        workflow: str | None = None,
        diverting: bool = False,
        limit: int = 100,
    ) -> list[AlertRecord]:
        """Newest first."""
        where: list[str] = []
        params: list[Any] = []
        if states is not None:
            where.append(f"state IN ({', '.join('?' for _ in states)})")
            params.extend(s.value for s in states)
        if workflow is not None:
            where.append("workflow = ?")
            params.append(workflow)
        if diverting:
            where.append("action IS NOT NULL AND acked_at IS NULL")
        clause = f" WHERE {' AND '.join(where)}" if where else ""
        sql = f"SELECT {_ALERT_COLUMNS} FROM orchestrate_alerts{clause} ORDER BY fired_at DESC, alert_id DESC LIMIT ?"
        return [_alert(r) for r in await self._db.fetch(sql, (*params, limit))]

    async def last_alert(self, workflow: str, monitor: str) -> AlertRecord | None:
        """The highest incident."""
        rows = await self._db.fetch(LAST_ALERT, (workflow, monitor))
        return _alert(rows[0]) if rows else None


def quality_for(store: Any) -> QualityStore:
    """The :class:`QualityStore` kept in ``store``.

    SQL stores keep feedback and alerts in their database; any other store (memory, a
    test wrapper around one) keeps them in memory beside it, for the life of the process.
    """
    base = unwrap(store)
    dialect = _dialect(base)
    if dialect is not None:
        return SqlQualityStore(base, dialect)
    found = _MEMORY.get(base)
    if found is None:
        found = _MEMORY[base] = MemoryQualityStore(base)
    return found
