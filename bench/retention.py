"""Retention: listing cost against the size of the store, and what a run costs on disk.

    python -m bench.retention [--quick]

* **listing**: ``Store.list_runs`` by status (dead runs: 1 % of the store), by workflow
  (one of 100), and unfiltered, 50 newest runs, as ``orchestrate runs list`` reads them
  (``values=False``), in stores of 10³ to 10⁶ one-step runs. The floor is the same query on
  the same store without the schema-5 indexes (as orchestrate before them): it grows with
  the store, the indexed one should stay flat.
* **bytes**: the SQLite file's growth per one-step run driven by the engine, and after
  ``Client.prune`` deleted them, the growth for as many new runs (the pages are reused).

Rows are inserted with SQL (the engine's own rows would take hours at 10⁶); each has a
step record and two events, like a one-step run. Times are medians of repetitions.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from typing import Any

from orchestrate import Client, Step, Workflow
from orchestrate.store import _sql
from orchestrate.store.sqlite import SQLiteStore
from orchestrate.types import RunStatus

INDEXES = ("orchestrate_runs_status", "orchestrate_runs_workflow", "orchestrate_runs_ended")


def _fill(path: str, count: int) -> None:
    """``count`` one-step runs over 100 workflows, succeeded but for the oldest 1 %: dead,
    of a workflow retired since. Listing them without an index reads the whole table."""
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA synchronous = OFF")
    runs, steps, events = [], [], []
    for i in range(count):
        old = i < count // 100
        status = "dead" if old else "succeeded"
        run_id = f"{i:032x}"
        workflow = "retired" if old else f"wf{i % 100}"
        runs.append(
            (run_id, workflow, "1", status, '{"order": 4829}', '"shipped"', None, i, i + 1, None, None, None, None,
             1, None, "default", "{}", None, 0, None)
        )  # fmt: skip
        steps.append((run_id, "lookup", "lookup", "succeeded", '"shipped"', None, 1, i, i + 1, "h" * 16, None, "{}"))
        events.append((run_id, "run_created", i, None, '{"version": "1"}'))
        events.append((run_id, "run_succeeded", i + 1, None, "{}"))
    marks = ", ".join("?" * _sql.RUN_FIELDS)
    conn.executemany(f"INSERT INTO orchestrate_runs ({_sql.RUN_COLUMNS}) VALUES ({marks})", runs)
    conn.executemany(_sql.INSERT_STEP, steps)
    conn.executemany(_sql.INSERT_EVENT, events)
    conn.commit()
    conn.execute("ANALYZE")
    conn.close()


async def _median_ms(call: Callable[[], Awaitable[Any]], repeat: int = 30) -> float:
    await call()
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        await call()
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000


async def listing(sizes: list[int]) -> list[tuple[str, ...]]:
    rows = []
    for size in sizes:
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "o.db")
            store = SQLiteStore(f"sqlite:///{path}")
            await store.open()
            await store.close()
            _fill(path, size)
            queries: dict[str, Callable[[SQLiteStore], Awaitable[Any]]] = {
                "status=dead": lambda s: s.list_runs(status=[RunStatus.DEAD], limit=50, values=False),
                "workflow=retired": lambda s: s.list_runs(workflow="retired", limit=50, values=False),
                "all": lambda s: s.list_runs(limit=50, values=False),
            }
            measured: dict[str, list[float]] = {}
            for indexed in (True, False):
                if not indexed:
                    conn = sqlite3.connect(path)
                    for name in INDEXES:
                        conn.execute(f"DROP INDEX {name}")
                    conn.commit()
                    conn.close()
                store = SQLiteStore(f"sqlite:///{path}")  # (without them the file still says schema 5)
                await store.open()
                for label, query in queries.items():
                    measured.setdefault(label, []).append(await _median_ms(lambda q=query, s=store: q(s)))
                await store.close()
            for label, (with_index, without) in measured.items():
                rows.append((f"{size:,}", label, f"{with_index:.3f}", f"{without:.3f}", f"{without / with_index:.0f}x"))
    return rows


async def disk(count: int) -> list[tuple[str, ...]]:
    flow = Workflow("lookup", [Step("lookup", lambda order: {"order": order, "status": "shipped"})], version="1")
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "o.db")
        url = f"sqlite:///{path}"

        def size() -> tuple[int, int]:
            """Bytes of the file, and of its pages in use."""
            conn = sqlite3.connect(path)
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            pages = conn.execute("PRAGMA page_count").fetchone()[0]
            page = conn.execute("PRAGMA page_size").fetchone()[0]
            free = conn.execute("PRAGMA freelist_count").fetchone()[0]
            conn.close()
            return pages * page, (pages - free) * page

        async with Client(url, workflows=[flow]) as client:
            await client.run(flow, 0)
            file0, used0 = size()
            for i in range(count):
                await client.run(flow, 4829 + i)
            file1, used1 = size()
            pruned = await client.prune(older_than=1e-6)
            file2, used2 = size()
            for i in range(count):
                await client.run(flow, 4829 + i)
            file3, _ = size()
    return [
        ("bytes in use per one-step run", f"{(used1 - used0) / count:,.0f}"),
        ("file growth per one-step run", f"{(file1 - file0) / count:,.0f}"),
        ("runs pruned", f"{pruned:,}"),
        ("bytes in use after pruning, per pruned run", f"{(used2 - used0) / pruned:,.0f}"),
        (f"file growth for {count:,} new runs after pruning, per run", f"{(file3 - file2) / count:,.0f}"),
    ]


def _table(headers: tuple[str, ...], rows: list[tuple[str, ...]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.retention", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="stop at 10^5 runs")
    args = parser.parse_args(argv)
    sizes = [1_000, 10_000, 100_000] if args.quick else [1_000, 10_000, 100_000, 1_000_000]
    print("list_runs(limit=50, values=False) on SQLite, ms (median)")
    print(_table(("runs", "filter", "indexed", "no index", "ratio"), asyncio.run(listing(sizes))))
    print()
    print("disk, SQLite")
    print(_table(("what", "bytes"), asyncio.run(disk(500 if args.quick else 2_000))))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
