"""Many worker processes on one PostgreSQL: kill -9, SIGSTOP, a database restart, a shared limit.

Workers are real ``orchestrate worker`` processes serving :mod:`tests.acceptance.pg_app`;
every test works in a schema of its own in the test database. What is checked is what a
user would notice: every run ends succeeded, no step result is lost or recorded twice
(checked in the store, in an independent ledger the steps keep, and in their attempt
log), a worker that lost its lease cannot record anything, and no window of the shared
rate limit holds more calls than the limit. Longer variants are marked ``soak``.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest
from psycopg import sql

from orchestrate import Engine
from orchestrate.store import SCHEMA_VERSION
from orchestrate.store.postgres import PostgresStore
from tests.acceptance import pg_app

APP = Path(pg_app.__file__)
URL = os.environ.get("ORCHESTRATE_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/orchestrate_test")
LEASE = 2.0


def _with_path(url: str, path: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, path, parts.query, parts.fragment))


def _admin(statement: sql.Composable | str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    with psycopg.connect(_with_path(URL, "/postgres"), autocommit=True, connect_timeout=5) as conn:
        cur = conn.execute(statement, params)
        return cur.fetchall() if cur.description else []


@pytest.fixture(scope="module")
def database() -> str:
    name = urlsplit(URL).path.lstrip("/")
    try:
        if not _admin("SELECT 1 FROM pg_database WHERE datname = %s", (name,)):
            try:
                _admin(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
            except psycopg.errors.DuplicateDatabase:
                pass
    except psycopg.OperationalError as exc:
        pytest.fail(f"PostgreSQL at {URL} is not reachable ({exc}); start it with `make services`")
    return URL


class Db:
    """The test's view of one schema: queries that survive a database restart."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.conninfo, self.kwargs = pg_app.evidence_conninfo(url)

    def query(self, statement: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        deadline = time.monotonic() + 90
        while True:
            try:
                with psycopg.connect(self.conninfo, connect_timeout=5, **self.kwargs) as conn:
                    cur = conn.execute(statement, params)
                    return cur.fetchall() if cur.description else []
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.25)

    def statuses(self) -> Counter[str]:
        return Counter({s: n for s, n in self.query("SELECT status, count(*) FROM orchestrate_runs GROUP BY status")})


@pytest.fixture
def db(database: str) -> Iterator[Db]:
    schema = f"t_{uuid.uuid4().hex[:16]}"
    url = f"{database}?schema={schema}"

    async def prepare() -> None:
        store = PostgresStore(url)
        await store.open()
        await store.close()

    asyncio.run(prepare())
    handle = Db(url)
    for statement in pg_app.EVIDENCE_DDL:
        handle.query(statement)
    yield handle
    handle.query(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)).as_string())


class Workers:
    """``orchestrate worker`` processes, their logs, and the ones killed."""

    def __init__(self, db: Db, tmp_path: Path, *args: str) -> None:
        self.db = db
        self.tmp_path = tmp_path
        self.args = args
        self.procs: list[subprocess.Popen[bytes]] = []
        self.logs: dict[int, Path] = {}
        self.killed: set[int] = set()

    def start(self, *extra: str) -> subprocess.Popen[bytes]:
        log = self.tmp_path / f"worker-{len(self.logs)}.log"
        with open(log, "wb") as out:
            proc = subprocess.Popen(
                [
                    sys.executable,
                    "-c",
                    "from orchestrate.cli import main; main()",
                    "worker",
                    *self.args,
                    *extra,
                ],
                env={**os.environ, "ORCHESTRATE_STORE": self.db.url},
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        self.procs.append(proc)
        self.logs[proc.pid] = log
        return proc

    def live(self) -> list[subprocess.Popen[bytes]]:
        return [p for p in self.procs if p.poll() is None]

    def kill(self, proc: subprocess.Popen[bytes]) -> None:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        self.killed.add(proc.pid)

    def log(self, proc: subprocess.Popen[bytes]) -> str:
        return self.logs[proc.pid].read_text(errors="replace")

    def stop(self) -> list[int]:
        """SIGTERM the live ones (once they are serving, signal handlers in place); their exit codes."""
        live = self.live()
        deadline = time.monotonic() + 60
        while not all(p.poll() is not None or " serving " in self.log(p) for p in live):
            assert time.monotonic() < deadline, "a worker never started serving"
            time.sleep(0.1)
        for proc in live:
            proc.send_signal(signal.SIGCONT)
            proc.send_signal(signal.SIGTERM)
        codes = []
        for proc in live:
            try:
                codes.append(proc.wait(timeout=60))
            except subprocess.TimeoutExpired:
                proc.kill()
                codes.append(proc.wait())
        return codes

    def close(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGCONT)
                proc.kill()
                proc.wait()


def _start_runs(db: Db, workflow: str, inputs: list[dict[str, Any]]) -> list[str]:
    async def go() -> list[str]:
        store = PostgresStore(db.url, max_connections=8)
        async with Engine(store) as engine:
            wf = pg_app.five if workflow == "five" else pg_app.limited
            ids = [uuid.uuid4().hex for _ in inputs]
            await asyncio.gather(*(engine.start(wf, value, run_id=rid) for rid, value in zip(ids, inputs, strict=True)))
            return ids

    return asyncio.run(go())


def _wait(what: str, condition: Callable[[], bool], limit: float, *, workers: Workers | None = None) -> None:
    deadline = time.monotonic() + limit
    while not condition():
        if time.monotonic() > deadline:
            tails = "" if workers is None else "\n".join(workers.log(p)[-2000:] for p in workers.procs[-2:])
            raise AssertionError(f"timed out waiting for {what}\n{tails}")
        time.sleep(0.2)


def _check_every_step_once(db: Db, ids: list[str], steps: int, killed: set[int], expected: Callable[[str, str], int]):
    """The store, the ledger and the attempt log agree: nothing lost, nothing recorded twice."""
    rows = db.query("SELECT run_id, status, output FROM orchestrate_runs")
    runs = {rid: (status, output) for rid, status, output in rows}
    assert {rid: runs[rid][0] for rid in ids} == dict.fromkeys(ids, "succeeded")
    assert all(f'"n":{steps}' in runs[rid][1] for rid in ids)
    recorded = Counter(db.query("SELECT run_id, step_key FROM orchestrate_steps"))
    assert len(recorded) == len(ids) * steps and set(recorded.values()) == {1}
    ledger = {(r, s): pid for r, s, pid in db.query("SELECT run_id, step, pid FROM app_ledger")}
    assert set(ledger) == {(rid, f"s{i}") for rid in ids for i in range(1, steps + 1)}
    attempts: dict[tuple[str, str], list[int]] = {}
    for run_id, step, pid in db.query("SELECT run_id, step, pid FROM app_attempts ORDER BY id"):
        attempts.setdefault((run_id, step), []).append(pid)
    assert set(attempts) == set(ledger)
    for key, pids in attempts.items():
        assert ledger[key] in pids  # the ledger row was written by one of its executions
        survivors = [p for p in pids if p not in killed]
        # A step runs again only because the worker running it was killed.
        assert len(survivors) <= expected(*key), (key, pids, killed)
    succeeded = Counter(r for (r,) in db.query("SELECT run_id FROM orchestrate_events WHERE kind = 'run_succeeded'"))
    assert succeeded == dict.fromkeys(ids, 1)
    return attempts


def _kill_test(db: Db, tmp_path: Path, *, runs: int, every: float, pause: float) -> None:
    inputs = [{"n": 0, "pause": pause, "flaky": i % 10 == 0} for i in range(runs)]
    ids = _start_runs(db, "five", inputs)
    flaky = {rid for rid, value in zip(ids, inputs, strict=True) if value["flaky"]}
    workers = Workers(db, tmp_path, "--app", f"{APP}:five", "--concurrency", "8", "--lease", str(LEASE), "--poll", "1")
    try:
        for _ in range(4):
            workers.start()
        next_kill = time.monotonic() + every
        deadline = time.monotonic() + 60 + runs * 0.3
        while db.statuses()["succeeded"] < runs:
            assert time.monotonic() < deadline, f"runs did not finish: {db.statuses()}"
            if time.monotonic() >= next_kill:
                victim = random.choice(workers.live())
                workers.kill(victim)
                workers.start()
                next_kill = time.monotonic() + every
            time.sleep(0.1)
        assert len(workers.killed) >= 3, "the workers were not killed often enough for this test to mean much"
        assert workers.stop() == [0] * 4
    finally:
        workers.close()

    def expected(run_id: str, step: str) -> int:
        return 2 if (run_id in flaky and step == "s2") else 1

    attempts = _check_every_step_once(db, ids, 5, workers.killed, expected)
    assert any(len(pids) > expected(*key) for key, pids in attempts.items()), "no kill landed in a step"
    # The retry of s2 is a durable timer: it fired once, on whichever worker claimed the run.
    retried = db.query("SELECT run_id, pid FROM app_attempts WHERE step = 's2' AND attempt = 2")
    assert {rid for rid, _ in retried} == flaky
    assert max(Counter(rid for rid, pid in retried if pid not in workers.killed).values()) == 1
    recorded = db.query("SELECT run_id, attempts FROM orchestrate_steps WHERE step_key = 's2' AND attempts > 1")
    assert dict(recorded) == dict.fromkeys(flaky, 2)
    resumed = db.query("SELECT count(*) FROM orchestrate_events WHERE kind = 'run_resumed'")
    assert resumed[0][0] > 0


@pytest.mark.timeout(300)
def test_four_workers_finish_500_runs_while_one_is_killed_every_few_seconds(db: Db, tmp_path: Path) -> None:
    _kill_test(db, tmp_path, runs=500, every=2.5, pause=0.2)


@pytest.mark.soak
@pytest.mark.timeout(1800)
def test_soak_2000_runs_with_a_kill_every_second_and_a_half(
    db: Db, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    if "soak" not in (request.config.getoption("markexpr") or ""):
        pytest.skip("a soak variant: run it with -m soak")
    _kill_test(db, tmp_path, runs=2000, every=1.5, pause=0.2)


@pytest.mark.timeout(180)
def test_a_paused_worker_loses_its_lease_and_its_late_result_is_rejected(db: Db, tmp_path: Path) -> None:
    (run_id,) = _start_runs(db, "five", [{"n": 0, "hang": 6}])
    workers = Workers(db, tmp_path, "--app", f"{APP}:five", "--concurrency", "1", "--lease", str(LEASE), "--poll", "1")
    try:
        paused = workers.start()
        _wait("step 3 to start", lambda: bool(db.query("SELECT 1 FROM app_markers")), 60, workers=workers)
        paused.send_signal(signal.SIGSTOP)
        expired = "SELECT 1 FROM orchestrate_runs WHERE lease_expires_at < extract(epoch from clock_timestamp())"
        _wait("the lease to expire on the database clock", lambda: bool(db.query(expired)), 30)
        winner = workers.start()
        _wait("the run to finish", lambda: db.statuses()["succeeded"] == 1, 60, workers=workers)
        paused.send_signal(signal.SIGCONT)
        _wait("the late result to be refused", lambda: "lease_lost" in workers.log(paused), 30, workers=workers)
        assert workers.stop() == [0, 0]
    finally:
        workers.close()
    steps = {key: output for key, output in db.query("SELECT step_key, output FROM orchestrate_steps")}
    assert sorted(steps) == ["s1", "s2", "s3", "s4", "s5"]
    assert f'"by":{winner.pid}' in steps["s3"]  # the winner's result stands
    assert db.query("SELECT pid FROM app_ledger WHERE step = 's3'") == [(winner.pid,)]
    s3 = [pid for (pid,) in db.query("SELECT pid FROM app_attempts WHERE step = 's3' ORDER BY id")]
    assert s3 == [paused.pid, winner.pid]  # it did run to its end, but nothing of it was recorded
    output = db.query("SELECT output FROM orchestrate_runs WHERE run_id = %s", (run_id,))[0][0]
    assert '"n":5' in output


@pytest.mark.timeout(300)
def test_every_run_completes_across_a_database_restart(db: Db, tmp_path: Path) -> None:
    ids = _start_runs(db, "five", [{"n": 0, "pause": 0.15} for _ in range(120)])
    workers = Workers(db, tmp_path, "--app", f"{APP}:five", "--concurrency", "10", "--lease", "5", "--poll", "1")
    try:
        workers.start()
        workers.start()
        _wait("some runs to finish", lambda: db.statuses()["succeeded"] >= 15, 120, workers=workers)
        assert db.statuses()["running"] > 0
        cluster = sorted(os.listdir("/etc/postgresql"))[0]
        subprocess.run(
            ["pg_ctlcluster", "--skip-systemctl-redirect", cluster, "main", "restart"], check=True, timeout=120
        )
        _wait("every run to finish", lambda: db.statuses()["succeeded"] == len(ids), 180, workers=workers)
        assert len(workers.live()) == 2, "a worker died with the database"
        assert workers.stop() == [0, 0]
    finally:
        workers.close()
    _check_every_step_once(db, ids, 5, set(), lambda run_id, step: 2)  # a restart may cost a re-execution
    logs = "".join(workers.log(p) for p in workers.procs)
    assert "store_retry" in logs or "lease_renew_failed" in logs or "store_listen_lost" in logs


@pytest.mark.timeout(240)
def test_four_workers_share_one_rate_limit_and_no_window_exceeds_it(db: Db, tmp_path: Path) -> None:
    ids = _start_runs(db, "limited", [{"n": 0} for _ in range(110)])
    workers = Workers(db, tmp_path, "--app", f"{APP}:limited", "--concurrency", "20", "--poll", "1")
    try:
        for _ in range(4):
            workers.start()
        _wait("every call", lambda: db.statuses()["succeeded"] == len(ids), 120, workers=workers)
        assert workers.stop() == [0] * 4
    finally:
        workers.close()
    calls = db.query("SELECT granted_at, pid FROM app_calls ORDER BY granted_at")
    assert len(calls) == len(ids)
    grants = [g for g, _ in calls]
    busiest = max(sum(1 for g in grants[i:] if g < start + 10.0) for i, start in enumerate(grants))
    assert busiest == 50  # reached, never exceeded, in any 10 s window of database time
    assert len({pid for _, pid in calls}) >= 2  # the limit really was shared
    assert grants[-1] - grants[0] >= 20.0  # 110 calls at 50 per 10 s: two windows had to pass


@pytest.mark.timeout(180)
def test_sigterm_drains_and_hands_back_the_runs_still_going(db: Db, tmp_path: Path) -> None:
    ids = _start_runs(db, "five", [{"n": 0, "pause": 1.5} for _ in range(3)])
    workers = Workers(db, tmp_path, "--app", f"{APP}:five", "--concurrency", "3", "--lease", "30", "--poll", "1")
    try:
        first = workers.start("--drain", "0.5")
        _wait("the runs to start", lambda: db.statuses()["running"] == 3, 60, workers=workers)
        first.send_signal(signal.SIGTERM)
        assert first.wait(timeout=60) == 0
        assert db.statuses()["pending"] == 3  # handed back at once, not left to a 30 s lease
        released = db.query("SELECT count(*) FROM orchestrate_events WHERE kind = 'run_released'")
        assert released == [(3,)]
        workers.start()
        _wait("another worker to finish them", lambda: db.statuses()["succeeded"] == 3, 60, workers=workers)
        assert workers.stop() == [0]
    finally:
        workers.close()
    _check_every_step_once(db, ids, 5, {first.pid}, lambda run_id, step: 1)


@pytest.mark.timeout(180)
def test_ten_processes_migrating_an_empty_database_at_once(database: str) -> None:
    name = f"orchestrate_mig_{uuid.uuid4().hex[:10]}"
    _admin(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = _with_path(database, f"/{name}")
    try:
        procs = [
            subprocess.Popen([sys.executable, str(APP), "migrate", url], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            for _ in range(10)
        ]
        results = [p.communicate(timeout=120) for p in procs]
        assert [p.returncode for p in procs] == [0] * 10, [err.decode()[-2000:] for _, err in results]
        assert [out.decode().strip() for out, _ in results] == [str(SCHEMA_VERSION)] * 10
        with psycopg.connect(url, autocommit=True) as conn:
            meta = conn.execute("SELECT key, value FROM orchestrate_meta").fetchall()
            assert meta == [("schema_version", str(SCHEMA_VERSION))]
            tables = conn.execute("SELECT count(*) FROM pg_tables WHERE tablename LIKE 'orchestrate_%'").fetchone()
            assert tables is not None and tables[0] >= 9
            triggers = conn.execute("SELECT count(*) FROM pg_trigger WHERE tgname = 'orchestrate_runs_notify'")
            assert triggers.fetchone() == (1,)
    finally:
        _admin(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
