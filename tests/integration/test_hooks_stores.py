"""The hooks seam on real stores: each event reported once, on a SQLite file and on PostgreSQL.

A run with a retry, a fallback, a model call and a review gate is started by one engine,
approved through the client, and finished by a second engine on its own connection (as
another process would): the second reports only what it did, never the replayed steps.
PostgreSQL is the one named by ``ORCHESTRATE_TEST_POSTGRES`` (default: the local one), in
a schema of its own that is dropped afterwards.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrate.store import open_store
from tests.postgres import in_schema
from tests.unit.test_hooks import check_support_events, run_support_scenario


@pytest.fixture(params=["sqlite", "postgres"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'hooks.db'}"
        return
    yield from in_schema()


async def test_every_hook_fires_once_per_event_on_a_real_store(store_url: str) -> None:
    first, second, run_id = await run_support_scenario(lambda: open_store(store_url))
    check_support_events(first, second, run_id)
