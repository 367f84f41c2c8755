"""An engine embedded in an application's event loop: what its other tasks and its memory see.

    python -m bench.embedded [--quick]

* **loop**: a 10 ms ticker task shares the loop with runs of the 10-step chain executed
  one after another on SQLite (``synchronous=FULL``, whose writes run on the caller's
  thread, so the steps never suspend). Reported: how late the ticker wakes (median, p99,
  max) beside the time of one run; the floor is the same ticker on an idle loop.
* **memory**: bytes still allocated (``tracemalloc``) per finished run over sequential
  runs on SQLite, and how many of those runs' contexts are still alive after them.
* **turns**: what giving the loop a turn between runs costs per step, on the in-memory
  chain: the engine as shipped against the same engine that never turns (alternated).
* **threads**: sync steps in threads: the engine's pool, which replaces stuck threads,
  against a plain :class:`concurrent.futures.ThreadPoolExecutor` behind the same engine.

Timings alternate subject and reference repetition by repetition, and report medians and
minimums: on a loaded machine the minimum is the steadier figure.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import functools
import gc
import os
import statistics
import tempfile
import time
import tracemalloc
import weakref
from collections.abc import Callable
from typing import Any

import orchestrate._engine.runner as runner
from bench.chain import ASYNC_STEPS, async_workflow, sync_workflow
from bench.harness import STEPS
from orchestrate import Engine, Step, Workflow
from orchestrate._engine.state import current_run
from orchestrate.store import InMemoryStore
from orchestrate.store.sqlite import SQLiteStore


async def _ticker_delays(seconds: float | None, work: Callable[[], Any] | None) -> tuple[list[float], float]:
    """Delays of a 10 ms ticker while ``work()`` runs (or for ``seconds`` on an idle loop)."""
    delays: list[float] = []
    stop = False

    async def ticker() -> None:
        while not stop:
            asked = time.perf_counter()
            await asyncio.sleep(0.01)
            delays.append(time.perf_counter() - asked - 0.01)

    task = asyncio.create_task(ticker())
    await asyncio.sleep(0.02)
    started = time.perf_counter()
    if work is not None:
        await work()
    else:
        await asyncio.sleep(seconds or 0)
    took = time.perf_counter() - started
    stop = True
    await task
    return delays, took


def _ms(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1e3, 3)


async def loop_latency(runs: int) -> dict[str, Any]:
    chain = async_workflow("embedded_chain")
    with tempfile.TemporaryDirectory() as tmp:
        async with Engine(SQLiteStore(f"sqlite:///{tmp}/runs.db"), workflows=[chain]) as engine:
            for _ in range(20):
                await engine.run(chain, 0)

            async def sequential() -> None:
                for _ in range(runs):
                    await engine.run(chain, 0)

            busy, took = await _ticker_delays(None, sequential)
    idle, _ = await _ticker_delays(min(took, 2.0), None)
    return {
        "runs": runs,
        "ms_per_run": round(took / runs * 1e3, 3),
        "ticks": len(busy),
        "late_ms": {"median": _ms(busy, 0.5), "p99": _ms(busy, 0.99), "max": _ms(busy, 1.0)},
        "idle_late_ms": {"median": _ms(idle, 0.5), "p99": _ms(idle, 0.99), "max": _ms(idle, 1.0)},
    }


def _traced_outside_this_file() -> int:
    """Bytes allocated, less this file's own (its weak reference to each run's context)."""
    snapshot = tracemalloc.take_snapshot().filter_traces([tracemalloc.Filter(False, __file__)])
    return sum(stat.size for stat in snapshot.statistics("filename"))


async def memory_per_run(runs: int) -> dict[str, Any]:
    contexts: list[weakref.ref[Any]] = []

    async def note(x: int) -> int:
        ctx = current_run.get()
        if ctx is not None:
            contexts.append(weakref.ref(ctx))
        return x

    steps = [Step("note", note), *(Step(f"s{i}", fn) for i, fn in enumerate(ASYNC_STEPS))]
    wf = Workflow("embedded_memory", steps, version="1")
    with tempfile.TemporaryDirectory() as tmp:
        async with Engine(SQLiteStore(f"sqlite:///{tmp}/runs.db"), workflows=[wf]) as engine:
            for _ in range(50):
                await engine.run(wf, 0)
            contexts.clear()
            gc.collect()
            tracemalloc.start()
            before = _traced_outside_this_file()
            for _ in range(runs):
                await engine.run(wf, 0)
            gc.collect()
            grown = _traced_outside_this_file() - before
            tracemalloc.stop()
            alive = sum(ref() is not None for ref in contexts)
    return {"runs": runs, "bytes_per_run": round(grown / runs, 1), "contexts_alive": alive}


async def _per_step(engine: Engine, wf: Any, runs: int) -> float:
    gc.collect()
    started = time.perf_counter()
    for _ in range(runs):
        await engine.run(wf, 0)
    return (time.perf_counter() - started) / runs / STEPS * 1e6


async def turn_cost(runs: int, repeats: int) -> dict[str, Any]:
    chain = async_workflow("embedded_turns")
    shipped = runner._TURN_SECONDS
    samples: dict[str, list[float]] = {"turns": [], "never": []}
    try:
        for _ in range(repeats):
            for mode in samples:
                runner._TURN_SECONDS = shipped if mode == "turns" else float("inf")
                async with Engine(InMemoryStore(), workflows=[chain]) as engine:
                    await _per_step(engine, chain, runs // 10)
                    samples[mode].append(await _per_step(engine, chain, runs))
    finally:
        runner._TURN_SECONDS = shipped
    return _compare(samples, "turns", "never")


def _on_executor(engine: Engine, executor: concurrent.futures.Executor) -> None:
    """Send the engine's sync calls to ``executor``, as the engine did before it had its own pool."""
    loop = asyncio.get_running_loop()

    async def call(fn: Any, args: Any, kwargs: Any, **_: Any) -> Any:
        return await loop.run_in_executor(executor, functools.partial(fn, *args, **kwargs))

    engine._threads.call = call  # type: ignore[method-assign]


async def thread_cost(runs: int, repeats: int) -> dict[str, Any]:
    chain = sync_workflow("thread")
    samples: dict[str, list[float]] = {"engine_pool": [], "executor": []}
    for _ in range(repeats):
        for mode in samples:
            with concurrent.futures.ThreadPoolExecutor(32) as executor:
                async with Engine(InMemoryStore(), workflows=[chain]) as engine:
                    if mode == "executor":
                        _on_executor(engine, executor)
                    await _per_step(engine, chain, runs // 10)
                    samples[mode].append(await _per_step(engine, chain, runs))
    return _compare(samples, "engine_pool", "executor")


def _compare(samples: dict[str, list[float]], subject: str, reference: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for mode, values in samples.items():
        out[mode] = {"median_us": round(statistics.median(values), 3), "min_us": round(min(values), 3)}
    for measure in ("median_us", "min_us"):
        change = out[subject][measure] / out[reference][measure] - 1
        out[f"change_{measure.removesuffix('_us')}_pct"] = round(change * 100, 2)
    return out


async def measure(quick: bool) -> dict[str, Any]:
    return {
        "loop": await loop_latency(100 if quick else 1000),
        "memory": await memory_per_run(200 if quick else 2000),
        "turns": await turn_cost(200 if quick else 2000, 2 if quick else 15),
        "threads": await thread_cost(40 if quick else 400, 2 if quick else 9),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.embedded", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a fast smoke run (numbers are noisy)")
    args = parser.parse_args(argv)
    results = asyncio.run(measure(args.quick))
    print(f"load average {os.getloadavg()}")
    for name, figures in results.items():
        print(f"{name}: {figures}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
