"""Conformance: rate windows and breakers shared by every worker (stores with :attr:`Capability.LIMITS`)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from orchestrate.store.base import (
    BreakerRecord,
    Capability,
    LimitsStore,
    Store,
    capabilities_of,
)
from orchestrate.testing.store_suite._support import T0


class LimitsConformance:
    """Shared limits (see :class:`~orchestrate.store.base.LimitsStore`): windows and breakers.

    Skipped for a store that does not declare :attr:`~orchestrate.store.base.Capability.LIMITS`.
    """

    @pytest.fixture(autouse=True)
    def _limits(self, store: Store) -> None:
        if Capability.LIMITS not in capabilities_of(store):
            pytest.skip(f"{type(store).__name__} does not declare Capability.LIMITS")

    async def test_a_limits_store_is_a_limits_store(self, store: Store) -> None:
        assert isinstance(store, LimitsStore)

    async def test_acquire_rate_grants_up_to_the_limit_per_window(self, store: Any) -> None:
        grants = [await store.acquire_rate("api", limit=3, per_seconds=10, now=T0 + i) for i in range(4)]
        assert [g.granted for g in grants] == [True, True, True, False]
        assert grants[3].wait_seconds == pytest.approx(7.0)  # the first grant leaves the window at T0 + 10
        assert (await store.acquire_rate("other", limit=3, per_seconds=10, now=T0 + 3)).granted
        assert not (await store.acquire_rate("api", limit=3, per_seconds=10, now=T0 + 9.5)).granted
        assert (await store.acquire_rate("api", limit=3, per_seconds=10, now=T0 + 10)).granted
        assert not (await store.acquire_rate("api", limit=3, per_seconds=10, now=T0 + 10.5)).granted

    async def test_concurrent_acquisitions_never_overfill_the_window(self, store: Any) -> None:
        results = await asyncio.gather(
            *(store.acquire_rate("api", limit=7, per_seconds=10, now=T0 + i * 0.01) for i in range(40))
        )
        assert sum(g.granted for g in results) == 7

    async def test_breaker_state_is_compare_and_set(self, store: Any) -> None:
        record, at = await store.load_breaker("api", now=T0)
        assert (record, at) == (BreakerRecord(resource="api"), T0)
        record.state, record.failures, record.opened_at = "open", [T0 - 1.5, T0], T0
        assert await store.save_breaker(record, expected_version=0) is True
        assert record.version == 1
        stale = BreakerRecord(resource="api", state="closed")
        assert await store.save_breaker(stale, expected_version=0) is False
        loaded, _ = await store.load_breaker("api", now=T0)
        assert loaded == record
        loaded.state = "half_open"
        assert await store.save_breaker(loaded, expected_version=1) is True
        assert await store.save_breaker(BreakerRecord(resource="api"), expected_version=1) is False
        assert (await store.load_breaker("api", now=T0))[0].version == 2
