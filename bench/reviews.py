"""Review gates: decision -> run resumed latency, and a worker's memory with many parked runs.

Latency is the wall time from the moment a reviewer's ``Client.approve`` is called to the
moment the step after the gate starts (it records ``time.time()``), per decision:

* ``ours.sqlite.review_resume.inprocess`` — the deciding process drives the run itself
  (``approve`` then ``resume``): the engine's own cost, no polling;
* ``ours.sqlite.review_resume.worker`` — a worker in another process claims the woken
  run; SQLite sends no notifications, so this includes its poll interval (50 ms here);
* ``ours.postgres.review_resume.worker`` — the same with a PostgreSQL store: the decision
  wakes the run and the idle worker hears the ``NOTIFY`` (its poll is 5 s, so polling
  cannot be what wakes it). Skipped when PostgreSQL is not reachable.

The floor is one bare ``UPDATE`` + ``COMMIT`` on the same kind of database: the least a
durable decision costs. Memory (``ours.sqlite.parked_memory.N``) is a worker process's
resident set and its traced Python allocations while it serves a store with N runs
parked at a gate (10 and 10,000; 10 and 1,000 with ``--quick``): waiting costs rows, not
memory. The markdown section for ``docs/benchmarks.md`` comes from :func:`markdown`.

Run alone: ``python -m bench --only reviews``.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
import uuid
from typing import Any

from bench.harness import Plan, Row, skipped
from orchestrate import Client, Engine, Step, Workflow
from orchestrate.review import HumanReviewGate
from orchestrate.store import open_store

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PG_URL = os.environ.get("ORCHESTRATE_BENCH_POSTGRES", "postgresql://postgres@127.0.0.1:5432/orchestrate_bench")


def draft(n: int) -> dict[str, Any]:
    """The gated step."""
    return {"n": n, "summary": "fracture, left wrist"}


def resumed(d: dict[str, Any]) -> dict[str, Any]:
    """The step after the gate: when did it start?"""
    return {"n": d["n"], "at": time.time()}


GATED = Workflow(
    "bench_review",
    [Step("draft", draft, gate=HumanReviewGate(roles=["reviewer"], timeout=86_400)), Step("resumed", resumed)],
    version="1",
)


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [ROOT, env.get("PYTHONPATH")]))
    return env


def _child(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "bench.reviews", *args],
        cwd=ROOT,
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _stats(latencies_s: list[float]) -> dict[str, float]:
    ordered = sorted(latencies_s)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return {"p50_ms": round(statistics.median(ordered) * 1e3, 2), "p95_ms": round(p95 * 1e3, 2)}


# floors ------------------------------------------------------------------------------------


def _sqlite_commit_floor(path: str, n: int) -> float:
    """Seconds per bare UPDATE + COMMIT with synchronous=FULL in WAL mode."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = FULL")
        conn.execute("CREATE TABLE IF NOT EXISTS floor (id INTEGER PRIMARY KEY, v INTEGER)")
        conn.execute("INSERT OR IGNORE INTO floor VALUES (1, 0)")
        start = time.perf_counter()
        for _ in range(n):
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("UPDATE floor SET v = v + 1 WHERE id = 1")
            conn.execute("COMMIT")
        return (time.perf_counter() - start) / n
    finally:
        conn.close()


def _pg_commit_floor(url: str, n: int) -> float:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TEMP TABLE floor (id INTEGER PRIMARY KEY, v INTEGER)")
        conn.execute("INSERT INTO floor VALUES (1, 0)")
        start = time.perf_counter()
        for _ in range(n):
            with conn.transaction():
                conn.execute("UPDATE floor SET v = v + 1 WHERE id = 1")
        return (time.perf_counter() - start) / n


# latency -----------------------------------------------------------------------------------


async def _park(client: Client, n: int) -> tuple[str, str]:
    record = await client.run(GATED, n)
    (item,) = await client.list_reviews(run_id=record.run_id)
    return record.run_id, item.review_id


async def _resumed_at(client: Client, run_id: str, limit: float = 30.0) -> float:
    give_up = time.monotonic() + limit
    while True:
        for step in await client.store.get_steps(run_id):
            if step.step_key == "resumed":
                return float(step.output["at"])
        if time.monotonic() > give_up:
            raise RuntimeError(f"run {run_id} did not resume within {limit}s")
        await asyncio.sleep(0.001)


async def _inprocess(url: str, runs: int) -> list[float]:
    latencies = []
    async with Client(url, workflows=[GATED]) as client:
        for i in range(runs + 2):
            run_id, review_id = await _park(client, i)
            t0 = time.time()
            await client.approve(review_id, by="bench", role="reviewer")
            await client.resume(run_id)
            at = await _resumed_at(client, run_id)
            if i >= 2:  # warm-up
                latencies.append(at - t0)
    return latencies


async def _with_worker(url: str, runs: int, poll: float) -> list[float]:
    worker = _child("worker", url, str(poll))
    try:
        line = worker.stdout.readline() if worker.stdout else ""
        if not line.startswith("ready"):
            raise RuntimeError(f"worker did not start: {line} {worker.stderr.read() if worker.stderr else ''}")
        latencies = []
        async with Client(url, workflows=[GATED]) as client:
            for i in range(runs + 2):
                run_id, review_id = await _park(client, i)
                await asyncio.sleep(0.013 * (i % 7))  # decisions land at varied points of the worker's poll
                t0 = time.time()
                await client.approve(review_id, by="bench", role="reviewer")
                at = await _resumed_at(client, run_id)
                if i >= 2:
                    latencies.append(at - t0)
        return latencies
    finally:
        worker.send_signal(signal.SIGTERM)
        try:
            worker.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.communicate()


def _latency_row(key: str, label: str, floor: str, latencies: list[float], floor_s: float, note: str) -> Row:
    per = statistics.median(latencies)
    row = Row(key=key, group="reviews", system="orchestrate", label=label, floor=floor, runs=len(latencies))
    row.samples_us = [round(s * 1e6, 1) for s in latencies]
    row.per_step_us = round(per * 1e6, 1)
    row.floor_per_step_us = round(floor_s * 1e6, 1)
    row.overhead_per_step_us = round(row.per_step_us - row.floor_per_step_us, 1)
    row.ratio = round(per / floor_s, 2) if floor_s else None
    row.repeats = 1
    row.extra = _stats(latencies)
    row.note = note
    return row


def _pg_available() -> str | None:
    try:
        import psycopg
    except ImportError:
        return "psycopg is not installed (pip install 'orchestrate-ai[postgres]')"
    base, _, name = PG_URL.rpartition("/")
    try:
        with psycopg.connect(f"{base}/postgres", autocommit=True, connect_timeout=3) as conn:
            if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone() is None:
                conn.execute(f'CREATE DATABASE "{name}"')
    except psycopg.Error as exc:
        return f"PostgreSQL at {PG_URL} is not reachable: {str(exc).strip().splitlines()[0]}"
    return None


def _drop_schema(schema: str) -> None:
    import psycopg

    with psycopg.connect(PG_URL, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


# memory ------------------------------------------------------------------------------------


def _memory_row(parked: int, tmp: str) -> Row:
    url = f"sqlite:///{tmp}/parked_{parked}.db?synchronous=normal"
    setup = _child("park", url, str(parked))
    out, err = setup.communicate(timeout=1800)
    if setup.returncode != 0:
        raise RuntimeError(f"parking {parked} runs failed: {err.strip()[-500:]}")
    park_s = float(out.strip().splitlines()[-1])
    idle = _child("idle", url, "3.0")
    out, err = idle.communicate(timeout=600)
    if idle.returncode != 0:
        raise RuntimeError(f"the idle worker failed: {err.strip()[-500:]}")
    found = json.loads(out.strip().splitlines()[-1])
    row = Row(
        key=f"ours.sqlite.parked_memory.{parked}",
        group="reviews",
        system="orchestrate",
        label=f"a worker serving a store with {parked:,} runs parked at a gate (3 s of polling)",
        floor="-",
        runs=parked,
    )
    row.extra = {
        "rss_mb": found["rss_mb"],
        "peak_rss_mb": found["hwm_mb"],
        "traced_mb": found["traced_mb"],
        "traced_peak_mb": found["traced_peak_mb"],
        "list_reviews_ms": found["list_ms"],
        "park_ms_per_run": round(park_s / parked * 1e3, 3),
    }
    row.note = "memory in MB, not µs; list_reviews_ms: the 50 most urgent items a role may decide"
    return row


# child entry points ------------------------------------------------------------------------


async def _serve(url: str, poll: float) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    async with Engine(open_store(url), workflows=[GATED]) as engine:
        print("ready", flush=True)
        await engine.work(poll_seconds=poll, stop=stop, concurrency=20)


async def _park_many(url: str, n: int) -> None:
    start = time.perf_counter()
    async with Engine(open_store(url), workflows=[GATED]) as engine:
        batch = 250
        for first in range(0, n, batch):
            records = await asyncio.gather(
                *(engine.run_record(GATED, i, run_id=f"parked-{i}") for i in range(first, min(first + batch, n)))
            )
            assert all(r.status.value == "waiting" for r in records)
    print(round(time.perf_counter() - start, 3), flush=True)


def _vm(field: str) -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return round(int(line.split()[1]) / 1024, 1)
    return float("nan")


async def _idle(url: str, seconds: float) -> None:
    tracemalloc.start()
    async with Engine(open_store(url), workflows=[GATED]) as engine:
        stop = asyncio.Event()
        asyncio.get_running_loop().call_later(seconds, stop.set)
        driven = await engine.work(poll_seconds=0.1, stop=stop)
        assert driven == 0, f"{driven} parked runs were claimed"
        client = Client(engine=engine)
        start = time.perf_counter()
        found = await client.list_reviews(role="reviewer", limit=50)
        list_ms = round((time.perf_counter() - start) * 1e3, 2)
        assert len(found) == min(50, len(found))
    current, peak = tracemalloc.get_traced_memory()
    print(
        json.dumps(
            {
                "rss_mb": _vm("VmRSS"),
                "hwm_mb": _vm("VmHWM"),
                "traced_mb": round(current / 2**20, 2),
                "traced_peak_mb": round(peak / 2**20, 2),
                "list_ms": list_ms,
            }
        ),
        flush=True,
    )


# the group ---------------------------------------------------------------------------------


def run(plan: Plan) -> list[Row]:
    """Measure decision -> resumed latency (SQLite, PostgreSQL) and memory with parked runs."""
    runs = 5 if plan.quick else 40
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="orchestrate-bench-reviews-") as tmp:
        floor = _sqlite_commit_floor(os.path.join(tmp, "floor.db"), 20 if plan.quick else 200)
        floor_label = "one bare UPDATE + COMMIT, SQLite WAL, synchronous=FULL"
        url = f"sqlite:///{tmp}/inprocess.db"
        rows.append(
            _latency_row(
                "ours.sqlite.review_resume.inprocess",
                "approve -> next step starts; the deciding process resumes the run (SQLite, FULL)",
                floor_label,
                asyncio.run(_inprocess(url, runs)),
                floor,
                "no polling: the engine's own cost",
            )
        )
        url = f"sqlite:///{tmp}/worker.db"
        rows.append(
            _latency_row(
                "ours.sqlite.review_resume.worker",
                "approve -> next step starts in a worker process polling every 50 ms (SQLite, FULL)",
                floor_label,
                asyncio.run(_with_worker(url, runs, 0.05)),
                floor,
                "includes the worker's poll interval (SQLite sends no notifications)",
            )
        )
        why_not = _pg_available()
        if why_not is not None:
            rows.append(
                skipped(
                    "ours.postgres.review_resume.worker",
                    "reviews",
                    "orchestrate",
                    "approve -> next step starts in a PostgreSQL worker (LISTEN/NOTIFY)",
                    why_not,
                )
            )
        else:
            schema = f"bench_reviews_{uuid.uuid4().hex[:8]}"
            pg = f"{PG_URL}?schema={schema}"
            try:
                latencies = asyncio.run(_with_worker(pg, runs, 5.0))
                rows.append(
                    _latency_row(
                        "ours.postgres.review_resume.worker",
                        "approve -> next step starts in a worker process woken by NOTIFY (PostgreSQL, poll 5 s)",
                        "one bare UPDATE + COMMIT, PostgreSQL",
                        latencies,
                        _pg_commit_floor(PG_URL, 20 if plan.quick else 200),
                        "the worker's poll is 5 s: the NOTIFY wakes it",
                    )
                )
            finally:
                _drop_schema(schema)
        for parked in (10, 1_000 if plan.quick else 10_000):
            rows.append(_memory_row(parked, tmp))
    return rows


def markdown(rows: list[Row]) -> str:
    """The "Review gates" section of ``docs/benchmarks.md`` for these rows."""
    out = [
        "| measurement | p50 | p95 | floor | p50 / floor |",
        "|---|---|---|---|---|",
    ]
    for row in rows:
        if "review_resume" not in row.key:
            continue
        if row.skipped:
            out.append(f"| {row.key} | - | - | - | skipped: {row.skipped} |")
            continue
        floor_ms = (row.floor_per_step_us or 0) / 1e3
        out.append(
            f"| {row.label} | {row.extra['p50_ms']:.1f} ms | {row.extra['p95_ms']:.1f} ms "
            f"| {floor_ms:.2f} ms | {row.ratio:g}x |"
        )
    out += [
        "",
        "| runs parked at a gate | worker RSS | peak RSS | traced Python heap (peak) | reviews list (50 of them) "
        "| parking cost per run |",
        "|---|---|---|---|---|---|",
    ]
    for row in rows:
        if "parked_memory" not in row.key:
            continue
        e = row.extra
        out.append(
            f"| {row.runs:,} | {e['rss_mb']} MB | {e['peak_rss_mb']} MB | {e['traced_mb']} MB "
            f"({e['traced_peak_mb']} MB) | {e['list_reviews_ms']} ms | {e['park_ms_per_run']} ms |"
        )
    return "\n".join(out)


if __name__ == "__main__":
    mode = sys.argv[1]
    if mode == "worker":
        asyncio.run(_serve(sys.argv[2], float(sys.argv[3])))
    elif mode == "park":
        asyncio.run(_park_many(sys.argv[2], int(sys.argv[3])))
    elif mode == "idle":
        asyncio.run(_idle(sys.argv[2], float(sys.argv[3])))
    else:
        plan = Plan.smoke() if "--quick" in sys.argv else Plan.full()
        measured = run(plan)
        for r in measured:
            print(json.dumps(r.to_dict()))
        print(markdown(measured))
