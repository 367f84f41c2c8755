"""Broker triggers against the real NATS JetStream, Redis and RabbitMQ servers, on SQLite
and PostgreSQL: a redelivered message and a message published twice are one run, poison
messages are dead runs, every message is acknowledged, in-flight messages stay bounded."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrate import Client, RunStatus
from orchestrate.triggers import BrokerTrigger, Delivery, EventOutcome, event_run_id, start_for_event
from tests.acceptance.trigger_app import build, orders, publish, remove
from tests.postgres import in_schema

BROKERS = ["nats", "redis", "rabbitmq"]
VALID = 10


@pytest.fixture(params=["sqlite", "postgres"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/runs.db"
    else:
        yield from in_schema()


def _messages(name: str) -> list[tuple[str | None, bytes]]:
    valid = [(f"{name}-{i}", json.dumps({"order_id": f"o{i}", "amount": i}).encode()) for i in range(VALID)]
    return [
        *valid[:5],
        valid[0],  # published twice by a producer that retried
        (f"{name}-bad-json", b"{not json"),
        (f"{name}-bad-input", json.dumps({"order_id": "p", "amount": "lots"}).encode()),
        *valid[5:],
    ]


class Watched:
    """Counts what is in flight, and refuses the first acknowledgement (a redelivery follows)."""

    def __init__(self, trigger: BrokerTrigger) -> None:
        self.trigger = trigger
        self.in_flight = 0
        self.most = 0
        self.released: list[str] = []
        receive, ack, release = trigger.receive, trigger.ack, trigger.release

        async def counted_receive(count: int) -> list[Delivery]:
            batch = await receive(count)
            self.in_flight += len(batch)
            self.most = max(self.most, self.in_flight)
            return batch

        async def first_ack_lost(delivery: Delivery) -> None:
            self.in_flight -= 1
            if not self.released:
                self.released.append(delivery.key)
                await release(delivery)  # as if the worker died before acknowledging
                return
            await ack(delivery)

        async def counted_release(delivery: Delivery) -> None:
            self.in_flight -= 1
            await release(delivery)

        trigger.receive = counted_receive  # type: ignore[method-assign]
        trigger.ack = first_ack_lost  # type: ignore[method-assign]
        trigger.release = counted_release  # type: ignore[method-assign]


async def _pending(broker: str, name: str) -> int:
    """Messages the broker still holds for the trigger (unacknowledged or not yet delivered)."""
    if broker == "nats":
        import nats

        nc = await nats.connect("nats://127.0.0.1:4222")
        try:
            info = await nc.jetstream().consumer_info(name, name)
            return int(info.num_ack_pending + info.num_pending)
        finally:
            await nc.close()
    if broker == "redis":
        import redis.asyncio

        client = redis.asyncio.Redis.from_url("redis://127.0.0.1:6379/0")
        try:
            summary = await client.xpending(name, name)
            groups = await client.xinfo_groups(name)
            return int(summary["pending"]) + int(groups[0].get("lag") or 0)
        finally:
            await client.aclose()
    import aio_pika

    connection = await aio_pika.connect("amqp://guest:guest@127.0.0.1:5672/")
    try:
        channel = await connection.channel()
        queue = await channel.declare_queue(name, durable=True, passive=True)
        return int(queue.declaration_result.message_count)
    finally:
        await connection.close()


@pytest.mark.parametrize("broker", BROKERS)
async def test_each_message_is_one_run_and_poison_goes_to_the_dead_letter_queue(broker: str, url: str) -> None:
    name = f"t{uuid.uuid4().hex[:12]}"
    await publish(broker, name, _messages(name))
    options = (
        {"ack_wait_seconds": 1.0} if broker == "nats" else {"claim_idle_seconds": 0.5} if broker == "redis" else {}
    )
    trigger = build(broker, name, max_in_flight=3, poll_seconds=0.1, retry_seconds=0.2, **options)
    watched = Watched(trigger)
    stop = asyncio.Event()
    try:
        async with Client(url, workflows=[orders]) as client:
            serving = asyncio.create_task(trigger.serve(client, stop=stop))
            # Until every message has its run and the refused acknowledgement came back.
            while len(await client.list(limit=100)) < VALID + 2 or trigger.stats.duplicates < 1:
                assert not serving.done(), serving
                await asyncio.sleep(0.05)
            while await _pending(broker, name):
                await asyncio.sleep(0.05)
            stop.set()
            await serving
            runs = await client.list(limit=100)
            dead = await client.dead_letters()
    finally:
        await remove(broker, name)

    assert len(runs) == VALID + 2  # one run per event: no duplicate, none lost
    valid = {r.run_id: r for r in runs if r.status is RunStatus.PENDING}
    assert set(valid) == {event_run_id(name, f"{name}-{i}") for i in range(VALID)}
    assert sorted(r.input["order_id"] for r in valid.values()) == sorted(f"o{i}" for i in range(VALID))
    assert {r.run_id for r in dead} == {event_run_id(name, f"{name}-bad-{k}") for k in ("json", "input")}
    assert all(r.error["reason"] == "poison" and r.error["name"] == "PoisonMessageError" for r in dead)
    by_key = {r.options["trigger"]["key"]: r for r in dead}
    assert by_key[f"{name}-bad-json"].input["raw"] == "{not json"
    assert "cannot be decoded" in by_key[f"{name}-bad-json"].error["message"]
    assert by_key[f"{name}-bad-input"].input == {"order_id": "p", "amount": "lots"}  # kept for a replay
    assert "amount" in by_key[f"{name}-bad-input"].error["message"]
    stats = trigger.stats
    assert (stats.created, stats.poison, stats.failed) == (VALID, 2, 0)
    # The released delivery came back; a double publish is a second message (not on
    # NATS, whose server drops a repeated Nats-Msg-Id itself).
    assert stats.duplicates == (1 if broker == "nats" else 2)
    assert watched.most <= 3 and watched.in_flight == 0


async def test_a_run_created_by_another_worker_meanwhile_counts_as_a_duplicate(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/runs.db"
    async with Client(url, workflows=[orders]) as a, Client(url, workflows=[orders]) as b:
        body = json.dumps({"order_id": "x", "amount": 1}).encode()
        results = await asyncio.gather(
            *(start_for_event(client, trigger="race", workflow=orders, key="k1", body=body) for client in (a, b, a, b))
        )
        assert sorted(r.outcome for r in results).count(EventOutcome.CREATED) == 1
        assert {r.run_id for r in results} == {event_run_id("race", "k1")}
        assert len(await a.list()) == 1
