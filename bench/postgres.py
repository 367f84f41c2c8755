"""PostgreSQL: durable cost per step, many runs at once, worker scale-out, claim latency.

Every figure is set against a floor measured in the same run, on the same server: one
bare single-row ``INSERT`` in autocommit per step (a row about the size of a step
record, through psycopg on its own connection) — the one commit a durable step cannot
avoid. Measurements:

* one run at a time, ten async steps, ``PostgresStore`` (database clock): cost per step;
* 100 runs at once in one process: aggregate cost per step (the step records waiting
  while a commit is in flight go out together: group commit, below the per-INSERT floor);
* 1, 2 and 4 ``orchestrate worker`` processes (concurrency 32 each) draining the same
  backlog of 2,000 runs, due at one moment once every worker has started: steps per
  second (from the first claim to the last run's end, database events), with the CPU
  cores the workers and the server used meanwhile;
* claim latency: an idle worker woken by ``NOTIFY``, runs created one by one; from the
  run's creation to the worker's ``run_resumed`` event, written once it has claimed the
  run and read its recorded steps (p50, p99).

Needs the server named by ``ORCHESTRATE_BENCH_POSTGRES`` (default: the local one,
database ``orchestrate_test``); works in a schema of its own, dropped afterwards.
"""

from __future__ import annotations

import asyncio
import collections
import os
import statistics
import subprocess
import sys
import threading
import time
import uuid
from typing import Any

import psycopg
from psycopg import sql

from bench.chain import async_workflow
from bench.harness import STEPS, Case, Plan, Row, paired_async, rounds, skipped, summarise
from orchestrate import Engine
from orchestrate.store.postgres import PostgresStore

URL = os.environ.get(
    "ORCHESTRATE_BENCH_POSTGRES",
    os.environ.get("ORCHESTRATE_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/orchestrate_test"),
)
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ROW_PAYLOAD = "x" * 120
"""Payload of a floor row: a step record's columns are about this long once serialised."""

CHAIN = async_workflow("pg_chain")
"""The ten-step chain, importable by worker processes as ``bench.postgres:CHAIN``."""

FLOOR_LABEL = "bare single-row INSERT, autocommit, per step (same server)"
WORKER_CONCURRENCY = 32
WORKER_START_SECONDS = 4
"""Time a worker process is given to start (plus one second per worker) before the backlog is due."""


class InsertFloor:
    """One bare ``INSERT`` per step, autocommit, on a connection of its own."""

    def __init__(self, conn: psycopg.AsyncConnection[Any]) -> None:
        self.conn = conn
        self.cursor = conn.cursor()

    @classmethod
    async def open(cls, schema: str) -> InsertFloor:
        conn = await psycopg.AsyncConnection.connect(URL, autocommit=True, options=f"-c search_path={schema}")
        await conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS bench_floor (run_id TEXT NOT NULL, step_key TEXT NOT NULL, payload TEXT,"
            " PRIMARY KEY (run_id, step_key))"
        )
        return cls(conn)

    async def chain(self) -> None:
        """Ten steps' worth: ten inserts, each its own committed transaction.

        Through one cursor, reused: the cheapest way psycopg sends a statement (a new
        cursor per statement, as ``conn.execute`` makes, costs 30-50 µs more here).
        """
        run_id = uuid.uuid4().hex
        cur = self.cursor
        for i in range(STEPS):
            await cur.execute("INSERT INTO bench_floor VALUES (%s, %s, %s)", (run_id, f"s{i}", ROW_PAYLOAD))

    async def close(self) -> None:
        await self.conn.close()


class _Counting:
    """Counts the store calls the engine makes (all of them are round trips)."""

    def __init__(self, inner: PostgresStore) -> None:
        self.inner = inner
        self.calls = 0

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.inner, name)
        if not asyncio.iscoroutinefunction(attr) or name in ("open", "close"):
            return attr

        async def call(*args: Any, **kwargs: Any) -> Any:
            self.calls += 1
            return await attr(*args, **kwargs)

        return call


def _url(schema: str, **options: Any) -> str:
    query = "&".join([f"schema={schema}", *(f"{k}={v}" for k, v in options.items())])
    return f"{URL}{'&' if '?' in URL else '?'}{query}"


async def _sequential(plan: Plan, schema: str) -> Row:
    floor = await InsertFloor.open(schema)
    counting = _Counting(PostgresStore(_url(schema)))
    # Short batches, many rounds, their order shuffled: on a shared machine a burst of
    # load then hits a few rounds of both; the ratio is the median of per-round ratios.
    runs, count = (3, plan.rounds) if plan.quick else (8, 25)
    async with Engine(counting, workflows=[CHAIN]) as engine:  # type: ignore[arg-type]
        assert await engine.run(CHAIN, 0) == STEPS

        async def subject() -> None:
            await engine.run(CHAIN, 0)

        before = counting.calls
        times = await rounds([Case("ours", subject, runs), Case("floor", floor.chain, runs)], rounds=count, warmup=5)
        calls = (counting.calls - before) / (runs * count + 5)
        subject_s, floor_s = times["ours"], times["floor"]
    await floor.close()
    row = Row(
        key="ours.postgres.sequential",
        group="postgres",
        system="orchestrate",
        label="async steps, PostgresStore, one run at a time",
        floor=FLOOR_LABEL,
        runs=runs,
    )
    summarise(row, subject_s, floor_s, per=STEPS)
    row.extra.update(store_calls_per_run=round(calls, 2), ratio_of_best_samples=round(min(subject_s) / min(floor_s), 3))
    return row


async def _concurrent(plan: Plan, schema: str, width: int) -> Row:
    floor = await InsertFloor.open(schema)
    pool = 20
    async with Engine(PostgresStore(_url(schema, pool_max=pool)), workflows=[CHAIN]) as engine:

        async def batch() -> None:
            outputs = await asyncio.gather(*(engine.run(CHAIN, 0) for _ in range(width)))
            assert outputs == [STEPS] * width

        await batch()
        store = engine.store
        before = (store._steps.batches, store._steps.statements)  # type: ignore[attr-defined]
        subject_s, floor_s = await paired_async(
            batch, floor.chain, runs=1, floor_runs=max(1, plan.floor_commits // STEPS), repeats=plan.repeats, warmup=0
        )
        batches = store._steps.batches - before[0]  # type: ignore[attr-defined]
        statements = store._steps.statements - before[1]  # type: ignore[attr-defined]
    await floor.close()
    row = Row(
        key="ours.postgres.concurrent",
        group="postgres",
        system="orchestrate",
        label=f"{width} concurrent runs in one process (pool of {pool}), aggregate per step",
        floor=FLOOR_LABEL,
        runs=width,
    )
    summarise(row, [s / width for s in subject_s], floor_s, per=STEPS)
    row.extra.update(
        steps_per_second=round(1e6 / row.per_step_us) if row.per_step_us else None,
        step_records_per_commit=round(statements / batches, 1) if batches else None,
    )
    return row


class _Worker:
    """An ``orchestrate worker`` process at the default log level, its stderr drained.

    A thread reads the worker's log lines as they come (a pipe nobody reads fills up
    and blocks the writer) and keeps the last ones, shown if the worker fails.
    """

    def __init__(self, url: str, concurrency: int) -> None:
        self.proc = _spawn(url, concurrency)
        self.tail: collections.deque[str] = collections.deque(maxlen=20)
        self.lines = 0
        self.reader = threading.Thread(target=self._drain, name="bench-worker-stderr", daemon=True)
        self.reader.start()

    def _drain(self) -> None:
        stream = self.proc.stderr
        assert stream is not None
        for line in iter(stream.readline, b""):
            self.lines += 1
            self.tail.append(line.decode(errors="replace").rstrip())
        stream.close()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def poll(self) -> int | None:
        return self.proc.poll()

    def failure(self) -> str:
        """The worker's exit and last log lines, for an error message."""
        return f"worker {self.pid} exit {self.proc.poll()}: " + " | ".join(list(self.tail)[-5:])


def _spawn(url: str, concurrency: int) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [ROOT, os.environ.get("PYTHONPATH")]))}
    return subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from orchestrate.cli import main; main()",
            "worker",
            "--store",
            url,
            "--app",
            "bench.postgres:CHAIN",
            "--concurrency",
            str(concurrency),
            "--poll",
            "5",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def _stop(workers: list[_Worker]) -> int:
    """Stop the workers; how many log lines they wrote in all."""
    for worker in workers:
        worker.proc.terminate()
    for worker in workers:
        try:
            worker.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            worker.proc.kill()
            worker.proc.wait()
        worker.reader.join(timeout=10)
    return sum(worker.lines for worker in workers)


async def _count(store: PostgresStore, statement: str) -> Any:
    row = await store._fetchone("bench", statement)
    assert row is not None
    return row[0]


def _process_cpu(pid: int | str) -> float:
    """CPU seconds (user + system) used so far by one process; ``OSError`` if it is gone."""
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _cpu_seconds(pids: list[int]) -> float | None:
    """CPU seconds used so far by these processes (``None`` when unreadable)."""
    try:
        return sum(_process_cpu(pid) for pid in pids)
    except OSError:
        return None


def _postgres_cpu_seconds() -> float | None:
    """CPU seconds used so far by the local server's processes (``None`` when unreadable)."""
    total = 0.0
    try:
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                with open(f"/proc/{pid}/comm") as fh:
                    if fh.read().startswith("postgres"):
                        total += _process_cpu(pid)
            except OSError:
                continue  # the process ended meanwhile
    except OSError:
        return None
    return total


async def _scale_out(plan: Plan, schema: str, workers: int, floor_us: float) -> Row:
    """Steps per second of ``workers`` processes draining a backlog of runs."""
    runs = 100 if plan.quick else 2000
    sub = f"{schema}_w{workers}"
    store = PostgresStore(_url(sub))
    async with Engine(store, workflows=[CHAIN]) as engine:
        await asyncio.gather(*(engine.start(CHAIN, 0) for _ in range(runs)))
        # The backlog becomes due at one moment, once every worker has started (a worker
        # takes a second or more to import and connect): the first one up must not drain
        # it alone before the others arrive. Workers sleep until the scheduled start.
        await store._execute(
            "bench",
            "UPDATE orchestrate_runs SET wake_at = EXTRACT(EPOCH FROM clock_timestamp()) + %s WHERE status = 'pending'",
            (WORKER_START_SECONDS + workers,),
        )
        due_in = WORKER_START_SECONDS + workers
        procs = [_Worker(_url(sub, pool_max=16), WORKER_CONCURRENCY) for _ in range(workers)]
        log_lines = 0
        try:
            # CPU is counted over the drain only: from the moment the backlog is due (the
            # workers have started and wait) to the last run's end.
            await asyncio.sleep(due_in - 0.1)
            workers_before = _cpu_seconds([p.pid for p in procs])
            server_before = _postgres_cpu_seconds()
            started = time.monotonic()
            deadline = started + 600
            while await _count(store, "SELECT count(*) FROM orchestrate_runs WHERE status = 'succeeded'") < runs:
                if time.monotonic() > deadline or any(p.poll() is not None for p in procs):
                    raise RuntimeError("workers did not drain the backlog: " + "; ".join(p.failure() for p in procs))
                await asyncio.sleep(0.05)
            wall = time.monotonic() - started
            workers_after = _cpu_seconds([p.pid for p in procs])
            server_after = _postgres_cpu_seconds()
        finally:
            log_lines = _stop(procs)
        first = await _count(store, "SELECT min(at) FROM orchestrate_events WHERE kind = 'run_resumed'")
        last = await _count(store, "SELECT max(at) FROM orchestrate_events WHERE kind = 'run_succeeded'")
    elapsed = float(last) - float(first)
    steps = runs * STEPS
    per_step_us = elapsed / steps * 1e6
    row = Row(
        key=f"ours.postgres.workers{workers}",
        group="postgres",
        system="orchestrate",
        label=f"{workers} worker process(es) x concurrency {WORKER_CONCURRENCY} draining {runs} runs, per step",
        floor=FLOOR_LABEL,
        runs=runs,
        per_step_us=round(per_step_us, 3),
        floor_per_step_us=round(floor_us, 3),
        overhead_per_step_us=round(per_step_us - floor_us, 3),
        ratio=round(per_step_us / floor_us, 3),
        repeats=1,
    )
    row.extra = {
        "steps_per_second": round(steps / elapsed),
        "workers": workers,
        "worker_log_lines": log_lines,
        # Cores busy while the backlog drained.
        "worker_cores": None
        if workers_before is None or workers_after is None
        else round((workers_after - workers_before) / wall, 2),
        "server_cores": None
        if server_before is None or server_after is None
        else round((server_after - server_before) / wall, 2),
    }
    return row


async def _claim_latency(plan: Plan, schema: str) -> Row:
    """From a run's creation to an idle worker's claim, woken by NOTIFY (poll fallback 5 s)."""
    samples = 40 if plan.quick else 200
    sub = f"{schema}_claim"
    store = PostgresStore(_url(sub))
    async with Engine(store, workflows=[CHAIN]) as engine:
        procs = [_Worker(_url(sub, pool_max=4), 8)]
        try:
            await asyncio.sleep(2.0)  # let the worker start and go idle
            ids = []
            for _ in range(samples):
                ids.append(await engine.start(CHAIN, 0))
                await asyncio.sleep(0.05)
            deadline = time.monotonic() + 120
            while await _count(store, "SELECT count(*) FROM orchestrate_runs WHERE status = 'succeeded'") < samples:
                if time.monotonic() > deadline or procs[0].poll() is not None:
                    raise RuntimeError("the worker did not finish the runs: " + procs[0].failure())
                await asyncio.sleep(0.2)
        finally:
            _stop(procs)
        rows = await store._fetch(
            "bench",
            "SELECT e.at - r.created_at FROM orchestrate_runs r JOIN orchestrate_events e ON e.run_id = r.run_id"
            " AND e.kind = 'run_resumed'",
        )
    latencies = sorted(float(r[0]) * 1000 for r in rows)
    p50 = statistics.median(latencies)
    p99 = latencies[min(len(latencies) - 1, round(0.99 * (len(latencies) - 1)))]
    row = Row(
        key="ours.postgres.claim_latency",
        group="postgres",
        system="orchestrate",
        label="run created -> resumed by an idle worker woken by NOTIFY (claim and replay reads; poll 5 s)",
        floor="",
        runs=len(latencies),
        note="per step µs column: p50 latency",
        per_step_us=round(p50 * 1000, 3),
    )
    row.extra = {"p50_ms": round(p50, 2), "p99_ms": round(p99, 2), "max_ms": round(latencies[-1], 2)}
    return row


async def _all(plan: Plan) -> list[Row]:
    schema = f"bench_{uuid.uuid4().hex[:10]}"
    rows: list[Row] = []
    try:
        seq = await _sequential(plan, schema)
        rows.append(seq)
        rows.append(await _concurrent(plan, schema, plan.concurrent_runs))
        floor_us = seq.floor_per_step_us or 1.0
        for workers in (1, 2, 4):
            rows.append(await _scale_out(plan, schema, workers, floor_us))
        rows.append(await _claim_latency(plan, schema))
    finally:
        async with await psycopg.AsyncConnection.connect(URL, autocommit=True) as conn:
            for name in (schema, f"{schema}_w1", f"{schema}_w2", f"{schema}_w4", f"{schema}_claim"):
                await conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(name)))
    return rows


def run(plan: Plan) -> list[Row]:
    """The PostgreSQL group (skipped when the server is not reachable)."""
    try:
        psycopg.connect(URL, connect_timeout=5).close()
    except psycopg.OperationalError as exc:
        return [skipped("ours.postgres", "postgres", "orchestrate", "PostgreSQL", f"server not reachable: {exc}")]
    return asyncio.run(_all(plan))
