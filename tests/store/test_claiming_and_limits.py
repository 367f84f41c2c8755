"""What workers need from every store: claiming in one go, wake-up hints, shared limits.

The same tests run against memory, SQLite and PostgreSQL (caller's clock, so that time
is driven by the test).
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest
from psycopg import sql

from orchestrate import Engine, Step, Workflow
from orchestrate.errors import CircuitOpenError, InvalidInputError, RateLimitedError, ServerError
from orchestrate.models.reliability import BreakerState
from orchestrate.policies_shared import SharedCircuitBreaker, SharedRateLimiter
from orchestrate.store import InMemoryStore
from orchestrate.store.base import BreakerRecord, ClaimingStore, LimitsStore, RateGrant, RunUpdate, decide_rate
from orchestrate.store.postgres import PostgresStore
from orchestrate.store.sqlite import SQLiteStore
from orchestrate.testing.clock import FakeClock
from orchestrate.testing.store_suite import LEASE, T0, claimed, make_run
from orchestrate.types import RunStatus

PG = os.environ.get("ORCHESTRATE_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/orchestrate_test")


def _pg_ready() -> str:
    parts = urlsplit(PG)
    admin = urlunsplit((parts.scheme, parts.netloc, "/postgres", parts.query, ""))
    name = parts.path.lstrip("/")
    with psycopg.connect(admin, autocommit=True, connect_timeout=5) as conn:
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone() is None:
            try:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
            except psycopg.errors.DuplicateDatabase:
                pass
    return PG


@pytest.fixture(params=["memory", "sqlite", "postgres"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Any]:
    schema = None
    if request.param == "memory":
        store: Any = InMemoryStore()
    elif request.param == "sqlite":
        store = SQLiteStore(f"sqlite:///{tmp_path / 'w.db'}")
    else:
        schema = f"t_{uuid.uuid4().hex[:16]}"
        store = PostgresStore(_pg_ready(), schema=schema, clock="caller", max_connections=6)
    await store.open()
    yield store
    await store.close()
    if schema is not None:
        with psycopg.connect(PG, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))


def _ids(runs: list[Any]) -> list[str]:
    return [r.run_id for r in runs]


# claiming ----------------------------------------------------------------------------------


async def test_every_store_claims_and_limits(store: Any) -> None:
    assert isinstance(store, ClaimingStore)
    assert isinstance(store, LimitsStore)


async def test_claim_due_takes_the_oldest_due_runs_up_to_the_limit(store: Any) -> None:
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


async def test_claim_due_takes_expired_leases_and_keeps_held_ones(store: Any) -> None:
    old = await claimed(store, "expired", now=T0 - LEASE - 1)
    await claimed(store, "held", now=T0)
    got = await store.claim_due(owner="w2", now=T0, lease_seconds=LEASE, limit=10)
    assert _ids(got) == ["expired"]
    assert got[0].fence == old.fence + 1


async def test_claim_due_takes_over_runs_of_dead_owners_unless_someone_did(store: Any) -> None:
    dead = await claimed(store, "orphan", owner="dead-worker", now=T0)
    await claimed(store, "alive", owner="live-worker", now=T0)
    taken = await claimed(store, "taken", owner="dead-worker", now=T0 - LEASE - 1)
    assert await store.claim_run("taken", owner="other", now=T0, lease_seconds=LEASE) is not None
    got = await store.claim_due(owner="w2", now=T0, lease_seconds=LEASE, limit=10, orphans_of=["dead-worker"])
    assert _ids(got) == ["orphan"]
    assert got[0].fence == dead.fence + 1
    stored = await store.get_run("taken")
    assert stored is not None and (stored.owner, stored.fence) == ("other", taken.fence + 1)
    assert await store.claim_due(owner="w3", now=T0, lease_seconds=LEASE, limit=10, orphans_of=["dead-worker"]) == []


async def test_claim_due_takes_at_most_the_suspects_asked_for_and_them_first(store: Any) -> None:
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
    taken = await store.claim_due(owner="w3", now=T0, lease_seconds=LEASE, limit=10, orphans_of=["gone"], suspects=1)
    assert _ids(taken) == ["crashed1"]
    rest = await store.claim_due(owner="w3", now=T0, lease_seconds=LEASE, limit=10, orphans_of=["gone"])
    assert {r.run_id: r.crashes for r in rest} == {"crashed2": 1, "orphan": 1}


async def test_a_released_suspect_stays_a_suspect(store: Any) -> None:
    await claimed(store, "r1", owner="dead-worker", now=T0 - LEASE - 1)
    (got,) = await store.claim_due(owner="w2", now=T0, lease_seconds=LEASE, limit=1)
    assert got.crashes == 1
    await store.update_run("r1", fence=got.fence, now=T0 + 1, update=RunUpdate(status=RunStatus.PENDING), event=None)
    assert await store.claim_due(owner="w3", now=T0 + 2, lease_seconds=LEASE, limit=5, suspects=0) == []
    (again,) = await store.claim_due(owner="w3", now=T0 + 2, lease_seconds=LEASE, limit=5, suspects=1)
    assert (again.run_id, again.crashes) == ("r1", 1)


async def test_claim_due_only_takes_the_versions_and_queues_asked_for(store: Any) -> None:
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


async def test_concurrent_claimers_never_share_a_run(store: Any) -> None:
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


async def test_seconds_until_due_counts_timers_schedules_and_leases(store: Any) -> None:
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


async def test_wait_for_work_times_out_when_nothing_happens(store: Any) -> None:
    await store.wait_for_work(2)  # a notifying store reports in once when it starts listening
    assert await store.wait_for_work(0.05) is False


# shared rate windows -------------------------------------------------------------------------


def test_decide_rate_is_a_sliding_window() -> None:
    window = [(T0, 1.0), (T0 + 2, 1.0), (T0 + 4, 1.0)]
    assert decide_rate(window[:2], limit=3, per_seconds=10, cost=1, now=T0 + 5) == RateGrant(True, T0 + 5)
    # A caller whose clock lags is stamped at the latest grant, never before it.
    assert decide_rate(window, limit=4, per_seconds=10, cost=1, now=T0 + 3) == RateGrant(True, T0 + 4)
    assert decide_rate(window, limit=3, per_seconds=10, cost=1, now=T0 + 5) == RateGrant(False, T0 + 5, 5.0)
    assert decide_rate(window, limit=3, per_seconds=10, cost=2, now=T0 + 5) == RateGrant(False, T0 + 5, 7.0)
    assert decide_rate([], limit=3, per_seconds=10, cost=50, now=T0) == RateGrant(True, T0)  # waits, not forever
    assert decide_rate(window, limit=3, per_seconds=10, cost=50, now=T0 + 5).granted is False


async def test_acquire_rate_grants_up_to_the_limit_per_window(store: Any) -> None:
    grants = [await store.acquire_rate("api", limit=3, per_seconds=10, now=T0 + i) for i in range(4)]
    assert [g.granted for g in grants] == [True, True, True, False]
    assert grants[3].wait_seconds == pytest.approx(7.0)  # the first grant leaves the window at T0 + 10
    assert (await store.acquire_rate("other", limit=3, per_seconds=10, now=T0 + 3)).granted
    assert not (await store.acquire_rate("api", limit=3, per_seconds=10, now=T0 + 9.5)).granted
    assert (await store.acquire_rate("api", limit=3, per_seconds=10, now=T0 + 10)).granted
    assert not (await store.acquire_rate("api", limit=3, per_seconds=10, now=T0 + 10.5)).granted


async def test_concurrent_acquisitions_never_overfill_the_window(store: Any) -> None:
    results = await asyncio.gather(
        *(store.acquire_rate("api", limit=7, per_seconds=10, now=T0 + i * 0.01) for i in range(40))
    )
    assert sum(g.granted for g in results) == 7


async def test_breaker_state_is_compare_and_set(store: Any) -> None:
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


# SharedRateLimiter / SharedCircuitBreaker ------------------------------------------------------


async def test_shared_rate_limiter_queues_and_no_window_exceeds_the_limit(store: Any) -> None:
    grants: list[float] = []
    clock = FakeClock(T0, auto_advance=True)  # the waits pass on the clock, not in real time

    async def call() -> None:
        limiter = SharedRateLimiter("model", limit=4, per_seconds=0.3, store=store, clock=clock)  # one per "worker"
        await limiter.acquire()
        assert limiter.last_grant_at is not None
        grants.append(limiter.last_grant_at)

    await asyncio.gather(*(call() for _ in range(10)))
    grants.sort()
    assert len(grants) == 10
    for i, start in enumerate(grants):
        assert sum(1 for g in grants[i:] if g < start + 0.3) <= 4
    assert grants[-1] - grants[0] >= 0.6  # ten calls at four a window need three windows


async def test_shared_rate_limiter_gives_up_after_max_wait(store: Any) -> None:
    limiter = SharedRateLimiter("model", limit=1, per_seconds=3600, store=store, max_wait=0.0)
    await limiter.acquire()
    with pytest.raises(RateLimitedError, match="had no room") as info:
        await limiter.acquire()
    assert info.value.retry_after is not None and info.value.retry_after > 3000


async def test_shared_breaker_opens_for_every_worker_and_recovers(store: Any) -> None:
    clock = FakeClock(T0)
    one, two = (
        SharedCircuitBreaker("api", failure_threshold=3, window=60, recovery_timeout=0.3, store=store, clock=clock)
        for _ in range(2)
    )
    for breaker in (one, two, one):
        assert await breaker.allow()
        assert await breaker.record_failure(ServerError("503", status_code=503))
    assert await one.state() is BreakerState.OPEN
    assert await two.allow() is False
    assert await two.retry_after() > 0
    with pytest.raises(CircuitOpenError):
        async with two.guard():
            pass
    clock.advance(0.29)
    assert await two.state() is BreakerState.OPEN
    clock.advance(0.02)
    assert await two.state() is BreakerState.HALF_OPEN
    assert await one.allow() is True  # the one trial call, for both workers
    assert await two.allow() is False
    await one.record_success()
    assert await two.state() is BreakerState.CLOSED
    assert not await two.record_failure(ValueError("not the endpoint's fault"))
    assert await two.state() is BreakerState.CLOSED


async def test_concurrent_failures_are_all_counted(store: Any) -> None:
    breakers = [SharedCircuitBreaker("api", failure_threshold=8, window=60, store=store) for _ in range(8)]
    await asyncio.gather(*(b.record_failure(TimeoutError()) for b in breakers[:7]))
    assert await breakers[0].state() is BreakerState.CLOSED
    await breakers[7].record_failure(TimeoutError())
    assert await breakers[0].state() is BreakerState.OPEN


async def test_shared_limits_need_a_store_outside_a_step() -> None:
    with pytest.raises(InvalidInputError, match="needs a store"):
        await SharedRateLimiter("x", limit=1, per_seconds=1).acquire()


async def test_a_step_uses_the_store_and_clock_of_its_engine() -> None:
    limiter = SharedRateLimiter("endpoint", limit=10, per_seconds=60)
    breaker = SharedCircuitBreaker("endpoint")

    async def call(x: int) -> int:
        async with breaker.guard():
            await limiter.acquire()
        return x + 1

    store, clock = InMemoryStore(), FakeClock(T0 - 1000)
    wf = Workflow("limited", [Step("call", call)], version="1")
    async with Engine(store, workflows=[wf], clock=clock) as engine:
        assert await engine.run(wf, 1) == 2
    assert limiter.last_grant_at == clock.now()
    assert (await store.load_breaker("endpoint", now=clock.now()))[0].state == "closed"
    assert (await store.acquire_rate("endpoint", limit=1, per_seconds=60, now=clock.now())).granted is False
