"""The HTTP server under load: listings and run pages at 10⁶ runs, decision to event, read throughput.

    python -m bench.server [--quick] [--runs N] [--no-postgres]

* **pages**: ``GET /api/v1/runs`` (the newest 50; by status; by workflow; a text search),
  a run's page ``GET /api/v1/runs/{id}`` (its steps, history, usage and graph) and
  ``GET /api/v1/usage`` (tokens and cost of the newest 1,000 runs, summed in SQL), p50
  and p99 over sequential requests, against ``orchestrate serve``'s app on uvicorn with
  a store of 10⁶ one-step runs, on SQLite and on PostgreSQL. Rows are inserted with SQL
  (as ``bench.retention`` does): the engine's own would take hours.
* **decision → event**: a run parked at its gate, a client listening to its event
  stream (what the dashboard's ``EventSource`` reads), then ``POST .../approve``: the
  time until the stream delivers ``run_succeeded`` (the embedded worker resumed the run
  and finished it), p50 and p95 on SQLite. ``wake``: the server as shipped (a decision
  drives its run at once, streams wake on this process's changes); ``poll``: the same
  with both turned off, so the worker and the streams find the change by polling.
* **throughput**: read requests per second (listings and run pages, half each) from a
  load generator in another process (httpx, 16 connections) against one server process,
  with the 10⁶-run SQLite store; the machine's cores are shared by both.

Authentication is on: every request carries a bearer token, checked against the store.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx

from orchestrate import Client, Step, Workflow
from orchestrate.review import HumanReviewGate
from orchestrate.store import _sql

PG = os.environ.get("ORCHESTRATE_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/orchestrate_test")


def draft(text: Any) -> dict[str, Any]:
    return {"text": f"draft for {text}"}


def send(reply: dict[str, Any]) -> dict[str, Any]:
    return {"sent": reply["text"]}


REPLY = Workflow("reply", [Step("draft", draft, gate=HumanReviewGate(roles=["editor"])), Step("send", send)])


# filling a store ------------------------------------------------------------------------
BASE = 1.7e9
"""When the first filled run was created (one run a second after it)."""


def _rows(count: int) -> Iterator[tuple[tuple[Any, ...], tuple[Any, ...], list[tuple[Any, ...]]]]:
    """One-step runs over 100 workflows, 1 % dead, with a step (a model call) and two events each."""
    base = BASE
    for i in range(count):
        dead = i % 100 == 7
        run_id = f"{i:032x}"
        at = base + i
        error = '{"message": "upstream timed out", "class": "TimeoutError"}' if dead else None
        run = (
            run_id, f"wf{i % 100}", "1", "dead" if dead else "succeeded", '{"order": 4829}', '"shipped"', error,
            at, at + 1, None, None, None, None, 1, None, "default", "{}", None, 0, None,
        )  # fmt: skip
        meta = json.dumps({"model": {"model": f"m{i % 3}", "tokens_in": 120, "tokens_out": 40, "cost": 0.0004}})
        step = (run_id, "lookup", "lookup", "succeeded", '"shipped"', None, 1, at, at + 1, "h" * 16, None, meta)
        events = [
            (run_id, "run_created", at, None, '{"version": "1"}'),
            (run_id, "run_succeeded" if not dead else "run_dead", at + 1, None, "{}"),
        ]
        yield run, step, events


def fill_sqlite(path: str, count: int) -> None:
    """``count`` runs written with SQL into a migrated SQLite file."""
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA synchronous = OFF")
    runs, steps, events = [], [], []
    for run, step, evs in _rows(count):
        runs.append(run)
        steps.append(step)
        events.extend(evs)
        if len(runs) >= 50_000:
            _flush_sqlite(conn, runs, steps, events)
    _flush_sqlite(conn, runs, steps, events)
    conn.execute("ANALYZE")
    conn.close()


def _flush_sqlite(conn: sqlite3.Connection, runs: list[Any], steps: list[Any], events: list[Any]) -> None:
    marks = ", ".join("?" * _sql.RUN_FIELDS)
    conn.executemany(f"INSERT INTO orchestrate_runs ({_sql.RUN_COLUMNS}) VALUES ({marks})", runs)
    conn.executemany(_sql.INSERT_STEP, steps)
    conn.executemany(_sql.INSERT_EVENT, events)
    conn.commit()
    runs.clear()
    steps.clear()
    events.clear()


def fill_postgres(schema: str, count: int) -> None:
    """``count`` runs written with ``COPY`` into a migrated PostgreSQL schema."""
    import psycopg
    from psycopg import sql

    with psycopg.connect(PG, autocommit=True) as conn:
        conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(schema)))
        with conn.transaction(), conn.cursor() as cur:  # one COPY at a time on a connection
            with cur.copy(f"COPY orchestrate_runs ({_sql.RUN_COLUMNS}) FROM STDIN") as copy:
                for run, _, _ in _rows(count):
                    copy.write_row(run)
            with cur.copy(f"COPY orchestrate_steps ({_sql.STEP_COLUMNS}) FROM STDIN") as copy:
                for _, step, _ in _rows(count):
                    copy.write_row(step)
            with cur.copy("COPY orchestrate_events (run_id, kind, at, step_key, data) FROM STDIN") as copy:
                for _, _, events in _rows(count):
                    for event in events:
                        copy.write_row(event)
        conn.execute("ANALYZE")


# the server -----------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _serve_main(url: str, port: int, mode: str, worker: bool) -> None:
    """The server process: ``create_app`` as ``orchestrate serve`` builds it, on uvicorn."""
    import uvicorn

    from orchestrate.server import ServerSettings, create_app
    from orchestrate.server._changes import Changes

    client = Client(url, workflows=[REPLY] if worker else [])
    app = create_app(client, settings=ServerSettings(), worker=worker)
    if mode == "poll":

        class Deaf(Changes):
            def notify(self) -> None:
                return None

        state = app.state.orchestrate
        state.drive = None
        state.changes = Deaf()
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


class Server:
    """A server process on a free port, for the length of a ``with`` block."""

    def __init__(self, url: str, *, mode: str = "wake", worker: bool = False) -> None:
        self.port = _free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        args = ["--serve", url, "--port", str(self.port), "--mode", mode] + (["--worker"] if worker else [])
        self.proc = subprocess.Popen([sys.executable, "-m", "bench.server", *args])

    def __enter__(self) -> Server:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("the server process exited")
            try:
                if httpx.get(f"{self.base}/healthz", timeout=1).status_code == 200:
                    return self
            except httpx.TransportError:
                time.sleep(0.1)
        raise RuntimeError("the server did not answer")

    def __exit__(self, *_exc: Any) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=30)


async def _tokens(url: str, **roles: list[str]) -> dict[str, str]:
    from orchestrate.server import create_token

    async with Client(url) as client:
        return {name: (await create_token(client.store, name=name, roles=r))[0] for name, r in roles.items()}


def _pcts(samples: list[float]) -> tuple[float, float, float]:
    cuts = statistics.quantiles(samples, n=100, method="inclusive")
    return statistics.median(samples), cuts[94], cuts[98]


# measurements ---------------------------------------------------------------------------
def pages(url: str, count: int, repeat: int) -> list[tuple[str, float, float]]:
    """p50 and p99 (ms) of each listing and of run pages, sequential requests."""
    token = asyncio.run(_tokens(url, reader=["viewer"]))["reader"]
    headers = {"Authorization": f"Bearer {token}"}
    rng = random.Random(16)
    paths = {
        "GET /runs (newest 50)": lambda: "/api/v1/runs?limit=50",
        "GET /runs?status=dead": lambda: "/api/v1/runs?status=dead&limit=50",
        "GET /runs?workflow=wf42": lambda: "/api/v1/runs?workflow=wf42&limit=50",
        "GET /runs?q=timed (text)": lambda: "/api/v1/runs?q=timed&limit=50",
        "GET /runs/{id} (run page)": lambda: f"/api/v1/runs/{rng.randrange(count):032x}",
        "GET /usage (newest 1,000 runs)": lambda: "/api/v1/usage?limit=1000",
    }
    out = []
    with Server(url) as server, httpx.Client(base_url=server.base, headers=headers, timeout=60) as http:
        for name, path in paths.items():
            for _ in range(5):
                http.get(path()).raise_for_status()
            times = []
            for _ in range(repeat):
                started = time.perf_counter()
                http.get(path()).raise_for_status()
                times.append((time.perf_counter() - started) * 1000)
            p50, _, p99 = _pcts(times)
            out.append((name, p50, p99))
    return out


async def _decide_once(http: httpx.AsyncClient, ops: dict[str, str], editor: dict[str, str]) -> float:
    started = await http.post("/api/v1/runs", json={"workflow": "reply", "input": "hi"}, headers=ops)
    run_id = started.json()["run_id"]
    review_id = None
    while review_id is None:
        items = (await http.get("/api/v1/reviews", params={"run_id": run_id}, headers=ops)).json()["items"]
        review_id = items[0]["review_id"] if items else None
        if review_id is None:
            await asyncio.sleep(0.01)
    listening = asyncio.Event()
    done: asyncio.Future[float] = asyncio.get_running_loop().create_future()

    async def listen() -> None:
        async with http.stream("GET", f"/api/v1/events/runs/{run_id}", headers=ops) as stream:
            listening.set()
            async for line in stream.aiter_lines():
                if line.strip() == "event: run_succeeded":
                    done.set_result(time.perf_counter())
                    return

    task = asyncio.create_task(listen())
    await listening.wait()
    await asyncio.sleep(0.05)  # the stream has sent the history so far
    decided = time.perf_counter()
    (await http.post(f"/api/v1/reviews/{review_id}/approve", headers=editor)).raise_for_status()
    seen = await asyncio.wait_for(done, 30)
    await task
    return (seen - decided) * 1000


def decisions(url: str, mode: str, repeat: int) -> tuple[float, float, float]:
    """Decision → ``run_succeeded`` on the run's stream: p50, p95, p99 (ms)."""
    tokens = asyncio.run(_tokens(url, ops=["operator"], eve=["editor"]))
    ops = {"Authorization": f"Bearer {tokens['ops']}"}
    editor = {"Authorization": f"Bearer {tokens['eve']}"}

    async def measure(base: str) -> list[float]:
        async with httpx.AsyncClient(base_url=base, timeout=60) as http:
            await _decide_once(http, ops, editor)  # warm
            return [await _decide_once(http, ops, editor) for _ in range(repeat)]

    with Server(url, mode=mode, worker=True) as server:
        return _pcts(asyncio.run(measure(server.base)))


def _load_main(base: str, token: str, seconds: float, connections: int, count: int) -> None:
    """The load generator process: read requests for ``seconds``, then a JSON line of counts."""

    async def go() -> dict[str, Any]:
        rng = random.Random(os.getpid())
        done = errors = 0
        ends = time.perf_counter() + seconds
        limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
        headers = {"Authorization": f"Bearer {token}"}
        async with httpx.AsyncClient(base_url=base, headers=headers, limits=limits, timeout=60) as http:

            async def one() -> None:
                nonlocal done, errors
                while time.perf_counter() < ends:
                    if rng.random() < 0.5:
                        path = "/api/v1/runs?limit=20"
                    else:
                        path = f"/api/v1/runs/{rng.randrange(count):032x}"
                    response = await http.get(path)
                    done += 1
                    errors += response.status_code != 200

            started = time.perf_counter()
            await asyncio.gather(*(one() for _ in range(connections)))
            return {"requests": done, "errors": errors, "seconds": time.perf_counter() - started}

    print(json.dumps(asyncio.run(go())), flush=True)


def throughput(url: str, count: int, seconds: float) -> dict[str, Any]:
    """Read requests per second, load from another process."""
    token = asyncio.run(_tokens(url, load=["viewer"]))["load"]
    with Server(url) as server:
        args = ["--load", server.base, "--token", token, "--seconds", str(seconds), "--runs", str(count)]
        out = subprocess.run([sys.executable, "-m", "bench.server", *args], capture_output=True, text=True, check=True)
    found: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    found["rps"] = found["requests"] / found["seconds"]
    return found


# the report -----------------------------------------------------------------------------
async def _migrate(url: str) -> None:
    async with Client(url):
        pass


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.server", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="10⁴ runs and fewer repetitions")
    parser.add_argument("--runs", type=int, default=None, help="runs in the store (default 10⁶)")
    parser.add_argument("--no-postgres", action="store_true", help="SQLite only")
    parser.add_argument("--serve", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--mode", default="wake", help=argparse.SUPPRESS)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--load", help=argparse.SUPPRESS)
    parser.add_argument("--token", help=argparse.SUPPRESS)
    parser.add_argument("--seconds", type=float, default=10.0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        _serve_main(args.serve, args.port, args.mode, args.worker)
        return 0
    count = args.runs or (10_000 if args.quick else 1_000_000)
    if args.load:
        _load_main(args.load, args.token, args.seconds, 16, count)
        return 0
    repeat = 50 if args.quick else 300
    print(f"# orchestrate server, {count:,} runs, {os.cpu_count()} cores")
    with tempfile.TemporaryDirectory() as tmp:
        sqlite_url = f"sqlite:///{os.path.join(tmp, 'bench.db')}"
        asyncio.run(_migrate(sqlite_url))
        started = time.perf_counter()
        fill_sqlite(os.path.join(tmp, "bench.db"), count)
        print(f"filled SQLite in {time.perf_counter() - started:.0f} s")
        stores = [("SQLite", sqlite_url)]
        schema = f"bench_{uuid.uuid4().hex[:12]}"
        if not args.no_postgres:
            pg_url = f"{PG}?schema={schema}"
            asyncio.run(_migrate(pg_url))
            started = time.perf_counter()
            fill_postgres(schema, count)
            print(f"filled PostgreSQL in {time.perf_counter() - started:.0f} s")
            stores.append(("PostgreSQL", pg_url))
        try:
            print("\n| store | request | p50 ms | p99 ms |\n|---|---|---|---|")
            for label, url in stores:
                for name, p50, p99 in pages(url, count, repeat):
                    print(f"| {label} | {name} | {p50:.1f} | {p99:.1f} |", flush=True)
            load = throughput(sqlite_url, count, 5.0 if args.quick else 20.0)
            print(
                f"\nread throughput (SQLite, one server process, load from another): {load['rps']:.0f} requests/s,"
                f" {load['errors']} errors over {load['requests']} requests"
            )
            print("\n| decision → run_succeeded on the stream (SQLite) | p50 ms | p95 ms | p99 ms |\n|---|---|---|---|")
            with tempfile.TemporaryDirectory() as fresh:
                for mode in ("wake", "poll"):
                    url = f"sqlite:///{os.path.join(fresh, mode + '.db')}"
                    p50, p95, p99 = decisions(url, mode, 30 if args.quick else 200)
                    print(f"| {mode} | {p50:.1f} | {p95:.1f} | {p99:.1f} |", flush=True)
        finally:
            if not args.no_postgres:
                import psycopg
                from psycopg import sql

                with psycopg.connect(PG, autocommit=True) as conn:
                    conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
