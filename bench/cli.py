"""``python -m bench [--quick] [--only NAME ...] [--no-peers] [--results DIR]``.

Each group of measurements runs in a fresh Python process of its own, so that one
library's imports, threads and garbage (DBOS's background threads, LangChain's modules)
never weigh on another's numbers. The parent collects the rows, evaluates the targets,
prints the table and writes ``results.json`` and ``results.md``.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable

from bench.harness import Plan, Row, skipped

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(ROOT, "bench", "results")
_MARK = "@@bench-rows@@ "


def _group(name: str) -> Callable[[Plan], list[Row]]:
    if name == "overhead":
        from bench.engine import run as overhead

        return overhead
    if name == "sqlite":
        from bench.durable import run_sequential

        return run_sequential
    if name == "throughput":
        from bench.durable import run_concurrent

        return run_concurrent
    if name == "map":
        from bench.fanout import run as fanout

        return fanout
    if name == "reviews":
        from bench.reviews import run as reviews

        return reviews
    if name == "postgres":
        from bench.postgres import run as postgres

        return postgres
    if name == "models":
        from bench.models import run as models

        return models
    from bench import peers

    found: Callable[[Plan], list[Row]] = getattr(peers, name)
    return found


OURS = ("overhead", "sqlite", "throughput", "map", "postgres", "models")
PEERS = ("langgraph", "burr", "dbos")
OPT_IN = ("reviews",)  # slow groups run only when named with --only
GROUPS = OURS + PEERS + OPT_IN
DESCRIPTIONS = {
    "overhead": "engine overhead per step, in memory (async, def with and without timeout, payloads, typed)",
    "sqlite": "durable cost per step on SQLite vs bare insert+commit (FULL, NORMAL, durable function, 100-item Map)",
    "throughput": "100 concurrent runs on SQLite: aggregate cost per step vs the per-commit floor",
    "map": "1,000-way Map vs asyncio.gather",
    "postgres": "PostgreSQL: cost per step vs bare INSERT, 100 concurrent runs, 1/2/4 workers, claim latency",
    "models": "model layer: router + cache + breaker + limiter overhead per call; MiniLM classifier throughput",
    "reviews": "review gates: decision -> resumed latency, worker memory with 10 vs 10,000 parked runs (opt-in)",
    "langgraph": "LangGraph StateGraph: no checkpointer, InMemorySaver, SqliteSaver",
    "burr": "Burr Application: in memory and SQLitePersister",
    "dbos": "DBOS workflow of steps, SQLite system database",
}


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="orchestrate's benchmark suite: every figure is a ratio to a floor measured in the same run.",
        epilog="groups: " + "; ".join(f"{k}: {v}" for k, v in DESCRIPTIONS.items()),
    )
    parser.add_argument("--quick", action="store_true", help="a fast smoke run (few repetitions; numbers are noisy)")
    parser.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="NAME",
        help="run only these groups (repeatable or comma-separated; 'peers' = all peers)",
    )
    parser.add_argument("--no-peers", action="store_true", help="measure orchestrate only")
    parser.add_argument(
        "--results", default=RESULTS, metavar="DIR", help="where to write results (default: %(default)s)"
    )
    parser.add_argument("--child", choices=GROUPS, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def _selected(args: argparse.Namespace) -> list[str]:
    names: list[str] = []
    for item in args.only:
        for name in filter(None, (part.strip() for part in item.split(","))):
            expanded = PEERS if name == "peers" else (OURS if name == "ours" else (name,))
            for n in expanded:
                if n not in GROUPS:
                    raise SystemExit(f"unknown group {n!r}; choose from {', '.join(GROUPS)}, peers, ours")
                if n not in names:
                    names.append(n)
    names = names or list(OURS + PEERS)
    if args.no_peers:
        names = [n for n in names if n not in PEERS]
    return names


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [ROOT, env.get("PYTHONPATH")]))
    # No tracing or telemetry calls out of the process while it is being timed.
    env.update(LANGSMITH_TRACING="false", LANGCHAIN_TRACING_V2="false", DBOS_TELEMETRY="false")
    return env


def _run_child(name: str, quick: bool) -> list[Row]:
    command = [sys.executable, "-m", "bench", "--child", name] + (["--quick"] if quick else [])
    done = subprocess.run(command, cwd=ROOT, env=_child_env(), capture_output=True, text=True, check=False)
    for line in reversed(done.stdout.splitlines()):
        if line.startswith(_MARK):
            return [Row(**item) for item in json.loads(line[len(_MARK) :])]
    tail = (done.stderr or done.stdout).strip().splitlines()[-15:]
    print(f"  group {name!r} failed (exit {done.returncode}):", *tail, sep="\n    ", file=sys.stderr)
    reason = f"failed: {tail[-1] if tail else f'exit {done.returncode}'}"
    return [skipped(f"{name}.error", name, name, DESCRIPTIONS[name], reason)]


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    plan = Plan.smoke() if args.quick else Plan.full()
    if args.child:
        found = _group(args.child)(plan)
        print(_MARK + json.dumps([row.to_dict() for row in found]), flush=True)
        return 0

    from bench import report
    from bench.machine import describe

    names = _selected(args)
    started = time.perf_counter()
    started_at = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    machine = describe()
    rows: list[Row] = []
    print(f"orchestrate benchmarks ({'quick' if args.quick else 'full'}): {', '.join(names)}", flush=True)
    for name in names:
        begun = time.perf_counter()
        print(f"  {name}: {DESCRIPTIONS[name]} ...", end="", flush=True)
        rows += _run_child(name, args.quick)
        print(f" {time.perf_counter() - begun:.1f} s", flush=True)
    comparisons, targets = report.evaluate(rows)
    meta = {
        "quick": args.quick,
        "groups": names,
        "started_at": started_at,
        "finished_at": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "duration_s": round(time.perf_counter() - started, 1),
        "plan": dataclasses.asdict(plan),
        "machine": machine,
    }
    print()
    print(report.text_table(rows, comparisons, targets))
    json_path, md_path = report.write(args.results, rows, comparisons, targets, meta)
    print(f"\nwrote {os.path.relpath(json_path)} and {os.path.relpath(md_path)}")
    return 0
