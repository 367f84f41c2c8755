"""The store conformance suite against ``SQLiteStore``, plus what only SQLite has."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from orchestrate.errors import InvalidInputError, LeaseLostError, SchemaVersionError, StoreAccessError, StoreError
from orchestrate.store import SCHEMA_VERSION, open_store
from orchestrate.store import _sql as shared_sql
from orchestrate.store.retrying import RetryingStore
from orchestrate.store.sqlite import SQLiteStore
from orchestrate.testing.store_suite import (
    LEASE,
    T0,
    Reopen,
    SetSchemaVersion,
    StoreConformance,
    claimed,
    make_run,
    make_step,
)
from orchestrate.types import RunStatus


class TestSQLiteStore(StoreConformance):
    @pytest.fixture
    async def store(self, tmp_path: Path) -> AsyncIterator[SQLiteStore]:
        store = SQLiteStore(f"sqlite:///{tmp_path / 'conformance.db'}")
        await store.open()
        yield store
        await store.close()

    @pytest.fixture
    def reopen(self, tmp_path: Path) -> Reopen:
        async def reopen() -> SQLiteStore:
            other = SQLiteStore(f"sqlite:///{tmp_path / 'conformance.db'}")
            await other.open()
            return other

        return reopen

    @pytest.fixture
    def set_schema_version(self, tmp_path: Path) -> SetSchemaVersion:
        async def set_version(version: int) -> None:
            with sqlite3.connect(tmp_path / "conformance.db") as conn:
                conn.execute("UPDATE orchestrate_meta SET value = ? WHERE key = 'schema_version'", (str(version),))

        return set_version


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'orchestrate.db'}"


@pytest.fixture
async def store(url: str) -> AsyncIterator[SQLiteStore]:
    store = SQLiteStore(url)
    await store.open()
    yield store
    await store.close()


async def _pragma(store: SQLiteStore, name: str) -> object:
    # Asks the store's own connection: synchronous is a per-connection setting.
    return await store._call(lambda conn: conn.execute(f"PRAGMA {name}").fetchone()[0], write=False)


def test_open_store_picks_sqlite(url: str) -> None:
    assert isinstance(open_store(url), SQLiteStore)


async def test_the_file_is_in_wal_mode(store: SQLiteStore) -> None:
    assert await _pragma(store, "journal_mode") == "wal"
    # WAL is a property of the file: a foreign connection sees it too.
    with sqlite3.connect(store.path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


async def test_synchronous_defaults_to_full(store: SQLiteStore) -> None:
    assert await _pragma(store, "synchronous") == 2  # FULL


@pytest.mark.parametrize(("option", "level"), [("normal", 1), ("NORMAL", 1), ("full", 2), ("extra", 3)])
async def test_synchronous_from_the_url(tmp_path: Path, option: str, level: int) -> None:
    store = SQLiteStore(f"sqlite:///{tmp_path / 'x.db'}?synchronous={option}")
    await store.open()
    try:
        assert await _pragma(store, "synchronous") == level
        await store.create_run(make_run("r1"))
        assert await store.get_run("r1") is not None
    finally:
        await store.close()


def test_relative_and_absolute_paths() -> None:
    assert SQLiteStore("sqlite:///data/o.db").path == "data/o.db"
    assert SQLiteStore("sqlite:////var/lib/o.db").path == "/var/lib/o.db"


@pytest.mark.parametrize(
    "bad",
    [
        "sqlite://",
        "sqlite:///",
        "sqlite://host/o.db",
        "sqlite:///o.db?synchronous=sometimes",
        "postgresql:///o.db",
    ],
)
def test_bad_urls_name_the_url(bad: str) -> None:
    with pytest.raises(InvalidInputError) as info:
        SQLiteStore(bad)
    assert repr(bad) in str(info.value)


async def test_migrations_are_recorded(store: SQLiteStore) -> None:
    assert await store.schema_version() == SCHEMA_VERSION
    with sqlite3.connect(store.path) as conn:
        row = conn.execute("SELECT value FROM orchestrate_meta WHERE key = 'schema_version'").fetchone()
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert int(row[0]) == SCHEMA_VERSION
    assert {"orchestrate_runs", "orchestrate_steps", "orchestrate_events", "orchestrate_cache"} <= tables


async def test_reopening_keeps_the_data(url: str) -> None:
    first = SQLiteStore(url)
    await first.open()
    run = await claimed(first, "r1")
    step = await first.record_step(make_step("r1", "a", {"v": "é"}), fence=run.fence, now=T0)
    await first.close()
    second = SQLiteStore(url)
    await second.open()
    try:
        assert await second.schema_version() == SCHEMA_VERSION
        assert await second.get_run("r1") == run
        assert await second.get_steps("r1") == [step]
    finally:
        await second.close()


def _schema_at(path: Path, version: int) -> None:
    """A database as orchestrate left it at schema ``version``, with a run that crashed mid-step."""
    with sqlite3.connect(path) as conn:
        conn.execute(shared_sql.META_DDL)
        for number, statements in shared_sql.MIGRATIONS:
            if number <= version:
                for statement in statements:
                    conn.execute(statement.format(real="REAL", serial="INTEGER"))
        conn.execute("INSERT INTO orchestrate_meta VALUES ('schema_version', ?)", (str(version),))
        conn.execute(
            "INSERT INTO orchestrate_runs (run_id, workflow, version, status, input, created_at, updated_at, owner,"
            " lease_expires_at, fence) VALUES ('old', 'wf', '1', 'running', 'null', 1, 1, 'w1', 2, 1)"
        )
        conn.execute(
            "INSERT INTO orchestrate_steps (run_id, step_key, name, status, attempts, started_at, finished_at)"
            " VALUES ('old', 'a', 'a', 'succeeded', 1, 1, 1)"
        )


@pytest.mark.parametrize("version", range(1, SCHEMA_VERSION))
async def test_an_older_schema_is_migrated_keeping_its_runs(url: str, tmp_path: Path, version: int) -> None:
    _schema_at(tmp_path / "orchestrate.db", version)
    store = SQLiteStore(url)
    await store.open()
    try:
        assert await store.schema_version() == SCHEMA_VERSION
        old = await store.get_run("old")
        assert old is not None and (old.status, old.crashes, old.crashed_owner) == (RunStatus.RUNNING, 0, None)
        assert [s.step_key for s in await store.get_steps("old")] == ["a"]
        # Its holder died before the upgrade: the claim counts that attempt.
        taken = await store.claim_run("old", owner="w2", now=T0, lease_seconds=LEASE)
        assert taken is not None and (taken.crashes, taken.crashed_owner, taken.fence) == (1, "w1", 2)
    finally:
        await store.close()


async def test_a_newer_schema_is_refused(url: str, tmp_path: Path) -> None:
    store = SQLiteStore(url)
    await store.open()
    await store.close()
    with sqlite3.connect(tmp_path / "orchestrate.db") as conn:
        conn.execute("UPDATE orchestrate_meta SET value = ? WHERE key = 'schema_version'", (str(SCHEMA_VERSION + 1),))
    newer = SQLiteStore(url)
    with pytest.raises(SchemaVersionError, match="upgrade orchestrate") as info:
        await newer.open()
    assert str(SCHEMA_VERSION + 1) in str(info.value)
    # A refused open leaves the store closed, not half open.
    with pytest.raises(StoreError, match="not open"):
        await newer.get_run("r1")
    await newer.close()


async def test_calls_before_open_raise(url: str) -> None:
    with pytest.raises(StoreError, match="not open"):
        await SQLiteStore(url).get_run("r1")


async def test_create_false_refuses_a_missing_file_and_creates_nothing(tmp_path: Path) -> None:
    missing = tmp_path / "typo" / "orchestrate.db"
    store = SQLiteStore(f"sqlite:///{missing}", create=False)

    with pytest.raises(StoreError, match="no orchestrate database") as info:
        await store.open()

    assert repr(str(missing)) in str(info.value)
    assert not missing.parent.exists()
    with pytest.raises(StoreError, match="not open"):
        await store.get_run("r1")
    await store.close()


async def test_create_false_opens_an_existing_file(url: str) -> None:
    first = SQLiteStore(url)
    await first.open()
    await first.create_run(make_run("r1"))
    await first.close()

    existing = open_store(url, create=False)
    await existing.open()
    try:
        run = await existing.get_run("r1")
        assert run is not None and run.run_id == "r1"
    finally:
        await existing.close()


async def test_two_stores_on_one_file_share_state(url: str) -> None:
    one, two = SQLiteStore(url), SQLiteStore(url)
    await one.open()
    await two.open()
    try:
        await one.create_run(make_run("r1"))
        assert await two.get_run("r1") == await one.get_run("r1")
        run = await two.claim_run("r1", owner="two", now=T0, lease_seconds=LEASE)
        assert run is not None
        assert await one.claim_run("r1", owner="one", now=T0 + 1, lease_seconds=LEASE) is None
        step = make_step("r1", "a", "from two")
        await two.record_step(step, fence=run.fence, now=T0)
        assert await one.get_steps("r1") == [step]
        # One took over after the lease expired: two's fenced writes are refused.
        taken = await one.claim_run("r1", owner="one", now=T0 + LEASE, lease_seconds=LEASE)
        assert taken is not None
        with pytest.raises(StoreError):
            await two.record_step(make_step("r1", "b"), fence=run.fence, now=T0 + LEASE)
        assert [s.step_key for s in await one.get_steps("r1")] == ["a"]
    finally:
        await one.close()
        await two.close()


async def test_claims_across_two_stores_are_exclusive(url: str) -> None:
    one, two = SQLiteStore(url), SQLiteStore(url)
    await one.open()
    await two.open()
    try:
        for i in range(20):
            await one.create_run(make_run(f"r{i}"))
        attempts = [
            store.claim_run(f"r{i}", owner=name, now=T0, lease_seconds=LEASE)
            for i in range(20)
            for store, name in ((one, "one"), (two, "two"), (one, "one-b"), (two, "two-b"))
        ]
        results = await asyncio.gather(*attempts)
        winners = [r for r in results if r is not None]
        assert sorted(r.run_id for r in winners) == sorted(f"r{i}" for i in range(20))
        for run in winners:
            stored = await two.get_run(run.run_id)
            assert stored is not None and (stored.owner, stored.fence) == (run.owner, 1)
    finally:
        await one.close()
        await two.close()


async def test_group_commit_shares_commits(store: SQLiteStore) -> None:
    runs = [await claimed(store, f"r{i}") for i in range(100)]
    before = store.commits
    recorded = await asyncio.gather(
        *(store.record_step(make_step(run.run_id, "a", i), fence=run.fence, now=T0) for i, run in enumerate(runs))
    )
    commits = store.commits - before
    assert 1 <= commits < 100
    assert [r.output for r in recorded] == list(range(100))
    for i, run in enumerate(runs):
        assert [s.output for s in await store.get_steps(run.run_id)] == [i]


async def test_a_refused_write_does_not_undo_its_batch(store: SQLiteStore) -> None:
    good = await claimed(store, "good")
    stale = await claimed(store, "stale")
    await store.claim_run("stale", owner="w2", now=T0, lease_seconds=LEASE, force=True)
    results = await asyncio.gather(
        store.record_step(make_step("good", "a", 1), fence=good.fence, now=T0),
        store.record_step(make_step("stale", "a", 2), fence=stale.fence, now=T0),
        store.record_step(make_step("good", "b", 3), fence=good.fence, now=T0),
        return_exceptions=True,
    )
    assert [type(r).__name__ for r in results] == ["StepRecord", "LeaseLostError", "StepRecord"]
    assert [s.step_key for s in await store.get_steps("good")] == ["a", "b"]
    assert await store.get_steps("stale") == []


async def test_close_finishes_queued_writes(url: str) -> None:
    store = SQLiteStore(url)
    await store.open()
    await store.create_run(make_run("r1"))
    pending = [asyncio.ensure_future(store.cache_put(f"k{i}", i, now=T0)) for i in range(50)]
    await asyncio.sleep(0)
    await store.close()
    await asyncio.gather(*pending)
    reopened = SQLiteStore(url)
    await reopened.open()
    try:
        entry = await reopened.cache_get("k49")
        assert entry is not None and entry.value == 49
    finally:
        await reopened.close()


async def test_one_run_at_a_time_writes_inline_one_commit_per_step(store: SQLiteStore) -> None:
    run = await claimed(store, "solo")
    # The claim may have gone through the writer thread: wait until it has let go of the
    # store, as it does between jobs (a loaded machine can hold it there for a moment).
    assert store._lock.acquire(timeout=10)
    store._lock.release()
    inline, commits = store.inline, store.commits
    for i in range(10):
        await store.record_step(make_step("solo", f"s{i}", i), fence=run.fence, now=T0)
    assert (store.inline - inline, store.commits - commits) == (10, 10)


async def test_a_plain_step_is_one_statement_committed_on_its_own(store: SQLiteStore, url: str) -> None:
    run = await claimed(store, "solo")
    assert store._lock.acquire(timeout=10)  # the writer thread may still hold it (see above)
    store._lock.release()
    statements: list[str] = []
    assert store._conn is not None
    store._conn.set_trace_callback(statements.append)
    try:
        await store.record_step(make_step("solo", "a", 1), fence=run.fence, now=T0)
    finally:
        store._conn.set_trace_callback(None)
    # (A PRAGMA resetting the busy timeout, which the writer thread raises, is no write.)
    assert [s.split()[0] for s in statements if not s.startswith("PRAGMA busy_timeout")] == ["INSERT"]
    other = sqlite3.connect(url.removeprefix("sqlite:///"))
    try:  # committed: another connection sees it
        assert other.execute("SELECT output FROM orchestrate_steps WHERE run_id = 'solo'").fetchall() == [("1",)]
    finally:
        other.close()


async def test_a_step_of_a_run_taken_over_is_refused_on_the_inline_path(store: SQLiteStore, url: str) -> None:
    run = await claimed(store, "solo")
    await store.record_step(make_step("solo", "a", 1), fence=run.fence, now=T0)
    other = SQLiteStore(url)
    await other.open()
    try:
        await other.claim_run("solo", owner="w2", now=T0, lease_seconds=LEASE, force=True)
    finally:
        await other.close()
    inline = store.inline
    with pytest.raises(LeaseLostError, match="no longer held under fence 1"):
        await store.record_step(make_step("solo", "b", 2), fence=run.fence, now=T0)
    assert store.inline == inline
    assert [s.step_key for s in await store.get_steps("solo")] == ["a"]


async def test_a_step_recorded_twice_inline_returns_the_first_record(store: SQLiteStore) -> None:
    run = await claimed(store, "solo")
    first = await store.record_step(make_step("solo", "a", 1), fence=run.fence, now=T0)
    again = await store.record_step(make_step("solo", "a", 2), fence=run.fence, now=T0)
    assert first.output == 1 and again.output == 1
    unfenced = await store.record_step(make_step("solo", "a", 3), fence=None, now=T0)
    assert unfenced.output == 1


async def test_interleaved_runs_queue_for_the_writer_thread(store: SQLiteStore) -> None:
    runs = [await claimed(store, f"r{i}") for i in range(20)]
    inline = store.inline
    await asyncio.gather(
        *(store.record_step(make_step(run.run_id, "a", i), fence=run.fence, now=T0) for i, run in enumerate(runs))
    )
    assert store.inline == inline  # none of them ran on the event loop's thread


async def test_a_write_locked_out_by_another_process_waits_off_the_event_loop(store: SQLiteStore, url: str) -> None:
    run = await claimed(store, "solo")
    other = sqlite3.connect(url.removeprefix("sqlite:///"), isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another process holds the write lock
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    async def release_later() -> None:
        await asyncio.sleep(0.3)
        other.execute("COMMIT")

    beat = asyncio.create_task(ticker())
    release = asyncio.create_task(release_later())
    try:
        stored = await store.record_step(make_step("solo", "a", 1), fence=run.fence, now=T0)
    finally:
        beat.cancel()
        await release
        other.close()
    assert stored.output == 1
    assert ticks >= 10, "the event loop kept running while the write waited for the lock"
    assert [s.step_key for s in await store.get_steps("solo")] == ["a"]


async def test_a_chain_costs_one_commit_per_step_plus_the_run_s_creation(url: str) -> None:
    from orchestrate import Engine, Step, Workflow

    chain = Workflow("chain", [Step(f"s{i}", lambda x: x + 1) for i in range(10)], version="1")
    store = SQLiteStore(url)
    async with Engine(store, workflows=[chain]) as engine:
        commits = store.commits
        record = await engine.run_record(chain, 0)
        assert store.commits - commits == 11  # the last step's record also ends the run
        stored = await store.get_run(record.run_id)
        kinds = [e.kind for e in await store.list_events(record.run_id)]
    assert record.status.value == "succeeded" and record.output == 10
    assert stored is not None and stored.status.value == "succeeded" and stored.output == 10
    assert kinds[0] == "run_created" and kinds[-1] == "run_succeeded" and kinds.count("run_succeeded") == 1


async def test_concurrent_runs_whose_steps_never_wait_still_share_commits(url: str) -> None:
    from orchestrate import Engine, Step, Workflow

    async def bump(x: int) -> int:
        return x + 1  # never suspends: only the store's writes let other runs go on

    chain = Workflow("chain", [Step(f"s{i}", bump) for i in range(10)], version="1")
    store = SQLiteStore(url)
    async with Engine(store, workflows=[chain]) as engine:
        commits = store.commits
        outputs = await asyncio.gather(*(engine.run(chain, 0) for _ in range(50)))
        used = store.commits - commits
    assert outputs == [10] * 50
    assert used < 550 / 4, f"{used} commits for 50 runs of 11 writes: the runs did not share commits"


async def test_a_step_longer_than_the_lease_keeps_it_by_heartbeat(url: str) -> None:
    import time as _time

    from orchestrate import Engine, Step, Workflow

    held: list[bool] = []

    async def slow(x: int) -> int:
        await asyncio.sleep(0.9)  # three times the lease
        other = SQLiteStore(url)  # another process trying to take the run over
        await other.open()
        try:
            run = (await other.list_runs(limit=1))[0]
            taken = await other.claim_run(run.run_id, owner="thief", now=_time.time(), lease_seconds=5)
            held.append(taken is None)
        finally:
            await other.close()
        return x + 1

    wf = Workflow("slow", [Step("slow", slow)], version="1")
    async with Engine(SQLiteStore(url), workflows=[wf], lease_seconds=0.3) as engine:
        record = await engine.run_record(wf, 1)
    assert held == [True], "the lease had run out: the heartbeat did not renew it"
    assert record.status.value == "succeeded" and record.output == 2


async def test_a_run_whose_lease_was_taken_over_stops(url: str) -> None:
    import time as _time

    from orchestrate import Engine, Step, Workflow

    async def slow(x: int) -> int:
        other = SQLiteStore(url)
        await other.open()
        try:
            run = (await other.list_runs(limit=1))[0]
            assert await other.claim_run(run.run_id, owner="thief", now=_time.time(), lease_seconds=60, force=True)
        finally:
            await other.close()
        await asyncio.sleep(1.0)  # the next heartbeat finds the lease gone and stops the run
        return x + 1

    wf = Workflow("stolen", [Step("slow", slow)], version="1")
    async with Engine(SQLiteStore(url), workflows=[wf], lease_seconds=0.3) as engine:
        record = await asyncio.wait_for(engine.run_record(wf, 1), timeout=5)
    assert record.status.value == "running" and record.owner == "thief"


# opening without writing ----------------------------------------------------------------------


async def test_a_read_only_store_reads_and_never_writes(url: str, tmp_path: Path) -> None:
    writer = SQLiteStore(url)
    await writer.open()
    await writer.create_run(make_run("r1"))
    await writer.close()
    reader = SQLiteStore(url, read_only=True)
    await reader.open()
    try:
        assert [r.run_id for r in await reader.list_runs()] == ["r1"]
        with pytest.raises(StoreAccessError, match="readonly"):
            await reader.create_run(make_run("r2"))
    finally:
        await reader.close()
    with pytest.raises(StoreAccessError, match="no orchestrate database"):
        await SQLiteStore(f"sqlite:///{tmp_path / 'missing.db'}", read_only=True).open()
    assert not (tmp_path / "missing.db").exists()


async def test_opening_a_current_store_takes_no_write_lock(url: str, tmp_path: Path) -> None:
    first = SQLiteStore(url)
    await first.open()
    await first.close()
    holder = sqlite3.connect(tmp_path / "orchestrate.db", isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        second = SQLiteStore(url, busy_timeout_ms=60_000)
        await asyncio.wait_for(second.open(), 5)  # would wait a minute for the lock if it wrote
        await second.close()
    finally:
        holder.execute("ROLLBACK")
        holder.close()


async def test_an_empty_file_is_not_a_store_unless_created(tmp_path: Path) -> None:
    (tmp_path / "empty.db").write_bytes(b"")
    with pytest.raises(StoreAccessError, match="holds no orchestrate tables"):
        await SQLiteStore(f"sqlite:///{tmp_path / 'empty.db'}", create=False).open()
    created = SQLiteStore(f"sqlite:///{tmp_path / 'empty.db'}")
    await created.open()
    assert await created.schema_version() == SCHEMA_VERSION
    await created.close()


async def test_permanent_errors_are_not_retried() -> None:
    calls = 0

    class Refusing:
        async def get_run(self, run_id: str) -> None:
            nonlocal calls
            calls += 1
            raise StoreAccessError("read-only")

    retrying = RetryingStore(Refusing(), total_seconds=30)
    started = time.monotonic()
    with pytest.raises(StoreAccessError):
        await retrying.get_run("r1")
    assert (calls, retrying.retries) == (1, 0) and time.monotonic() - started < 1


# indexes ---------------------------------------------------------------------------------------


def _plan(path: Path, sql: str, params: list[object]) -> str:
    conn = sqlite3.connect(path)
    try:
        return "\n".join(row[-1] for row in conn.execute(f"EXPLAIN QUERY PLAN {sql}", params))
    finally:
        conn.close()


@pytest.mark.parametrize(
    ("status", "workflow", "index"),
    [
        ([RunStatus.SUCCEEDED], None, "orchestrate_runs_status"),
        ([RunStatus.DEAD], None, "orchestrate_runs_status"),
        (None, "billing", "orchestrate_runs_workflow"),
        ([RunStatus.PENDING], "billing", None),  # one of the two, whichever the planner prefers
    ],
)
async def test_listings_by_status_or_workflow_read_an_index_in_their_order(
    store: SQLiteStore, tmp_path: Path, status: list[RunStatus] | None, workflow: str | None, index: str | None
) -> None:
    sql, params = shared_sql.list_runs_sql(status, workflow, values=False)
    plan = _plan(tmp_path / "orchestrate.db", sql, [*params, 50])
    assert "USING INDEX orchestrate_runs_" in plan, plan
    if index is not None:
        assert f"USING INDEX {index} " in plan, plan
        assert "TEMP B-TREE" not in plan, plan  # read in order: no sort of every match
    assert "SCAN orchestrate_runs\n" not in plan + "\n", plan


async def test_the_dead_letter_queue_and_pruning_read_indexes(store: SQLiteStore, tmp_path: Path) -> None:
    sql, params = shared_sql.list_dead_letters_sql(None, values=False)
    plan = _plan(tmp_path / "orchestrate.db", sql, [*params, 50])
    assert "USING INDEX orchestrate_runs_status" in plan and "TEMP B-TREE" not in plan, plan
    prune = shared_sql.PRUNE_CANDIDATES.format(statuses="?, ?")
    plan = _plan(tmp_path / "orchestrate.db", prune, ["failed", "succeeded", T0, 500])
    assert "USING INDEX orchestrate_runs_ended" in plan or "USING COVERING INDEX orchestrate_runs_ended" in plan, plan
