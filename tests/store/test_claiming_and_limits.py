"""Shared rate limiters and circuit breakers over every store, and the window's arithmetic.

What a store itself must do for claiming and shared limits is in the conformance suite
(:mod:`orchestrate.testing.store_suite`); these tests drive the policies that use it,
against memory, SQLite and PostgreSQL (caller's clock, so that time is driven by the test).
"""

from __future__ import annotations

import asyncio
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
from orchestrate.store.postgres import PostgresStore
from orchestrate.store.sqlite import SQLiteStore
from orchestrate.testing.clock import FakeClock
from orchestrate.testing.store_suite import T0

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
