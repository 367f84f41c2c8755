"""Triggers: events turned into runs per second, per broker, with 1 and 2 worker processes.

    python -m bench.triggers [--events 2000] [--store postgresql://...] [--quick]

For each broker (NATS JetStream, Redis Streams, RabbitMQ) a backlog of ``--events`` JSON
messages is published, then 1 or 2 processes serve one trigger on it (``max_in_flight``
64) against the store until every message has its run; the time runs from when every
process is connected to when the store holds all the runs. The floor is one process
calling ``Client.start`` with the same inputs and derived run ids, concurrently 64 at a
time: the store's own cost of creating the runs, without a broker.

Needs the local servers (127.0.0.1: NATS 4222, Redis 6379, RabbitMQ 5672) and PostgreSQL.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import sys
import time
import uuid
from typing import Any

from orchestrate import Client
from orchestrate.triggers import event_run_id

BROKERS = ("nats", "redis", "rabbitmq")
DEFAULT_STORE = "postgresql://postgres@127.0.0.1:5432/orchestrate_test"
IN_FLIGHT = 64


def _messages(name: str, count: int) -> list[tuple[str | None, bytes]]:
    return [(f"{name}-{i}", json.dumps({"order_id": f"o{i}", "amount": i}).encode()) for i in range(count)]


def _serve(broker: str, name: str, url: str, ready: Any, stop: Any) -> None:
    sys.path.insert(0, os.getcwd())
    from tests.acceptance.trigger_app import build, orders

    async def main() -> None:
        trigger = build(broker, name, max_in_flight=IN_FLIGHT, poll_seconds=0.1)
        async with Client(url, workflows=[orders]) as client:
            await trigger.connect()  # connected before the clock starts
            await trigger.disconnect()
            ready.release()
            done = asyncio.Event()
            serving = asyncio.create_task(trigger.serve(client, stop=done))
            while not stop.is_set():
                await asyncio.sleep(0.05)
            done.set()
            await serving

    asyncio.run(main())


def measure(broker: str, url: str, events: int, workers: int) -> float:
    """Seconds for ``workers`` processes to turn ``events`` messages into runs."""
    from tests.acceptance.trigger_app import publish, remove

    name = f"b{uuid.uuid4().hex[:10]}"
    asyncio.run(publish(broker, name, _messages(name, events)))
    context = multiprocessing.get_context("spawn")
    ready, stop = context.Semaphore(0), context.Event()
    processes = [context.Process(target=_serve, args=(broker, name, url, ready, stop)) for _ in range(workers)]
    for process in processes:
        process.start()
    try:
        for _ in processes:
            if not ready.acquire(timeout=60):
                raise RuntimeError("a worker did not connect")
        started = time.perf_counter()

        async def wait() -> float:
            async with Client(url) as client:
                while await _runs_of(client, name, events) < events:
                    await asyncio.sleep(0.02)
            return time.perf_counter() - started

        return asyncio.run(wait())
    finally:
        stop.set()
        for process in processes:
            process.join(timeout=30)
        asyncio.run(remove(broker, name))


async def _runs_of(client: Client, name: str, events: int) -> int:
    # Counting every id is cheap next to the work measured: one primary-key look-up each
    # would be slower; check the last few first, then all.
    store = client.engine.store
    for i in (events - 1, 0, events // 2):
        if await store.get_run(event_run_id(name, f"{name}-{i}")) is None:
            return 0
    found = 0
    for i in range(events):
        found += await store.get_run(event_run_id(name, f"{name}-{i}")) is not None
    return found


def floor(url: str, events: int) -> float:
    """Seconds for one process to start ``events`` runs directly, ``IN_FLIGHT`` at a time."""
    sys.path.insert(0, os.getcwd())
    from tests.acceptance.trigger_app import orders

    name = f"f{uuid.uuid4().hex[:10]}"

    async def go() -> float:
        async with Client(url, workflows=[orders]) as client:
            gate = asyncio.Semaphore(IN_FLIGHT)

            async def one(i: int) -> None:
                async with gate:
                    body = {"order_id": f"o{i}", "amount": i}
                    await client.start(orders, body, run_id=event_run_id(name, f"{name}-{i}"))

            started = time.perf_counter()
            await asyncio.gather(*(one(i) for i in range(events)))
            return time.perf_counter() - started

    return asyncio.run(go())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=2000)
    parser.add_argument("--store", default=os.environ.get("ORCHESTRATE_BENCH_STORE", DEFAULT_STORE))
    parser.add_argument("--quick", action="store_true", help="300 events")
    args = parser.parse_args(argv)
    events = 300 if args.quick else args.events
    base = floor(args.store, events)
    print(f"store: {args.store.split('?')[0]}  events: {events}")
    print(f"floor: Client.start x{events}, {IN_FLIGHT} at a time: {events / base:,.0f} runs/s")
    print(f"{'broker':<10} {'workers':>7} {'runs/s':>10} {'/ floor':>8}")
    for broker in BROKERS:
        for workers in (1, 2):
            seconds = measure(broker, args.store, events, workers)
            print(f"{broker:<10} {workers:>7} {events / seconds:>10,.0f} {base / seconds:>8.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
