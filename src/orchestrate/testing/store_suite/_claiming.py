"""Conformance: claiming many due runs in one call, wake-up hints (stores with :attr:`Capability.CLAIMING`)."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

import pytest

from orchestrate.store.base import (
    Capability,
    ClaimingStore,
    RunUpdate,
    Store,
    capabilities_of,
)
from orchestrate.testing.store_suite._support import LEASE, T0, _ids, claimed, make_run
from orchestrate.types import RunStatus


class ClaimingConformance:
    """What workers need to claim runs in bulk (see :class:`~orchestrate.store.base.ClaimingStore`).

    Skipped for a store that does not declare :attr:`~orchestrate.store.base.Capability.CLAIMING`.
    """

    @pytest.fixture(autouse=True)
    def _claiming(self, store: Store) -> None:
        if Capability.CLAIMING not in capabilities_of(store):
            pytest.skip(f"{type(store).__name__} does not declare Capability.CLAIMING")

    async def test_a_claiming_store_is_a_claiming_store(self, store: Store) -> None:
        assert isinstance(store, ClaimingStore)

    async def test_claim_due_takes_the_oldest_due_runs_up_to_the_limit(self, store: Any) -> None:
        for i in range(5):
            await store.create_run(make_run(f"r{i}", created_at=T0 - 10 + i))
        await store.create_run(make_run("later", wake_at=T0 + 100))
        await store.create_run(make_run("timer", status=RunStatus.WAITING, wake_at=T0 - 20, created_at=T0 - 30))
        await store.create_run(make_run("signal", status=RunStatus.WAITING, wait_reason="signal:x"))
        got = await store.claim_due(owner="w1", now=T0, lease_seconds=LEASE, limit=3)
        assert _ids(got) == ["timer", "r0", "r1"]
        assert all(r.status is RunStatus.RUNNING and r.owner == "w1" and r.fence == 1 for r in got)
        assert all(r.lease_expires_at == T0 + LEASE for r in got)
        assert await store.get_run("r0") == got[1]
        rest = await store.claim_due(owner="w2", now=T0, lease_seconds=LEASE, limit=10)
        assert _ids(rest) == ["r2", "r3", "r4"]
        assert await store.claim_due(owner="w3", now=T0, lease_seconds=LEASE, limit=10) == []

    async def test_claim_due_takes_expired_leases_and_keeps_held_ones(self, store: Any) -> None:
        old = await claimed(store, "expired", now=T0 - LEASE - 1)
        await claimed(store, "held", now=T0)
        got = await store.claim_due(owner="w2", now=T0, lease_seconds=LEASE, limit=10)
        assert _ids(got) == ["expired"]
        assert got[0].fence == old.fence + 1

    async def test_claim_due_takes_over_runs_of_dead_owners_unless_someone_did(self, store: Any) -> None:
        dead = await claimed(store, "orphan", owner="dead-worker", now=T0)
        await claimed(store, "alive", owner="live-worker", now=T0)
        taken = await claimed(store, "taken", owner="dead-worker", now=T0 - LEASE - 1)
        assert await store.claim_run("taken", owner="other", now=T0, lease_seconds=LEASE) is not None
        got = await store.claim_due(owner="w2", now=T0, lease_seconds=LEASE, limit=10, orphans_of=["dead-worker"])
        assert _ids(got) == ["orphan"]
        assert got[0].fence == dead.fence + 1
        stored = await store.get_run("taken")
        assert stored is not None and (stored.owner, stored.fence) == ("other", taken.fence + 1)
        assert (
            await store.claim_due(owner="w3", now=T0, lease_seconds=LEASE, limit=10, orphans_of=["dead-worker"]) == []
        )

    async def test_claim_due_takes_at_most_the_suspects_asked_for_and_them_first(self, store: Any) -> None:
        for i in range(3):  # held by a worker that died: each claim of them counts a crash
            await claimed(store, f"crashed{i}", owner="dead-worker", now=T0 - LEASE - 10 + i)
        for i in range(3):
            await store.create_run(make_run(f"fresh{i}", created_at=T0 - 5 + i))
        # The suspect comes before the older fresh runs; the claimed runs come back in due order.
        got = await store.claim_due(owner="w2", now=T0, lease_seconds=LEASE, limit=3, suspects=1)
        assert {r.run_id: r.crashes for r in got} == {"crashed0": 1, "fresh0": 0, "fresh1": 0}
        assert await store.claim_due(owner="w2", now=T0, lease_seconds=LEASE, limit=10, suspects=0) == [
            await store.get_run("fresh2")
        ]
        assert await store.claim_due(owner="w2", now=T0, lease_seconds=LEASE, limit=10, suspects=0) == []
        # A dead owner's runs, before their lease expires, are suspects too.
        await claimed(store, "orphan", owner="gone", now=T0)
        taken = await store.claim_due(
            owner="w3", now=T0, lease_seconds=LEASE, limit=10, orphans_of=["gone"], suspects=1
        )
        assert _ids(taken) == ["crashed1"]
        rest = await store.claim_due(owner="w3", now=T0, lease_seconds=LEASE, limit=10, orphans_of=["gone"])
        assert {r.run_id: r.crashes for r in rest} == {"crashed2": 1, "orphan": 1}

    async def test_a_released_suspect_stays_a_suspect(self, store: Any) -> None:
        await claimed(store, "r1", owner="dead-worker", now=T0 - LEASE - 1)
        (got,) = await store.claim_due(owner="w2", now=T0, lease_seconds=LEASE, limit=1)
        assert got.crashes == 1
        await store.update_run(
            "r1", fence=got.fence, now=T0 + 1, update=RunUpdate(status=RunStatus.PENDING), event=None
        )
        assert await store.claim_due(owner="w3", now=T0 + 2, lease_seconds=LEASE, limit=5, suspects=0) == []
        (again,) = await store.claim_due(owner="w3", now=T0 + 2, lease_seconds=LEASE, limit=5, suspects=1)
        assert (again.run_id, again.crashes) == ("r1", 1)

    async def test_claim_due_only_takes_the_versions_and_queues_asked_for(self, store: Any) -> None:
        await store.create_run(make_run("a1", workflow="a"))
        await store.create_run(dataclasses.replace(make_run("a2", workflow="a"), version="2"))
        await store.create_run(make_run("b1", workflow="b", queue="urgent"))
        await store.create_run(make_run("c1", workflow="c", queue="urgent"))
        assert await store.claim_due(owner="w", now=T0, lease_seconds=LEASE, limit=10, versions=[]) == []
        assert await store.claim_due(owner="w", now=T0, lease_seconds=LEASE, limit=10, queues=[]) == []
        got = await store.claim_due(owner="w", now=T0, lease_seconds=LEASE, limit=10, versions=[("a", "1"), ("b", "1")])
        assert sorted(_ids(got)) == ["a1", "b1"]
        got = await store.claim_due(owner="w", now=T0, lease_seconds=LEASE, limit=10, queues=["urgent", "batch"])
        assert _ids(got) == ["c1"]
        left = await store.get_run("a2")
        assert left is not None and left.status is RunStatus.PENDING

    async def test_concurrent_claimers_never_share_a_run(self, store: Any) -> None:
        for i in range(30):
            await store.create_run(make_run(f"r{i:02}", created_at=T0 + i))
        batches = await asyncio.gather(
            *(store.claim_due(owner=f"w{i}", now=T0 + 100, lease_seconds=LEASE, limit=4) for i in range(10))
        )
        taken = [r.run_id for batch in batches for r in batch]
        assert len(taken) == len(set(taken))
        rest = await store.claim_due(owner="last", now=T0 + 100, lease_seconds=LEASE, limit=100)
        assert sorted(taken + _ids(rest)) == [f"r{i:02}" for i in range(30)]
        for batch in batches:
            for run in batch:
                stored = await store.get_run(run.run_id)
                assert stored is not None and (stored.owner, stored.fence) == (run.owner, 1)

    async def test_seconds_until_due_counts_timers_schedules_and_leases(self, store: Any) -> None:
        assert await store.seconds_until_due(now=T0) is None
        await store.create_run(make_run("signal", status=RunStatus.WAITING, wait_reason="signal:x"))
        assert await store.seconds_until_due(now=T0) is None  # only a signal can wake it
        await store.create_run(make_run("timer", status=RunStatus.WAITING, wake_at=T0 + 50))
        assert await store.seconds_until_due(now=T0) == 50
        await claimed(store, "held", now=T0 - LEASE + 20)
        assert await store.seconds_until_due(now=T0) == 20
        assert await store.seconds_until_due(now=T0, queues=["other"]) is None
        await store.create_run(make_run("scheduled", wake_at=T0 + 5, workflow="x"))
        assert await store.seconds_until_due(now=T0) == 5
        assert await store.seconds_until_due(now=T0, versions=[("wf", "1")]) == 20
        await store.create_run(make_run("now", workflow="y"))
        assert await store.seconds_until_due(now=T0) == 0

    async def test_wait_for_work_times_out_when_nothing_happens(self, store: Any) -> None:
        await store.wait_for_work(2)  # a notifying store reports in once when it starts listening
        assert await store.wait_for_work(0.05) is False
