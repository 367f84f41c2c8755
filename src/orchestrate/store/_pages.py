"""Pages of runs for listings that filter by time and text and resume after a cursor.

Newest first, by ``(created_at, run_id)``; ``after`` is the last run of the previous
page. The SQL stores answer with one indexed query; any other store filters its listing.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from orchestrate.store import _access_sql
from orchestrate.store.base import RunRecord
from orchestrate.types import RunStatus

SCAN_LIMIT = 100_000
"""The most runs a store without SQL reads for one page."""


async def page_runs(
    store: Any,
    *,
    status: Sequence[RunStatus] | None = None,
    workflow: str | None = None,
    since: float | None = None,
    until: float | None = None,
    text: str | None = None,
    after: tuple[float, str] | None = None,
    limit: int = 50,
) -> list[RunRecord]:
    """Up to ``limit`` runs, newest first, that match every filter given (without values).

    ``text`` matches the start of a run id, or any part of a workflow name or an error
    message, case-insensitively.
    """
    found = await _access_sql.page_runs(
        store, status=status, workflow=workflow, since=since, until=until, text=text, after=after, limit=limit
    )
    if found is not None:
        return found
    runs = await store.list_runs(status=status, workflow=workflow, limit=SCAN_LIMIT, values=False)
    needle = text.lower() if text else None
    out: list[RunRecord] = []
    for run in runs:
        if since is not None and run.created_at < since:
            continue
        if until is not None and run.created_at >= until:
            continue
        if after is not None and (run.created_at, run.run_id) >= after:
            continue
        if needle is not None and not matches(run, needle):
            continue
        out.append(run)
        if len(out) >= limit:
            break
    return out


def matches(run: RunRecord, needle: str) -> bool:
    """Whether ``run`` matches the lowercase text ``needle``."""
    message = str((run.error or {}).get("message") or "")
    return run.run_id.lower().startswith(needle) or needle in run.workflow.lower() or needle in message.lower()
