"""Stores: where runs, step records, events and timers live.

Pick one by URL with :func:`open_store`:

* ``memory://`` — :class:`InMemoryStore`, nothing survives the process;
* ``sqlite:///path/to.db`` — :class:`~orchestrate.store.sqlite.SQLiteStore`, embedded
  and durable (the default is ``sqlite:///.orchestrate/orchestrate.db``);
* ``postgresql://…`` — the PostgreSQL store for many workers on many machines.

Every store refuses a value whose JSON is over its :class:`PayloadLimits` (2 MiB by
default; ``?max_payload_bytes=`` in the URL or ``$ORCHESTRATE_MAX_PAYLOAD_BYTES``), measured
on what a step record holds after a large output went to the store's blob store (a
directory next to a SQLite file, ``?blob_dir=``, or :func:`use_blob_store`).

Backends are imported lazily so that a missing optional driver only matters when used.
"""

from __future__ import annotations

from orchestrate.errors import InvalidInputError
from orchestrate.store._blobs import BlobStore, FileBlobStore, MemoryBlobStore, use_blob_store
from orchestrate.store._limits import PayloadLimits
from orchestrate.store.base import (
    SCHEMA_VERSION,
    AttemptState,
    CacheEntry,
    Event,
    RunRecord,
    RunUpdate,
    StepRecord,
    Store,
)
from orchestrate.store.memory import InMemoryStore

DEFAULT_URL = "sqlite:///.orchestrate/orchestrate.db"
"""The store used when no URL is given (and ``$ORCHESTRATE_STORE`` is unset): a SQLite file
under ``.orchestrate/`` in the current directory."""

__all__ = [
    "DEFAULT_URL",
    "SCHEMA_VERSION",
    "AttemptState",
    "BlobStore",
    "CacheEntry",
    "Event",
    "FileBlobStore",
    "InMemoryStore",
    "MemoryBlobStore",
    "PayloadLimits",
    "RunRecord",
    "RunUpdate",
    "StepRecord",
    "Store",
    "open_store",
    "use_blob_store",
]


def open_store(url: str | None = None, *, create: bool = True, read_only: bool = False) -> Store:
    """Build the store for ``url`` (not yet opened: ``await store.open()``).

    ``create=False`` makes opening a SQLite file that does not exist (or holds no
    orchestrate schema) an error instead of creating an empty store; other stores ignore
    it. ``read_only=True`` opens a SQL store that never writes: no file, table or
    migration is created, and a schema older than this code is refused (for commands
    that only read).

    Raises:
        InvalidInputError: the URL's scheme is unknown.
    """
    url = url or DEFAULT_URL
    scheme = url.split(":", 1)[0].lower()
    if scheme == "memory":
        return InMemoryStore(url)
    if scheme == "sqlite":
        from orchestrate.store.sqlite import SQLiteStore

        return SQLiteStore(url, create=create, read_only=read_only)
    if scheme in ("postgresql", "postgres"):
        try:
            from orchestrate.store.postgres import PostgresStore  # type: ignore[import-not-found,unused-ignore]
        except ImportError as exc:
            raise InvalidInputError(
                f"store URL {url!r} needs the PostgreSQL backend: pip install 'orchestrate-ai[postgres]'"
            ) from exc
        store: Store = PostgresStore(url, read_only=read_only)
        return store
    raise InvalidInputError(f"unknown store URL {url!r}: use memory://, sqlite:///path or postgresql://...")
