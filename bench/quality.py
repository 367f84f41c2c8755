"""Quality records and observation: query cost against the store's size, observers' cost per step.

    python -m bench.quality [--quick] [--no-postgres] [--callgrind]
    python -m bench.quality instructions bare|observed memory|sqlite RUNS

* **queries**: ``Client.step_results("fraud_check", last=100)`` and
  ``Client.step_stats("fraud_check", window=100, windows=10)`` (1,000 records read and
  summed up) in stores of 10³ to 10⁶ step records, 10 step names (``fraud_check`` is one
  record in ten), on SQLite and PostgreSQL, with the schema-8 index on ``(name,
  finished_at)`` and without it (the floor: orchestrate before it). Also an
  :class:`~orchestrate.observe.alerts.AlertEvaluator` over the same store: its first pass
  (1,000 records per watched step read to fill the windows) and a steady pass (what is
  new, none here), two monitors. Rows are inserted with SQL (``COPY`` on PostgreSQL): the
  engine's own rows would take hours at 10⁶. Times are medians of repetitions.
* **observers**: the bench's 10-step chain in memory and on durable SQLite, bare and with
  each observer alone and every one on (:class:`~orchestrate.observe.prometheus.PrometheusObserver`,
  :class:`~orchestrate.observe.otel.OpenTelemetryObserver` with the SDK and a span
  processor, a :class:`~orchestrate.observe.monitors.MonitorObserver` with a latency and a
  drift monitor). Timed in short shuffled rounds, the cases of a round back to back; the
  ratio reported is the median of the rounds' ratios, after 600 runs of warm-up (the drift
  monitor has filled its windows and scored). With ``--callgrind`` also the instructions
  per step (valgrind): two counts of ``instructions CASE STORE RUNS``, 630 and 730 runs,
  their difference over the 1,000 steps between them (two drift scorings among them);
  unlike timings, they do not move when other processes share the machine.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import io
import json
import os
import random
import re
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from bench.chain import async_workflow
from bench.harness import STEPS
from orchestrate import Client, Engine
from orchestrate.observe import configure_logging
from orchestrate.observe.alerts import AlertEvaluator
from orchestrate.observe.drift import Drift
from orchestrate.observe.monitors import Deviation, DriftMonitor, Monitor, MonitorObserver
from orchestrate.store import InMemoryStore, open_store

PG = os.environ.get("ORCHESTRATE_BENCH_POSTGRES", "postgresql://postgres@127.0.0.1:5432/orchestrate_test")
NAMES = ["identity", "income", "credit", "fraud_check", "risk", "notify", "audit", "score", "route", "archive"]
INDEX = "orchestrate_steps_name"
MONITORS = [
    Monitor("fraud_check", "latency_p95", Deviation(sigmas=2), window=50),
    DriftMonitor("fraud_check", Drift("psi", 0.25, reference=300, window=200, every=50), field="score"),
]


# --- queries against the store's size ----------------------------------------------------------


def _rows(count: int) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """``count`` step records of ``count // 10`` ten-step runs, one second apart."""
    rng = random.Random(count)
    runs, steps = [], []
    for r in range(max(count // len(NAMES), 1)):
        run_id = f"{r:032x}"
        runs.append((run_id, "loans", "1", "succeeded", float(r), float(r + 1)))
        for k, name in enumerate(NAMES):
            at = r + k / 10
            output = json.dumps({"score": round(rng.random(), 4), "confidence": round(rng.uniform(0.7, 1), 3)})
            meta = json.dumps({"latency_ms": round(rng.expovariate(1 / 40), 3)})
            steps.append((run_id, name, name, "succeeded", output, None, 1, at, at + 0.05, "h" * 16, None, meta))
    return runs, steps


STEP_INSERT_COLUMNS = (
    "run_id, step_key, name, status, output, error, attempts, started_at, finished_at, input_hash, fallback, meta"
)
RUN_INSERT_COLUMNS = "run_id, workflow, version, status, created_at, updated_at"


def _fill_sqlite(path: str, count: int) -> None:
    runs, steps = _rows(count)
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA synchronous = OFF")
    conn.executemany(f"INSERT INTO orchestrate_runs ({RUN_INSERT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)", runs)
    conn.executemany(f"INSERT INTO orchestrate_steps ({STEP_INSERT_COLUMNS}) VALUES ({', '.join('?' * 12)})", steps)
    conn.commit()
    conn.execute("ANALYZE")
    conn.close()


def _fill_postgres(url: str, schema: str, count: int) -> None:
    import psycopg

    runs, steps = _rows(count)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f'SET search_path TO "{schema}"')
        with conn.cursor() as cur:
            with cur.copy(f"COPY orchestrate_runs ({RUN_INSERT_COLUMNS}) FROM STDIN") as copy:
                for row in runs:
                    copy.write_row(row)
            with cur.copy(f"COPY orchestrate_steps ({STEP_INSERT_COLUMNS}) FROM STDIN") as copy:
                for row in steps:
                    copy.write_row(row)
        conn.execute("ANALYZE orchestrate_runs")
        conn.execute("ANALYZE orchestrate_steps")


def _drop_index(kind: str, where: str) -> None:
    if kind == "sqlite":
        conn = sqlite3.connect(where)
        conn.execute(f"DROP INDEX {INDEX}")
        conn.commit()
        conn.close()
        return
    import psycopg

    url, schema = where.split("#")
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f'DROP INDEX "{schema}".{INDEX}')


async def _median_ms(call: Callable[[], Awaitable[Any]], repeat: int) -> float:
    await call()
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        await call()
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000


async def _measure(url: str, repeat: int) -> dict[str, float]:
    async with Client(url) as client:
        out = {
            "step_results(last=100)": await _median_ms(lambda: client.step_results("fraud_check", last=100), repeat),
            "step_stats(100 x 10)": await _median_ms(
                lambda: client.step_stats("fraud_check", window=100, windows=10), max(repeat // 3, 3)
            ),
        }
        evaluators: list[AlertEvaluator] = []

        async def first_pass() -> None:
            evaluator = AlertEvaluator(client.store, MONITORS, sinks=[])
            evaluators.append(evaluator)
            await evaluator.evaluate()

        out["evaluator first pass"] = await _median_ms(first_pass, 3)
        steady = evaluators[-1]
        out["evaluator steady pass"] = await _median_ms(steady.evaluate, repeat)
    return out


async def queries(sizes: list[int], backends: list[str]) -> list[tuple[str, ...]]:
    rows: list[tuple[str, ...]] = []
    for kind in backends:
        for size in sizes:
            repeat = 30 if size <= 100_000 else 10
            with tempfile.TemporaryDirectory() as tmp:
                if kind == "sqlite":
                    path = os.path.join(tmp, "q.db")
                    url, where = f"sqlite:///{path}", path
                    store = open_store(url)
                    await store.open()
                    await store.close()
                    _fill_sqlite(path, size)
                else:
                    schema = f"bench_quality_{uuid.uuid4().hex[:8]}"
                    url, where = f"{PG}?schema={schema}", f"{PG}#{schema}"
                    store = open_store(url)
                    await store.open()
                    await store.close()
                    _fill_postgres(PG, schema, size)
                try:
                    indexed = await _measure(url, repeat)
                    _drop_index(kind, where)
                    bare = await _measure(url, repeat)
                finally:
                    if kind == "postgres":
                        import psycopg

                        with psycopg.connect(PG, autocommit=True) as conn:
                            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
            for label, ms in indexed.items():
                without = bare[label]
                rows.append((kind, f"{size:,}", label, f"{ms:.2f}", f"{without:.2f}", f"{without / ms:.1f}x"))
            print(f"  {kind} {size:,} done", file=sys.stderr)
    return rows


# --- observers' cost per step --------------------------------------------------------------------

WARMUP = 600
"""Runs before timing: the drift monitor's windows (300 + 200 values) fill and it has scored."""


def observers() -> list[Any]:
    """Every observer on: Prometheus (a registry of its own), OpenTelemetry (SDK), two monitors."""
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult
    from prometheus_client import CollectorRegistry

    from orchestrate.observe.otel import OpenTelemetryObserver
    from orchestrate.observe.prometheus import PrometheusObserver

    class Dropped(SpanExporter):
        """Exports nothing: the spans are made, ended and handed over, as with a real exporter."""

        def export(self, spans: Any) -> SpanExportResult:
            return SpanExportResult.SUCCESS

    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(Dropped()))
    monitors = MonitorObserver(
        [
            Monitor("s3", "latency_p95", Deviation(sigmas=2), window=50),
            DriftMonitor("s5", Drift("psi", 0.25, reference=300, window=200, every=50)),
        ]
    )
    return [
        PrometheusObserver(registry=CollectorRegistry()),
        OpenTelemetryObserver(tracer_provider=provider),
        monitors,
    ]


CASES = ("bare", "prometheus", "otel", "monitors", "observed")
"""The chain bare, with each observer alone, and with all three (``observed``)."""


def _observers_of(case: str) -> list[Any]:
    every = observers()
    return {"bare": [], "prometheus": every[:1], "otel": every[1:2], "monitors": every[2:], "observed": every}[case]


def _engine(case: str, store: str, tmp: str) -> Engine:
    backend = InMemoryStore() if store == "memory" else open_store(f"sqlite:///{tmp}/{case}.db?synchronous=normal")
    return Engine(backend, workflows=[async_workflow()], observers=_observers_of(case))


async def chain_costs(rounds: int, runs: int) -> list[tuple[str, ...]]:
    """Per store and case: µs per step, µs added to bare, and the ratio (median of the rounds' ratios)."""
    rows: list[tuple[str, ...]] = []
    wf = async_workflow()
    for store in ("memory", "sqlite"):
        per_round = max(runs // (10 if store == "sqlite" else 1), 20)
        with tempfile.TemporaryDirectory() as tmp:
            engines = {case: _engine(case, store, tmp) for case in CASES}
            for engine in engines.values():
                await engine.open()
                for _ in range(WARMUP):  # past the drift monitor's first scoring (numpy's import)
                    await engine.run(wf, 0)
            times: dict[str, list[float]] = {case: [] for case in CASES}
            ratios: dict[str, list[float]] = {case: [] for case in CASES}
            for _ in range(rounds):
                order = list(engines)
                random.shuffle(order)
                took: dict[str, float] = {}
                for case in order:
                    engine = engines[case]
                    started = time.perf_counter()
                    for _ in range(per_round):
                        await engine.run(wf, 0)
                    took[case] = (time.perf_counter() - started) / (per_round * STEPS) * 1e6
                    times[case].append(took[case])
                for case in CASES:
                    ratios[case].append(took[case] / took["bare"])
            for engine in engines.values():
                await engine.close()
        bare = statistics.median(times["bare"])
        for case in CASES:
            here = statistics.median(times[case])
            q1, _, q3 = statistics.quantiles(ratios[case], n=4)
            ratio = statistics.median(ratios[case])
            rows.append((store, case, f"{here:.1f}", f"{here - bare:+.1f}", f"{ratio:.3f}", f"{q1:.3f}-{q3:.3f}"))
    return rows


async def _instructions(case: str, store: str, runs: int) -> None:
    wf = async_workflow()
    with tempfile.TemporaryDirectory() as tmp:
        engine = _engine(case, store, tmp)
        async with engine:
            for _ in range(runs):
                await engine.run(wf, 0)


def _count(case: str, store: str, runs: int) -> int:
    done = subprocess.run(
        [
            *("valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", sys.executable, "-m", "bench.quality"),
            *("instructions", case, store, str(runs)),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    found = re.search(r"Collected : (\d+)", done.stderr)
    if found is None:
        raise RuntimeError(f"no instruction count in valgrind's output: {done.stderr[-500:]}")
    return int(found[1])


def callgrind() -> list[tuple[str, ...]]:
    rows: list[tuple[str, ...]] = []
    for store in ("memory", "sqlite"):
        per_step = {}
        for case in ("bare", "observed"):
            per_step[case] = (_count(case, store, WARMUP + 130) - _count(case, store, WARMUP + 30)) / (100 * STEPS)
            print(f"  callgrind {store} {case}: {per_step[case]:,.0f}", file=sys.stderr)
        bare, observed = per_step["bare"], per_step["observed"]
        rows.append((store, f"{bare:,.0f}", f"{observed:,.0f}", f"{observed - bare:+,.0f}", f"{observed / bare:.3f}"))
    return rows


def _table(headers: tuple[str, ...], rows: list[tuple[str, ...]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    out = io.StringIO()
    out.write("  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)) + "\n")
    out.write("  ".join("-" * w for w in widths) + "\n")
    for r in rows:
        out.write("  ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)) + "\n")
    return out.getvalue().rstrip("\n")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["instructions"]:
        if len(argv) != 4 or argv[1] not in ("bare", "observed") or argv[2] not in ("memory", "sqlite"):
            print("usage: python -m bench.quality instructions bare|observed memory|sqlite RUNS", file=sys.stderr)
            return 2
        gc.disable()
        asyncio.run(_instructions(argv[1], argv[2], int(argv[3])))
        return 0
    configure_logging("error")  # the monitors' alerts on the bench chain are not the report
    parser = argparse.ArgumentParser(prog="python -m bench.quality", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="stop at 10^5 records, fewer rounds")
    parser.add_argument("--no-postgres", action="store_true", help="SQLite only")
    parser.add_argument("--callgrind", action="store_true", help="also count instructions per step (valgrind)")
    parser.add_argument("--skip-queries", action="store_true", help="only the observers' cost")
    args = parser.parse_args(argv)
    if not args.skip_queries:
        sizes = [1_000, 10_000, 100_000] if args.quick else [1_000, 10_000, 100_000, 1_000_000]
        backends = ["sqlite"] if args.no_postgres else ["sqlite", "postgres"]
        print("quality queries, ms (median); 'no index': without orchestrate_steps_name")
        headers = ("store", "records", "query", "indexed", "no index", "ratio")
        print(_table(headers, asyncio.run(queries(sizes, backends))))
        print()
    print("observers on the 10-step chain: us per step (median of rounds), ratio to bare (median, IQR)")
    rows = asyncio.run(chain_costs(rounds=7 if args.quick else 21, runs=200 if args.quick else 500))
    print(_table(("store", "observers", "us/step", "added", "ratio", "IQR"), rows))
    if args.callgrind:
        print()
        print("instructions per step (callgrind, 730 - 630 runs over 1,000 steps)")
        print(_table(("store", "bare", "observed", "added", "ratio"), callgrind()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
