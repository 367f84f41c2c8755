"""Workflows served by the PostgreSQL acceptance tests' worker processes, and their helpers.

Workers run the real command line: ``orchestrate worker --app pg_app.py:five ...`` with
``ORCHESTRATE_STORE`` naming the store (``postgresql://...?schema=...``). Every step
leaves evidence in tables of the same schema, written by the step itself over its own
connection (a side effect the engine knows nothing about):

* ``app_attempts`` — one row per execution of a step: ``(run_id, step, attempt, pid, at)``;
* ``app_ledger`` — one row per step that did its work, keyed by ``(run_id, step)``;
* ``app_calls`` — one row per call through the shared rate limit, with its grant time.

``python pg_app.py migrate URL`` opens the store (migrating it) and prints its version.
"""

from __future__ import annotations

import asyncio
import os
import sys
import threading
import time
from typing import Any

import psycopg

from orchestrate import Retry, Step, StepContext, Workflow
from orchestrate.policies_shared import SharedRateLimiter
from orchestrate.store.postgres import PostgresStore

EVIDENCE_DDL = [
    "CREATE TABLE IF NOT EXISTS app_attempts (id BIGSERIAL PRIMARY KEY, run_id TEXT NOT NULL, step TEXT NOT NULL,"
    " attempt INT NOT NULL, pid INT NOT NULL, at DOUBLE PRECISION NOT NULL)",
    "CREATE TABLE IF NOT EXISTS app_ledger (run_id TEXT NOT NULL, step TEXT NOT NULL, pid INT NOT NULL,"
    " PRIMARY KEY (run_id, step))",
    "CREATE TABLE IF NOT EXISTS app_calls (run_id TEXT PRIMARY KEY, granted_at DOUBLE PRECISION NOT NULL,"
    " pid INT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS app_markers (key TEXT PRIMARY KEY)",
]

_local = threading.local()


def evidence_conninfo(url: str) -> tuple[str, dict[str, Any]]:
    """libpq conninfo and connect arguments reaching the schema of store URL ``url``."""
    store = PostgresStore(url)
    kwargs: dict[str, Any] = {"autocommit": True}
    if store.schema:
        kwargs["options"] = f"-c search_path={store.schema}"
    return store.conninfo, kwargs


def _conn() -> psycopg.Connection[Any]:
    # One connection per step thread, reconnecting after a database restart.
    conn: psycopg.Connection[Any] | None = getattr(_local, "conn", None)
    if conn is None or conn.closed or conn.broken:
        conninfo, kwargs = evidence_conninfo(os.environ["ORCHESTRATE_STORE"])
        conn = psycopg.connect(conninfo, **kwargs)
        _local.conn = conn
    return conn


def _write(statement: str, params: tuple[Any, ...]) -> bool:
    """Run one statement, retrying while the database is restarting; whether it changed a row."""
    deadline = time.monotonic() + 60
    while True:
        try:
            return _conn().execute(statement, params).rowcount > 0
        except psycopg.OperationalError:
            _local.conn = None
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def make_step(name: str) -> Any:
    def step(value: dict[str, Any], ctx: StepContext) -> dict[str, Any]:
        pid = os.getpid()
        _write(
            "INSERT INTO app_attempts (run_id, step, attempt, pid, at) VALUES (%s, %s, %s, %s, %s)",
            (ctx.run_id, name, ctx.attempt, pid, time.time()),
        )
        if name == "s2" and value.get("flaky") and ctx.attempt == 1:
            raise ConnectionError("carrier API reset")  # retried after a parked backoff
        if name == "s3" and value.get("hang"):
            # Only the first execution hangs (the SIGSTOP test pauses the worker in it).
            if _write("INSERT INTO app_markers VALUES (%s) ON CONFLICT DO NOTHING", (f"hang:{ctx.run_id}",)):
                time.sleep(float(value["hang"]))
        time.sleep(float(value.get("pause", 0.0)))
        _write(
            "INSERT INTO app_ledger (run_id, step, pid) VALUES (%s, %s, %s) ON CONFLICT DO NOTHING",
            (ctx.run_id, name, pid),
        )
        return {**value, "n": value["n"] + 1, "by": pid}

    step.__name__ = name
    return step


five = Workflow(
    "five",
    [
        # A 6 s backoff outlasts the worker's 5 s park threshold: the retry is a durable timer.
        Step(f"s{i}", make_step(f"s{i}"), retry=Retry(max_attempts=3, initial_delay=6.0, jitter=0.0))
        for i in range(1, 6)
    ],
    version="1",
)


async def call_endpoint(value: dict[str, Any], ctx: StepContext) -> dict[str, Any]:
    """One call to a model endpoint limited to 50 calls per 10 s across every worker."""
    limiter = SharedRateLimiter("endpoint", limit=50, per_seconds=10)
    await limiter.acquire()
    assert limiter.last_grant_at is not None
    await asyncio.to_thread(
        _write,
        "INSERT INTO app_calls (run_id, granted_at, pid) VALUES (%s, %s, %s) ON CONFLICT DO NOTHING",
        (ctx.run_id, limiter.last_grant_at, os.getpid()),
    )
    return {**value, "called": True}


limited = Workflow("limited", [Step("call", call_endpoint)], version="1")


async def _migrate(url: str) -> None:
    store = PostgresStore(url)
    await store.open()
    try:
        print(await store.schema_version(), flush=True)
    finally:
        await store.close()


if __name__ == "__main__":
    if sys.argv[1] == "migrate":
        asyncio.run(_migrate(sys.argv[2]))
