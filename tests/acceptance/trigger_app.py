"""An application with one broker trigger, served by `orchestrate worker --triggers`.

Configured by the environment (each test uses its own stream, queue and names):

* ``TRIGGER_BROKER``: ``nats``, ``redis`` or ``rabbitmq``; ``TRIGGER_NAME``: the trigger's
  name and its stream / queue / group;
* ``TRIGGER_HANG``: a file path; when set and the file is missing, the worker creates it
  after storing the run of its first message and then hangs before acknowledging it
  (a test SIGKILLs it there).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from pydantic import BaseModel

from orchestrate import Workflow
from orchestrate.triggers import BrokerTrigger, Delivery, NatsTrigger, RabbitMQTrigger, RedisTrigger


class Order(BaseModel):
    order_id: str
    amount: int


def take(order: Order) -> dict:
    return {"order": order.order_id, "amount": order.amount}


orders = Workflow("orders", [take])


def _hang_first(marker: Path, key: str) -> None:
    """The first time: leave the marker and block the process (its event loop too) for good."""
    if not marker.exists():
        marker.write_text(key)
        time.sleep(3600)


def _hang_once(trigger: BrokerTrigger) -> BrokerTrigger:
    marker = os.environ.get("TRIGGER_HANG")
    if not marker:
        return trigger
    ack = trigger.ack

    async def hanging_ack(delivery: Delivery) -> None:
        _hang_first(Path(marker), delivery.key)
        await ack(delivery)

    trigger.ack = hanging_ack  # type: ignore[method-assign]
    return trigger


def build(broker: str, name: str, **options) -> BrokerTrigger:
    """The trigger of ``broker`` on the stream / queue ``name``."""
    if broker == "nats":
        return NatsTrigger(name, workflow=orders, stream=name, subject=f"{name}.events", create_stream=True, **options)
    if broker == "redis":
        return RedisTrigger(name, workflow=orders, stream=name, **options)
    if broker == "rabbitmq":
        return RabbitMQTrigger(name, workflow=orders, queue_name=name, **options)
    raise ValueError(broker)


triggers = (
    [
        _hang_once(
            build(
                os.environ["TRIGGER_BROKER"],
                os.environ["TRIGGER_NAME"],
                max_in_flight=4,
                poll_seconds=0.2,
                **(
                    {"ack_wait_seconds": 2.0}
                    if os.environ["TRIGGER_BROKER"] == "nats"
                    else {"claim_idle_seconds": 1.0}
                    if os.environ["TRIGGER_BROKER"] == "redis"
                    else {}
                ),
            )
        )
    ]
    if "TRIGGER_BROKER" in os.environ
    else []
)


async def publish(broker: str, name: str, messages: list[tuple[str | None, bytes]]) -> None:
    """Publish ``(id or None, body)`` messages where the trigger ``name`` of ``broker`` consumes."""
    if broker == "nats":
        import nats

        nc = await nats.connect("nats://127.0.0.1:4222")
        try:
            js = nc.jetstream()
            await js.add_stream(name=name, subjects=[f"{name}.events"])
            for ident, body in messages:
                await js.publish(f"{name}.events", body, headers={"Nats-Msg-Id": ident} if ident else None)
        finally:
            await nc.close()
    elif broker == "redis":
        import redis.asyncio

        client = redis.asyncio.Redis.from_url("redis://127.0.0.1:6379/0")
        try:
            for ident, body in messages:
                await client.xadd(name, {"body": body, **({"id": ident} if ident else {})})
        finally:
            await client.aclose()
    else:
        import aio_pika

        connection = await aio_pika.connect("amqp://guest:guest@127.0.0.1:5672/")
        try:
            channel = await connection.channel()
            await channel.declare_queue(name, durable=True)
            for ident, body in messages:
                await channel.default_exchange.publish(aio_pika.Message(body, message_id=ident), routing_key=name)
        finally:
            await connection.close()


async def remove(broker: str, name: str) -> None:
    """Delete the stream, key or queue ``name``."""
    if broker == "nats":
        import nats

        nc = await nats.connect("nats://127.0.0.1:4222")
        try:
            await nc.jetstream().delete_stream(name)
        except Exception:
            pass
        finally:
            await nc.close()
    elif broker == "redis":
        import redis.asyncio

        client = redis.asyncio.Redis.from_url("redis://127.0.0.1:6379/0")
        try:
            await client.delete(name)
        finally:
            await client.aclose()
    else:
        import aio_pika

        connection = await aio_pika.connect("amqp://guest:guest@127.0.0.1:5672/")
        try:
            channel = await connection.channel()
            await channel.queue_delete(name)
        finally:
            await connection.close()
