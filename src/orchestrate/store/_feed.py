"""Reading the history as a feed: the events after an id, across runs or of one run.

What the server's live streams poll. Event ids grow with every append in every store,
so "after this id" resumes a stream exactly (``Last-Event-ID``). The SQL stores answer
from the events table's primary key; any other store from its history lists.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from orchestrate.store import _access_sql
from orchestrate.store._access_sql import unwrap as _unwrap
from orchestrate.store.base import Event
from orchestrate.store.memory import InMemoryStore


async def events_after(
    store: Any,
    after: int,
    *,
    kinds: Sequence[str] | None = None,
    run_id: str | None = None,
    limit: int = 200,
) -> list[Event]:
    """Events with an id above ``after``, oldest first: of ``run_id``'s run, of ``kinds``, at most ``limit``."""
    found = await _access_sql.events_after(_unwrap(store), after, kinds=kinds, run_id=run_id, limit=limit)
    if found is not None:
        return found
    base = _unwrap(store)
    if run_id is not None:
        events = [e for e in await store.list_events(run_id) if e.id > after]
    elif isinstance(base, InMemoryStore):
        events = sorted((e for run in list(base._events.values()) for e in run if e.id > after), key=lambda e: e.id)
    else:
        return []
    if kinds is not None:
        wanted = set(kinds)
        events = [e for e in events if e.kind in wanted]
    return events[:limit]


async def newest_event_id(store: Any) -> int:
    """The id of the newest event in the store (0 when there is none)."""
    found = await _access_sql.last_event_id(_unwrap(store))
    if found is not None:
        return found
    base = _unwrap(store)
    if isinstance(base, InMemoryStore):
        return base._event_id
    return 0
