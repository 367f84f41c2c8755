"""RabbitMQ: one run per message of a queue, with manual acknowledgements.

The channel's prefetch is ``max_in_flight``: the broker sends no more while that many
messages are unacknowledged. A message is acknowledged once its run is stored; when a
worker dies, its connection closes and the broker requeues what it had not acknowledged
for the other consumers.

The idempotency key is the message's ``message_id`` property. A message without one has
no identity that survives a redelivery, so its key is the SHA-256 of its body: two
identical bodies without ids are one event. Publish with ``message_id`` set.
Needs the ``rabbitmq`` extra (aio-pika).
"""

from __future__ import annotations

import asyncio
import hashlib
from typing import TYPE_CHECKING, Any

from orchestrate.errors import InvalidInputError
from orchestrate.triggers.base import BrokerTrigger, Decoder, Delivery, TriggerError

if TYPE_CHECKING:
    from orchestrate.workflow import AnyWorkflow


class RabbitMQTrigger(BrokerTrigger):
    """Start a run for each message of a RabbitMQ queue.

    Args:
        name: the trigger's name.
        workflow: the workflow each message starts.
        queue_name: the queue consumed (declared durable when ``declare``).
        url: the AMQP URL.
        declare: declare the queue (durable) if it does not exist.
        **options: see :class:`~orchestrate.triggers.BrokerTrigger` (``queue`` is the
            orchestrate queue the runs wait in, not the RabbitMQ queue).
    """

    def __init__(
        self,
        name: str,
        *,
        workflow: AnyWorkflow | str,
        queue_name: str,
        url: str = "amqp://guest:guest@127.0.0.1:5672/",
        declare: bool = True,
        decode: Decoder | None = None,
        queue: str = "default",
        max_in_flight: int = 64,
        poll_seconds: float = 1.0,
        retry_seconds: float = 1.0,
    ) -> None:
        super().__init__(
            name=name,
            workflow=workflow,
            decode=decode,
            queue=queue,
            max_in_flight=max_in_flight,
            poll_seconds=poll_seconds,
            retry_seconds=retry_seconds,
        )
        if not queue_name:
            raise InvalidInputError(f"trigger {name!r}: queue_name is required")
        self.queue_name = queue_name
        self.url = url
        self.declare = declare
        self._connection: Any = None
        self._buffer: asyncio.Queue[Any] = asyncio.Queue()

    async def connect(self) -> None:
        """Connect, set the prefetch, (declare and) consume the queue."""
        aio_pika = _aio_pika()
        self._buffer = asyncio.Queue()
        self._connection = await aio_pika.connect(self.url, timeout=5)
        channel = await self._connection.channel()
        await channel.set_qos(prefetch_count=self.max_in_flight)
        if self.declare:
            source = await channel.declare_queue(self.queue_name, durable=True)
        else:
            source = await channel.get_queue(self.queue_name, ensure=True)
        await source.consume(self._buffer.put, no_ack=False)

    async def receive(self, count: int) -> list[Delivery]:
        """Up to ``count`` delivered messages, waiting up to ``poll_seconds`` for the first."""
        if self._connection is None or self._connection.is_closed:
            raise ConnectionError("the connection to RabbitMQ is closed")
        try:
            first = await asyncio.wait_for(self._buffer.get(), timeout=self.poll_seconds)
        except TimeoutError:
            return []
        messages = [first]
        while len(messages) < count and not self._buffer.empty():
            messages.append(self._buffer.get_nowait())
        return [_delivery(msg) for msg in messages]

    async def ack(self, delivery: Delivery) -> None:
        """Acknowledge the message."""
        await delivery.handle.ack()

    async def release(self, delivery: Delivery) -> None:
        """Reject it with requeue: the broker hands it out again."""
        await delivery.handle.nack(requeue=True)

    async def disconnect(self) -> None:
        """Close the connection (the broker requeues what is not acknowledged)."""
        connection, self._connection = self._connection, None
        if connection is not None and not connection.is_closed:
            await connection.close()


def _delivery(msg: Any) -> Delivery:
    body = bytes(msg.body)
    key = msg.message_id or f"sha256:{hashlib.sha256(body).hexdigest()}"
    return Delivery(key=str(key), body=body, handle=msg, redelivered=bool(msg.redelivered))


def _aio_pika() -> Any:
    try:
        import aio_pika
    except ImportError:
        raise TriggerError("RabbitMQTrigger needs the rabbitmq extra: pip install 'orchestrate-ai[rabbitmq]'") from None
    return aio_pika
