"""The store conformance suite against ``InMemoryStore``."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from orchestrate.store import InMemoryStore, open_store
from orchestrate.testing.store_suite import StoreConformance


class TestInMemoryStore(StoreConformance):
    @pytest.fixture
    async def store(self) -> AsyncIterator[InMemoryStore]:
        store = InMemoryStore()
        await store.open()
        yield store
        await store.close()


def test_open_store_picks_memory() -> None:
    assert isinstance(open_store("memory://"), InMemoryStore)
