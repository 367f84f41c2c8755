"""The store conformance suite against ``PostgresStore``, plus what only PostgreSQL has.

Runs against the real server named by ``ORCHESTRATE_TEST_POSTGRES`` (default: the local
one, database ``orchestrate_test``, created when missing). Every test gets a schema of
its own, dropped afterwards, so tests are isolated and may run side by side.
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest
from click.testing import CliRunner
from psycopg import sql

from orchestrate import Engine, Retry, RunStatus, Step, Workflow
from orchestrate.cli import cli
from orchestrate.errors import (
    InvalidInputError,
    LeaseLostError,
    RunNotFoundError,
    SchemaVersionError,
    StoreAccessError,
    StoreError,
)
from orchestrate.store import SCHEMA_VERSION, open_store
from orchestrate.store import _pg_sql as q
from orchestrate.store import _sql as shared_sql
from orchestrate.store.base import AttemptState, BreakerRecord, Event, RunRecord, RunUpdate
from orchestrate.store.postgres import PostgresStore
from orchestrate.testing.store_suite import LEASE, T0, Reopen, SetSchemaVersion, StoreConformance, make_run, make_step

URL = os.environ.get("ORCHESTRATE_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/orchestrate_test")


def _with_path(url: str, path: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, path, parts.query, parts.fragment))


@pytest.fixture(scope="session")
def pg_url() -> str:
    """The test database, created if missing; a clear failure when the server is down."""
    name = urlsplit(URL).path.lstrip("/")
    try:
        with psycopg.connect(_with_path(URL, "/postgres"), autocommit=True, connect_timeout=5) as conn:
            if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone() is None:
                try:
                    conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
                except psycopg.errors.DuplicateDatabase:
                    pass
    except psycopg.OperationalError as exc:
        pytest.fail(f"PostgreSQL at {URL} is not reachable ({exc}); start it with `make services`")
    return URL


def _sync(pg_url: str, statement: str | sql.Composed, params: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
    with psycopg.connect(pg_url, autocommit=True) as conn:
        cur = conn.execute(statement, params)
        return cur.fetchall() if cur.description else []


@pytest.fixture
def schema(pg_url: str) -> Iterator[str]:
    name = f"t_{uuid.uuid4().hex[:16]}"
    yield name
    _sync(pg_url, sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(name)))


def _in(schema: str, table: str) -> sql.Composed:
    return sql.SQL("{}.{}").format(sql.Identifier(schema), sql.Identifier(table))


class TestPostgresStore(StoreConformance):
    """The shared suite drives time itself, so it runs with the caller's clock."""

    @pytest.fixture
    async def store(self, pg_url: str, schema: str) -> AsyncIterator[PostgresStore]:
        store = PostgresStore(pg_url, schema=schema, clock="caller", max_connections=4)
        await store.open()
        yield store
        await store.close()

    @pytest.fixture
    def reopen(self, pg_url: str, schema: str) -> Reopen:
        async def reopen() -> PostgresStore:
            other = PostgresStore(pg_url, schema=schema, clock="caller", max_connections=2)
            await other.open()
            return other

        return reopen

    @pytest.fixture
    def set_schema_version(self, pg_url: str, schema: str) -> SetSchemaVersion:
        async def set_version(version: int) -> None:
            statement = sql.SQL("UPDATE {} SET value = %s WHERE key = 'schema_version'").format(
                _in(schema, "orchestrate_meta")
            )
            async with await psycopg.AsyncConnection.connect(pg_url, autocommit=True) as conn:
                await conn.execute(statement, (str(version),))

        return set_version


@pytest.fixture
async def store(pg_url: str, schema: str) -> AsyncIterator[PostgresStore]:
    """A store on the database clock (the default)."""
    store = PostgresStore(pg_url, schema=schema, max_connections=4, retry_seconds=15)
    await store.open()
    yield store
    await store.close()


async def _db_now(store: PostgresStore) -> float:
    row = await store._fetchone("now", "SELECT extract(epoch from clock_timestamp())::float8")
    assert row is not None
    return float(row[0])


# URL and construction ----------------------------------------------------------------------


def test_open_store_picks_postgres_for_both_schemes() -> None:
    assert isinstance(open_store("postgresql://u@h/db"), PostgresStore)
    assert isinstance(open_store("postgres://u@h/db"), PostgresStore)


def test_url_options_are_read_and_the_rest_goes_to_libpq() -> None:
    store = PostgresStore(
        "postgresql://u:p@h:5433/db?schema=tenant_1&clock=caller&migrate=false&pool_min=2&pool_max=3"
        "&retry_seconds=5&sslmode=disable&application_name=w1"
    )
    assert (store.schema, store.clock, store.migrate) == ("tenant_1", "caller", False)
    assert (store.min_connections, store.max_connections, store.retry_seconds) == (2, 3, 5.0)
    assert store.conninfo == "postgresql://u:p@h:5433/db?sslmode=disable&application_name=w1"


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://h/db?clock=worker",
        "postgresql://h/db?migrate=maybe",
        "postgresql://h/db?schema=bad-name;drop",
        "postgresql://h/db?pool_min=5&pool_max=2",
        "postgresql://h/db?pool_max=many",
        "mysql://h/db",
    ],
)
def test_bad_urls_are_refused_with_a_clear_error(url: str) -> None:
    with pytest.raises(InvalidInputError):
        PostgresStore(url)


async def test_unreachable_server_fails_with_a_store_error() -> None:
    store = PostgresStore("postgresql://postgres@127.0.0.1:1/nowhere", retry_seconds=1)
    with pytest.raises(StoreError, match="cannot connect"):
        await store.open()


@pytest.mark.parametrize(
    ("message", "retried"),
    [
        ("connection failed: timeout expired", True),
        ("connection failed: FATAL:  the database system is starting up", True),
        ("connection failed: FATAL:  sorry, too many clients already", True),
        ("connection failed: FATAL:  the database system is shutting down", True),
        ('connection failed: FATAL:  password authentication failed for user "x"', False),
        ('connection failed: FATAL:  database "x" does not exist', False),
        ("connection failed: Connection refused", False),
        ("failed to resolve host 'x': [Errno -2] Name or service not known", False),
        ("connection failed: server does not support SSL, but SSL was required", False),
    ],
)
def test_connection_errors_are_told_apart(message: str, retried: bool) -> None:
    from orchestrate.store._pg_conn import _access_fix

    assert (_access_fix(psycopg.OperationalError(message)) is None) is retried


async def test_a_read_only_store_refuses_writes_without_retrying(pg_url: str, schema: str) -> None:
    writer = PostgresStore(pg_url, schema=schema)
    await writer.open()
    await writer.create_run(make_run("r1"))
    await writer.close()
    reader = PostgresStore(pg_url, schema=schema, read_only=True, retry_seconds=30)
    await reader.open()
    try:
        assert [r.run_id for r in await reader.list_runs()] == ["r1"]
        started = time.monotonic()
        with pytest.raises(StoreAccessError, match="read-only transaction"):
            await reader.create_run(make_run("r2"))
        assert time.monotonic() - started < 5
    finally:
        await reader.close()


def _explain(pg_url: str, schema: str, statement: str, params: tuple[object, ...]) -> str:
    with psycopg.connect(pg_url, autocommit=True, options=f"-c search_path={schema}") as conn:
        return "\n".join(row[0] for row in conn.execute(f"EXPLAIN {statement}", params))


async def test_listings_and_pruning_read_indexes_not_the_table(store: PostgresStore, pg_url: str, schema: str) -> None:
    # 20,000 runs, most of them succeeded, over 200 workflows, as statistics see them: a
    # listing of dead runs or of one workflow's runs wants a few rows out of many.
    _sync(
        pg_url,
        sql.SQL(
            "INSERT INTO {} (run_id, workflow, version, status, input, created_at, updated_at)"
            " SELECT 'r' || i, 'wf' || (i %% 200), '1',"
            " CASE i %% 100 WHEN 0 THEN 'dead' WHEN 1 THEN 'pending' ELSE 'succeeded' END,"
            " 'null', i, i FROM generate_series(1, 20000) AS i"
        ).format(_in(schema, "orchestrate_runs")),
    )
    _sync(pg_url, sql.SQL("ANALYZE {}").format(_in(schema, "orchestrate_runs")))
    for status, workflow, index in [
        ([RunStatus.DEAD], None, "orchestrate_runs_status"),
        (None, "wf3", "orchestrate_runs_workflow"),
    ]:
        text, params = shared_sql.list_runs_sql(status, workflow, values=False)
        plan = _explain(pg_url, schema, q.fmt(text), (*params, 50))
        assert f"Index Scan Backward using {index}" in plan, plan
        assert "Seq Scan" not in plan and "Sort" not in plan, plan
    text, params = shared_sql.list_dead_letters_sql(None, values=False)
    plan = _explain(pg_url, schema, q.fmt(text), (*params, 50))
    assert "orchestrate_runs_status" in plan and "Seq Scan on orchestrate_runs" not in plan, plan
    plan = _explain(pg_url, schema, q.PRUNE_COUNT, (["succeeded", "failed"], 100.0))
    assert "orchestrate_runs_ended" in plan and "Seq Scan" not in plan, plan
    assert await store.prune_runs(before=101.0) == 98  # runs 1..100 but pending r1 and dead r100


async def test_tables_live_in_the_schema_with_postgres_types(store: PostgresStore, pg_url: str, schema: str) -> None:
    rows = _sync(
        pg_url,
        "SELECT table_name, column_name, data_type FROM information_schema.columns WHERE table_schema = %s",
        (schema,),
    )
    types = {(t, c): d for t, c, d in rows}
    assert types[("orchestrate_runs", "created_at")] == "double precision"
    assert types[("orchestrate_runs", "fence")] == "bigint"
    assert types[("orchestrate_steps", "seq")] == "bigint"
    assert types[("orchestrate_events", "id")] == "bigint"
    assert ("orchestrate_breakers", "version") in types
    assert ("orchestrate_rate_log", "at") in types


def test_a_store_can_be_opened_again_in_another_event_loop(pg_url: str, schema: str) -> None:
    store = PostgresStore(pg_url, schema=schema)

    async def use(run_id: str) -> int:
        await store.open()
        try:
            await store.create_run(make_run(run_id))
            await store.wait_for_work(5)
            return len(await store.list_runs())
        finally:
            await store.close()

    assert asyncio.run(use("r1")) == 1
    assert asyncio.run(use("r2")) == 2  # the CLI runs each command in a loop of its own


# the database clock ---------------------------------------------------------------------


async def test_leases_are_timed_by_the_database_clock(store: PostgresStore) -> None:
    await store.create_run(make_run("r1"))
    before = await _db_now(store)
    run = await store.claim_run("r1", owner="w1", now=T0, lease_seconds=LEASE)  # the caller's clock is 2023
    after = await _db_now(store)
    assert run is not None and run.lease_expires_at is not None
    assert before + LEASE <= run.lease_expires_at <= after + LEASE
    assert await store.renew_lease("r1", owner="w1", fence=run.fence, now=0.0, lease_seconds=LEASE)
    renewed = await store.get_run("r1")
    assert renewed is not None and renewed.lease_expires_at is not None
    assert renewed.lease_expires_at >= after + LEASE


async def test_a_worker_whose_clock_runs_ahead_cannot_take_a_live_lease(store: PostgresStore) -> None:
    await store.create_run(make_run("r1"))
    held = await store.claim_run("r1", owner="w1", now=time.time(), lease_seconds=LEASE)
    assert held is not None
    skewed = time.time() + 3600  # an hour ahead: by its own clock every lease has expired
    assert await store.claim_run("r1", owner="w2", now=skewed, lease_seconds=LEASE) is None
    assert await store.due_runs(now=skewed) == []
    assert await store.claim_due(owner="w2", now=skewed, lease_seconds=LEASE, limit=10) == []
    assert await store.get_run("r1") == held


async def test_an_expired_lease_is_claimable_whatever_the_worker_clock_says(store: PostgresStore) -> None:
    await store.create_run(make_run("r1"))
    first = await store.claim_run("r1", owner="w1", now=time.time(), lease_seconds=0)
    assert first is not None
    behind = T0  # years behind: by its own clock the lease has not even started
    assert [r.run_id for r in await store.due_runs(now=behind)] == ["r1"]
    second = await store.claim_run("r1", owner="w2", now=behind, lease_seconds=LEASE)
    assert second is not None and second.fence == first.fence + 1
    with pytest.raises(LeaseLostError):
        await store.record_step(make_step("r1", "a", 1), fence=first.fence, now=behind)


async def test_timers_fall_due_by_the_database_clock(store: PostgresStore) -> None:
    now = time.time()
    await store.create_run(make_run("past", status=RunStatus.WAITING, wake_at=now - 5, wait_reason="timer"))
    await store.create_run(make_run("future", status=RunStatus.WAITING, wake_at=now + 3600, wait_reason="timer"))
    assert [r.run_id for r in await store.due_runs(now=T0)] == ["past"]
    assert [r.run_id for r in await store.due_runs(now=now + 7200)] == ["past"]
    until = await store.seconds_until_due(now=0.0, versions=[("wf", "1")])
    assert until == 0.0
    await store.cancel_run("past", now=now, reason="x")
    until = await store.seconds_until_due(now=0.0)
    assert until is not None and 3500 < until <= 3600


# migrations -----------------------------------------------------------------------------------


async def test_a_newer_schema_is_refused_and_the_store_stays_closed(pg_url: str, schema: str) -> None:
    first = PostgresStore(pg_url, schema=schema)
    await first.open()
    await first.close()
    _sync(
        pg_url, sql.SQL("UPDATE {} SET value = %s").format(_in(schema, "orchestrate_meta")), (str(SCHEMA_VERSION + 1),)
    )
    second = PostgresStore(pg_url, schema=schema)
    with pytest.raises(SchemaVersionError, match=rf"version {SCHEMA_VERSION + 1}, newer .*\({SCHEMA_VERSION}\)"):
        await second.open()
    with pytest.raises(StoreError, match="not open"):
        await second.get_run("r1")


def _old_schema(pg_url: str, schema: str, version: int = 1) -> None:
    """A schema as orchestrate left it at ``version``, with a pending run and a run that crashed mid-step."""
    with psycopg.connect(pg_url, autocommit=True, options=f"-c search_path={schema}") as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
        conn.execute(shared_sql.META_DDL)
        for number, statements in shared_sql.MIGRATIONS:
            if number <= version:
                for statement in statements:
                    conn.execute(statement.format(real="DOUBLE PRECISION", serial="BIGSERIAL"))
                for statement in q.EXTRA_MIGRATIONS.get(number, []):
                    conn.execute(statement)
        conn.execute("INSERT INTO orchestrate_meta VALUES ('schema_version', %s)", (str(version),))
        conn.execute(
            "INSERT INTO orchestrate_runs (run_id, workflow, version, status, input, created_at, updated_at)"
            " VALUES ('old', 'wf', '1', 'pending', 'null', 1, 1)"
        )
        conn.execute(
            "INSERT INTO orchestrate_runs (run_id, workflow, version, status, input, created_at, updated_at, owner,"
            " lease_expires_at, fence) VALUES ('crashed', 'wf', '1', 'running', 'null', 1, 1, 'w1', 2, 1)"
        )
        conn.execute(
            "INSERT INTO orchestrate_steps (run_id, step_key, name, status, attempts, started_at, finished_at)"
            " VALUES ('crashed', 'a', 'a', 'succeeded', 1, 1, 1)"
        )


async def test_an_older_schema_is_refused_by_a_process_that_does_not_migrate(pg_url: str, schema: str) -> None:
    _old_schema(pg_url, schema)
    worker = PostgresStore(pg_url, schema=schema, migrate=False)
    with pytest.raises(SchemaVersionError, match=rf"version 1, older .*\({SCHEMA_VERSION}\).*migrate=false"):
        await worker.open()


@pytest.mark.parametrize("version", range(1, SCHEMA_VERSION))
async def test_an_older_schema_is_migrated_keeping_its_runs(pg_url: str, schema: str, version: int) -> None:
    _old_schema(pg_url, schema, version)
    store = PostgresStore(pg_url, schema=schema)
    await store.open()
    try:
        assert await store.schema_version() == SCHEMA_VERSION
        assert (await store.get_run("old")) is not None
        crashed = await store.get_run("crashed")
        assert crashed is not None and (crashed.crashes, crashed.crashed_owner) == (0, None)
        # Its holder died before the upgrade: the claim counts that attempt.
        taken = await store.claim_run("crashed", owner="w2", now=T0, lease_seconds=LEASE)
        assert taken is not None and (taken.crashes, taken.crashed_owner, taken.fence) == (1, "w1", 2)
        assert (await store.load_breaker("x", now=0))[0] == BreakerRecord(resource="x")
        triggers = _sync(
            pg_url,
            "SELECT tgname FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid"
            " JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = %s",
            (schema,),
        )
        assert sorted(triggers) == [
            ("orchestrate_audit_no_change",),  # schema 6: the audit trail is append-only
            ("orchestrate_audit_no_truncate",),
            ("orchestrate_runs_notify",),
        ]
    finally:
        await store.close()
    again = PostgresStore(pg_url, schema=schema, migrate=False)  # now current: a worker starts
    await again.open()
    await again.close()


async def test_an_empty_database_is_refused_by_a_process_that_does_not_migrate(pg_url: str, schema: str) -> None:
    with pytest.raises(SchemaVersionError, match="version 0, older"):
        await PostgresStore(pg_url, schema=schema, migrate=False).open()


# failures -------------------------------------------------------------------------------------


async def test_driver_errors_are_wrapped_naming_the_operation(store: PostgresStore, pg_url: str, schema: str) -> None:
    _sync(pg_url, sql.SQL("DROP TABLE {}").format(_in(schema, "orchestrate_cache")))
    with pytest.raises(StoreError, match="cache_get failed") as info:
        await store.cache_get("k")
    assert isinstance(info.value.__cause__, psycopg.errors.UndefinedTable)


def _terminate(pg_url: str, application: str) -> int:
    killed = _sync(
        pg_url,
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s",
        (application,),
    )
    deadline = time.monotonic() + 10
    while _sync(pg_url, "SELECT 1 FROM pg_stat_activity WHERE application_name = %s", (application,)):
        assert time.monotonic() < deadline, "terminated backends did not go away"
        time.sleep(0.05)
    return len(killed)


async def test_broken_connections_are_replaced_and_the_call_retried(pg_url: str, schema: str) -> None:
    application = f"orchestrate-{uuid.uuid4().hex[:8]}"
    store = PostgresStore(f"{pg_url}?application_name={application}", schema=schema, max_connections=3)
    await store.open()
    try:
        await store.create_run(make_run("r1"))
        run = await store.claim_run("r1", owner="w1", now=T0, lease_seconds=LEASE)
        assert run is not None
        assert _terminate(pg_url, application) >= 1
        step = make_step("r1", "a", {"v": 1})
        assert await store.record_step(step, fence=run.fence, now=T0) == step
        assert await store.get_steps("r1") == [step]
    finally:
        await store.close()


async def test_without_retries_a_broken_connection_is_a_store_error(pg_url: str, schema: str) -> None:
    application = f"orchestrate-{uuid.uuid4().hex[:8]}"
    store = PostgresStore(f"{pg_url}?application_name={application}", schema=schema, retry_seconds=0)
    await store.open()
    try:
        _terminate(pg_url, application)
        with pytest.raises(StoreError, match="get_run failed") as info:
            await store.get_run("r1")
        assert isinstance(info.value.__cause__, psycopg.OperationalError)
    finally:
        await store.close()


# group commit ----------------------------------------------------------------------------------


async def _claimed_runs(store: PostgresStore, n: int) -> list[RunRecord]:
    runs = []
    for i in range(n):
        await store.create_run(make_run(f"r{i:02}"))
        run = await store.claim_run(f"r{i:02}", owner="w1", now=T0, lease_seconds=LEASE)
        assert run is not None
        runs.append(run)
    return runs


async def test_concurrent_step_records_share_commits(store: PostgresStore) -> None:
    runs = await _claimed_runs(store, 40)
    steps = [make_step(run.run_id, "a", {"i": i}) for i, run in enumerate(runs)]
    before = (store._steps.batches, store._steps.statements)
    writes = (store.record_step(s, fence=r.fence, now=T0) for s, r in zip(steps, runs, strict=True))
    stored = await asyncio.gather(*writes)
    assert stored == steps
    batches, statements = store._steps.batches - before[0], store._steps.statements - before[1]
    assert statements == 40 and batches < 10  # a handful of transactions for forty records
    for step in steps:
        assert await store.get_steps(step.run_id) == [step]


async def test_a_stale_writer_in_a_batch_is_refused_alone(store: PostgresStore) -> None:
    runs = await _claimed_runs(store, 10)
    taken = await store.claim_run("r03", owner="w2", now=T0, lease_seconds=LEASE, force=True)
    assert taken is not None
    results = await asyncio.gather(
        *(store.record_step(make_step(r.run_id, "a", 1), fence=r.fence, now=T0) for r in runs),
        return_exceptions=True,
    )
    assert [type(r).__name__ for r in results].count("LeaseLostError") == 1
    assert isinstance(results[3], LeaseLostError)
    assert await store.get_steps("r03") == []
    for run in runs:
        assert len(await store.get_steps(run.run_id)) == (0 if run.run_id == "r03" else 1)


async def test_a_batch_whose_ack_was_lost_records_each_step_once(store: PostgresStore) -> None:
    runs = await _claimed_runs(store, 12)
    store._lose_ack.add("record_step")  # the first batch commits, then its connection "breaks"
    steps = [make_step(r.run_id, "a", r.run_id) for r in runs]
    events = [Event(run_id=r.run_id, kind="step_ok", at=T0, step_key="a") for r in runs]
    stored = await asyncio.gather(
        *(store.record_step(s, fence=r.fence, now=T0, event=e) for s, r, e in zip(steps, runs, events, strict=True))
    )
    assert stored == steps
    for run in runs:
        assert len(await store.get_steps(run.run_id)) == 1
        assert [e.kind for e in await store.list_events(run.run_id)] == ["step_ok"]


# the common step record: a bare fenced insert ----------------------------------------------------


def _watch_steps(store: PostgresStore) -> list[str]:
    """The statements the store's step writes send (through its batcher)."""
    sent: list[str] = []
    submit = store._steps.submit

    async def watched(sql: str, params: object, *, order: str) -> object:
        sent.append(sql)
        return await submit(sql, params, order=order)

    store._steps.submit = watched  # type: ignore[method-assign]
    return sent


async def test_a_plain_step_record_is_one_bare_insert(store: PostgresStore) -> None:
    (run,) = await _claimed_runs(store, 1)
    sent = _watch_steps(store)
    step = make_step(run.run_id, "a", 1)
    assert await store.record_step(step, fence=run.fence, now=T0) == step
    assert len(sent) == 1 and sent[0].startswith("INSERT INTO orchestrate_steps") and "FOR SHARE" in sent[0]
    assert await store.get_steps(run.run_id) == [step]
    # Unfenced, too: one insert.
    other = make_step(run.run_id, "b", 2)
    assert await store.record_step(other, fence=None, now=T0) == other
    assert len(sent) == 2 and "WITH" not in sent[1]


async def test_a_plain_record_of_an_existing_step_returns_the_stored_one(store: PostgresStore) -> None:
    (run,) = await _claimed_runs(store, 1)
    first = make_step(run.run_id, "a", "first")
    await store.record_step(first, fence=run.fence, now=T0)
    sent = _watch_steps(store)
    assert await store.record_step(make_step(run.run_id, "a", "second"), fence=run.fence, now=T0) == first
    assert await store.record_step(make_step(run.run_id, "a", "third"), fence=None, now=T0) == first
    assert len(sent) == 2  # each a bare insert (then, on its own, the full statement to say why nothing was inserted)
    assert await store.get_steps(run.run_id) == [first]


async def test_a_plain_step_record_under_a_lost_fence_is_refused(store: PostgresStore) -> None:
    (run,) = await _claimed_runs(store, 1)
    step = make_step(run.run_id, "a", 1)
    await store.record_step(step, fence=run.fence, now=T0)
    taken = await store.claim_run(run.run_id, owner="w2", now=T0, lease_seconds=LEASE, force=True)
    assert taken is not None and taken.fence == run.fence + 1
    # Refused whether the step is new or already recorded (even identically).
    with pytest.raises(LeaseLostError):
        await store.record_step(make_step(run.run_id, "b", 2), fence=run.fence, now=T0)
    with pytest.raises(LeaseLostError):
        await store.record_step(step, fence=run.fence, now=T0)
    assert await store.get_steps(run.run_id) == [step]
    # The new holder records.
    b = make_step(run.run_id, "b", 3)
    assert await store.record_step(b, fence=taken.fence, now=T0) == b
    # A run that does not exist: nothing to fence.
    with pytest.raises(RunNotFoundError):
        await store.record_step(make_step("nope", "a", 1), fence=1, now=T0)


async def test_a_plain_step_record_in_flight_holds_off_a_claim(store: PostgresStore, pg_url: str, schema: str) -> None:
    (run,) = await _claimed_runs(store, 1)
    sql_text, params, _ = q.record_step_plain(make_step(run.run_id, "a", 1), run.fence)
    options = f"-c search_path={schema}"
    async with await psycopg.AsyncConnection.connect(pg_url, options=options) as writer:
        assert (await writer.execute(sql_text, params)).rowcount == 1  # inserted, not yet committed
        async with await psycopg.AsyncConnection.connect(pg_url, autocommit=True, options=options) as claimer:
            await claimer.execute("SET lock_timeout = '200ms'")
            with pytest.raises(psycopg.errors.LockNotAvailable):  # the fence cannot move meanwhile
                await claimer.execute("UPDATE orchestrate_runs SET fence = fence + 1 WHERE run_id = %s", (run.run_id,))
        await writer.commit()


async def test_a_plain_step_record_waits_for_a_claim_in_flight_then_is_refused(
    store: PostgresStore, pg_url: str, schema: str
) -> None:
    (run,) = await _claimed_runs(store, 1)
    async with await psycopg.AsyncConnection.connect(pg_url, options=f"-c search_path={schema}") as claimer:
        await claimer.execute("UPDATE orchestrate_runs SET fence = fence + 1 WHERE run_id = %s", (run.run_id,))
        record = asyncio.create_task(store.record_step(make_step(run.run_id, "a", 1), fence=run.fence, now=T0))
        await asyncio.sleep(0.3)
        assert not record.done()  # held off by the claim's row lock
        await claimer.commit()
    with pytest.raises(LeaseLostError):
        await record
    assert await store.get_steps(run.run_id) == []


async def test_a_plain_step_record_whose_ack_was_lost_is_recognised(store: PostgresStore) -> None:
    (run,) = await _claimed_runs(store, 1)
    store._lose_ack.add("record_step")
    step = make_step(run.run_id, "a", "out")
    assert await store.record_step(step, fence=run.fence, now=T0) == step
    assert await store.get_steps(run.run_id) == [step]


async def test_a_step_record_with_its_event_and_run_update_answers_by_its_row_count(store: PostgresStore) -> None:
    (run,) = await _claimed_runs(store, 1)
    sent = _watch_steps(store)
    a = make_step(run.run_id, "a", 1)
    assert (
        await store.record_step(
            a, fence=run.fence, now=T0, event=Event(run_id=run.run_id, kind="step_ok", at=T0, step_key="a")
        )
        == a
    )
    last = make_step(run.run_id, "b", 2)
    done = RunUpdate(status=RunStatus.SUCCEEDED, output=2)
    event = Event(run_id=run.run_id, kind="run_succeeded", at=T0)
    assert await store.record_step(last, fence=run.fence, now=T0, event=event, run_update=done) == last
    assert len(sent) == 2
    assert "RETURNING 1) INSERT INTO orchestrate_events" in sent[0]  # the event's insert is the statement
    assert " UPDATE orchestrate_runs" in sent[1] and "SELECT (SELECT fence" not in sent[1]
    final = await store.get_run(run.run_id)
    assert final is not None and final.status is RunStatus.SUCCEEDED and final.output == 2
    assert [e.kind for e in await store.list_events(run.run_id)] == ["step_ok", "run_succeeded"]


async def test_a_counted_step_record_of_an_existing_step_changes_nothing(store: PostgresStore) -> None:
    (run,) = await _claimed_runs(store, 1)
    a = make_step(run.run_id, "a", 1)
    await store.record_step(a, fence=run.fence, now=T0)
    event = Event(run_id=run.run_id, kind="step_ok", at=T0, step_key="a")
    assert await store.record_step(make_step(run.run_id, "a", 2), fence=run.fence, now=T0, event=event) == a
    done = RunUpdate(status=RunStatus.SUCCEEDED, output=3)
    assert await store.record_step(make_step(run.run_id, "a", 3), fence=run.fence, now=T0, run_update=done) == a
    stored = await store.get_run(run.run_id)
    assert stored is not None and stored.status is RunStatus.RUNNING
    assert await store.list_events(run.run_id) == []


async def test_creating_a_run_twice_inserts_it_and_its_event_once(store: PostgresStore) -> None:
    run = make_run("r1", input={"x": 1})
    created = await store.create_run(run, event=Event(run_id="r1", kind="run_created", at=T0))
    assert created == run
    again = await store.create_run(
        make_run("r1", input={"x": 2}), event=Event(run_id="r1", kind="run_created", at=T0 + 1)
    )
    assert again == run  # the stored run, not the second one
    assert [e.at for e in await store.list_events("r1")] == [T0]
    assert await store.create_run(make_run("r2")) == make_run("r2")
    assert await store.create_run(make_run("r2", input=5)) == make_run("r2")
    assert await store.list_events("r2") == []


# lost acknowledgements: committed, then the connection broke --------------------------------


async def test_a_step_record_whose_ack_was_lost_is_recognised(store: PostgresStore) -> None:
    await store.create_run(make_run("r1"))
    run = await store.claim_run("r1", owner="w1", now=T0, lease_seconds=LEASE)
    assert run is not None
    store._lose_ack.add("record_step")
    step = make_step("r1", "last", "out")
    done = RunUpdate(status=RunStatus.SUCCEEDED, output="out")
    stored = await store.record_step(
        step, fence=run.fence, now=T0, event=Event(run_id="r1", kind="step_ok", at=T0, step_key="last"), run_update=done
    )
    assert stored == step  # not a LeaseLostError although the run is no longer running
    assert await store.get_steps("r1") == [step]
    assert [e.kind for e in await store.list_events("r1")] == ["step_ok"]
    final = await store.get_run("r1")
    assert final is not None and final.status is RunStatus.SUCCEEDED


async def test_a_status_change_or_cancel_whose_ack_was_lost_is_recognised(store: PostgresStore) -> None:
    await store.create_run(make_run("r1"))
    run = await store.claim_run("r1", owner="w1", now=T0, lease_seconds=LEASE)
    assert run is not None
    store._lose_ack.add("update_run")
    update = RunUpdate(status=RunStatus.SUCCEEDED, output=1)
    await store.update_run(
        "r1", fence=run.fence, now=T0 + 1, update=update, event=Event(run_id="r1", kind="done", at=T0 + 1)
    )
    assert [e.kind for e in await store.list_events("r1")] == ["done"]
    # A stale writer is still refused: recognition needs the same fence, status and time.
    with pytest.raises(LeaseLostError):
        await store.update_run("r1", fence=run.fence, now=T0 + 2, update=update, event=None)

    await store.create_run(make_run("r2"))
    store._lose_ack.add("cancel_run")
    cancelled = await store.cancel_run("r2", now=T0 + 3, reason="stop")
    assert cancelled.status is RunStatus.CANCELLED
    assert [e.kind for e in await store.list_events("r2")] == ["run_cancelled"]


async def test_retry_progress_whose_ack_was_lost_is_logged_once(store: PostgresStore) -> None:
    await store.create_run(make_run("r1"))
    run = await store.claim_run("r1", owner="w1", now=T0, lease_seconds=LEASE)
    assert run is not None
    store._lose_ack.add("save_attempts")
    state = AttemptState(run_id="r1", step_key="a", attempts=1, next_at=T0 + 5, first_started_at=T0)
    await store.save_attempts(state, fence=run.fence, event=Event(run_id="r1", kind="step_retry", at=T0, step_key="a"))
    assert await store.get_attempts("r1") == {"a": state}
    assert [e.kind for e in await store.list_events("r1")] == ["step_retry"]


async def test_a_breaker_save_whose_ack_was_lost_is_recognised(store: PostgresStore) -> None:
    record, _ = await store.load_breaker("api", now=0)
    record.state = "open"
    store._lose_ack.add("save_breaker")
    assert await store.save_breaker(record, expected_version=0)
    assert record.version == 1
    assert (await store.load_breaker("api", now=0))[0] == record


# notifications --------------------------------------------------------------------------------


async def test_an_idle_worker_is_woken_by_a_new_run(store: PostgresStore, pg_url: str, schema: str) -> None:
    await store.wait_for_work(5)  # connects the listener (and reports in once)
    assert await store.wait_for_work(0.2) is False  # nothing happened
    waiter = asyncio.create_task(store.wait_for_work(30))
    await asyncio.sleep(0.2)
    other = PostgresStore(pg_url, schema=schema)
    await other.open()
    try:
        await other.create_run(make_run("r1"))
        assert await waiter is True
        claimed = await store.claim_due(owner="w1", now=T0, lease_seconds=LEASE, limit=5)
        assert [r.run_id for r in claimed] == ["r1"]
        # A claim and a finished run wake nobody; a run parked on a timer does.
        await store.record_step(
            make_step("r1", "a"), fence=claimed[0].fence, now=T0, run_update=RunUpdate(status=RunStatus.SUCCEEDED)
        )
        assert await store.wait_for_work(0.2) is False
    finally:
        await other.close()


# the engine and the command line on PostgreSQL ----------------------------------------------


LEDGER: list[tuple[str, str]] = []


def _ledger_step(name: str):
    def step(value: int, ctx) -> int:
        LEDGER.append((ctx.run_id, name))
        if name == "flaky" and ctx.attempt == 1:
            raise ConnectionError("reset")
        return value + 1

    step.__name__ = name
    return step


async def test_three_engines_share_the_runs_and_each_step_and_timer_runs_once(pg_url: str, schema: str) -> None:
    LEDGER.clear()
    wf = Workflow(
        "shared",
        [
            Step("a", _ledger_step("a")),
            Step("flaky", _ledger_step("flaky"), retry=Retry(max_attempts=2, initial_delay=0.3, jitter=0.0)),
            Step("c", _ledger_step("c")),
        ],
        version="1",
    )
    engines = [
        Engine(PostgresStore(pg_url, schema=schema, max_connections=4), workflows=[wf], park_after_seconds=0.05)
        for _ in range(3)
    ]
    for engine in engines:
        await engine.open()
    try:
        ids = [await engines[0].start(wf, i) for i in range(12)]
        driven = await asyncio.gather(*(e.work(concurrency=3, until_idle=True, poll_seconds=0.05) for e in engines))
        runs = [await engines[0].store.get_run(i) for i in ids]
        assert [(r.status, r.output) for r in runs if r] == [(RunStatus.SUCCEEDED, i + 3) for i in range(12)]
        per_step: dict[tuple[str, str], int] = {}
        for run_id, name in LEDGER:
            per_step[(run_id, name)] = per_step.get((run_id, name), 0) + 1
        # "flaky" runs twice by design (attempt 1 fails); its retry timer fires exactly once.
        assert per_step == {**{(i, n): 1 for i in ids for n in ("a", "c")}, **{(i, "flaky"): 2 for i in ids}}
        assert sum(driven) >= len(ids)
        for run_id in ids:
            steps = await engines[0].store.get_steps(run_id)
            assert [s.step_key for s in steps] == ["a", "flaky", "c"]
    finally:
        for engine in engines:
            await engine.close()


APP = """
from orchestrate import Step, Workflow

def double(x):
    return x * 2

def add_one(x):
    return x + 1

pipeline = Workflow("pipeline", [Step("double", double), Step("add_one", add_one)], version="1")
"""


def test_the_command_line_starts_lists_and_finishes_runs_on_postgres(tmp_path: Path, pg_url: str, schema: str) -> None:
    app = tmp_path / "app.py"
    app.write_text(APP)
    url = f"{pg_url}?schema={schema}"
    runner = CliRunner()

    def invoke(*args: str) -> str:
        result = runner.invoke(cli, [*args, "--store", url], catch_exceptions=False)
        assert result.exit_code == 0, result.output
        return result.output

    run_id = invoke("run", f"{app}:pipeline", "--input", "20", "--detach").strip()
    assert run_id in invoke("runs", "list")
    invoke("worker", "--app", f"{app}:pipeline", "--until-idle", "--queue", "default", "--log-level", "error")
    shown = invoke("runs", "show", run_id, "--json")
    assert '"succeeded"' in shown and "41" in shown
    other = invoke("run", f"{app}:pipeline", "--input", "1", "--detach").strip()
    invoke("worker", "--app", f"{app}:pipeline", "--until-idle", "--queue", "urgent", "--log-level", "error")
    assert '"pending"' in invoke("runs", "show", other, "--json")  # not its queue: left alone
    invoke("runs", "cancel", other)
    assert '"cancelled"' in invoke("runs", "show", other, "--json")
