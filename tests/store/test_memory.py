"""The store conformance suite against ``InMemoryStore``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from orchestrate.store import InMemoryStore, open_store
from orchestrate.store.base import Capability, capabilities_of
from orchestrate.store.retrying import RetryingStore
from orchestrate.testing import FaultyStore
from orchestrate.testing.store_suite import (
    ClaimingConformance,
    ClaimsConformance,
    LimitsConformance,
    PayloadsConformance,
    ReviewsConformance,
    RunsConformance,
    StepsConformance,
)


class TestInMemoryStore(
    RunsConformance,
    ClaimsConformance,
    StepsConformance,
    ReviewsConformance,
    PayloadsConformance,
    ClaimingConformance,
    LimitsConformance,
):
    """Every part of the suite but migrations: a memory store keeps nothing between openings."""

    @pytest.fixture
    async def store(self) -> AsyncIterator[InMemoryStore]:
        store = InMemoryStore()
        await store.open()
        yield store
        await store.close()


def test_open_store_picks_memory() -> None:
    assert isinstance(open_store("memory://"), InMemoryStore)


def test_stores_declare_what_they_offer(tmp_path: Path) -> None:
    memory = InMemoryStore()
    assert capabilities_of(memory) == {Capability.CLAIMING, Capability.LIMITS}
    sqlite = open_store(f"sqlite:///{tmp_path / 'c.db'}")
    assert capabilities_of(sqlite) == set(Capability)
    # A wrapper declares nothing: shared and fallible (its faults are), with what its methods offer.
    assert capabilities_of(FaultyStore(memory, fail_on={})) == set(Capability)
    assert capabilities_of(RetryingStore(memory)) >= {Capability.SHARED, Capability.TRANSIENT_FAILURES}
    assert capabilities_of(object()) == {Capability.SHARED, Capability.TRANSIENT_FAILURES}
