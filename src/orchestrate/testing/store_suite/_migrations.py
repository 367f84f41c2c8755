"""Conformance: opening a store that already holds data (the schema is current, nothing is lost)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from orchestrate.errors import SchemaVersionError
from orchestrate.store.base import SCHEMA_VERSION, Store
from orchestrate.testing.store_suite._support import T0, claimed, make_run, make_step

Reopen = Callable[[], Awaitable[Store]]
"""Opens (and returns) another instance of the backend on the same data as the ``store`` fixture."""

SetSchemaVersion = Callable[[int], Awaitable[None]]
"""Records ``version`` as the schema version of the ``store`` fixture's data, bypassing the store."""


class MigrationsConformance:
    """What every opening of a store must do: find or bring the schema to :data:`SCHEMA_VERSION`.

    A backend that keeps data between openings provides two fixtures: ``reopen`` (a
    :data:`Reopen`, e.g. a new store on the same file, database or schema) and
    ``set_schema_version`` (a :data:`SetSchemaVersion`, writing the version where the
    backend keeps it). Without them (the defaults) these tests are skipped.
    """

    @pytest.fixture
    def reopen(self) -> Reopen:
        """Override: open another instance of the backend on the ``store`` fixture's data."""
        pytest.skip("no `reopen` fixture: the backend keeps nothing between openings")

    @pytest.fixture
    def set_schema_version(self) -> SetSchemaVersion:
        """Override: write a schema version into the ``store`` fixture's data."""
        pytest.skip("no `set_schema_version` fixture")

    async def test_another_opening_finds_the_schema_current_and_the_data(self, store: Store, reopen: Reopen) -> None:
        run = await claimed(store, "r1")
        await store.record_step(make_step("r1", "a", 1), fence=run.fence, now=T0)
        other = await reopen()
        try:
            assert await other.schema_version() == SCHEMA_VERSION
            assert await other.get_run("r1") == await store.get_run("r1")
            assert [s.step_key for s in await other.get_steps("r1")] == ["a"]
            await other.create_run(make_run("r2"))
        finally:
            await other.close()
        assert await store.get_run("r2") is not None  # one store, seen by both openings

    async def test_openings_at_once_all_succeed(self, store: Store, reopen: Reopen) -> None:
        others = await asyncio.gather(*(reopen() for _ in range(3)))
        try:
            for other in others:
                assert await other.schema_version() == SCHEMA_VERSION
        finally:
            for other in others:
                await other.close()

    async def test_a_schema_newer_than_the_code_is_refused(
        self, store: Store, reopen: Reopen, set_schema_version: SetSchemaVersion
    ) -> None:
        await store.create_run(make_run("r1"))
        await set_schema_version(SCHEMA_VERSION + 1)
        try:
            with pytest.raises(SchemaVersionError, match=str(SCHEMA_VERSION + 1)):
                await reopen()
        finally:
            await set_schema_version(SCHEMA_VERSION)
        assert await store.get_run("r1") is not None  # refused, not damaged
