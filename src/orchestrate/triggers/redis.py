"""Redis Streams: one run per stream entry, through a consumer group.

Every worker serving the trigger is a consumer of the same group (named after the
trigger unless ``group`` says otherwise), so each entry goes to one of them. An entry a
consumer took and never acknowledged (its worker died) stays in the group's pending list;
every ``claim_idle_seconds`` the live consumers take over such entries with
``XAUTOCLAIM`` and handle them. ``XREADGROUP`` asks for at most the free in-flight slots.

The idempotency key is the entry's ``key_field`` when it has one (a publisher's own id:
two entries published for one event are one run), else the entry id. The run's input is
the entry's ``field`` (default ``body``), decoded as JSON unless ``decode`` says otherwise.
Needs the ``redis`` extra (redis-py).
"""

from __future__ import annotations

import os
import socket
import time
from typing import TYPE_CHECKING, Any

from orchestrate.errors import InvalidInputError
from orchestrate.triggers.base import BrokerTrigger, Decoder, Delivery, TriggerError

if TYPE_CHECKING:
    from orchestrate.workflow import AnyWorkflow


class RedisTrigger(BrokerTrigger):
    """Start a run for each entry of a Redis stream.

    Args:
        name: the trigger's name (and, by default, its consumer group's).
        workflow: the workflow each entry starts.
        stream: the stream's key (created with the group when missing).
        url: the Redis URL.
        group: the consumer group (default: ``name``).
        field: the entry field holding the event's body.
        key_field: an entry field holding the publisher's idempotency key, if any.
        claim_idle_seconds: how long an entry stays pending with a consumer before the
            others take it over (how soon a dead worker's entries move on).
        **options: see :class:`~orchestrate.triggers.BrokerTrigger`.
    """

    def __init__(
        self,
        name: str,
        *,
        workflow: AnyWorkflow | str,
        stream: str,
        url: str = "redis://127.0.0.1:6379/0",
        group: str | None = None,
        field: str = "body",
        key_field: str | None = "id",
        claim_idle_seconds: float = 30.0,
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
        if not stream:
            raise InvalidInputError(f"trigger {name!r}: stream is required")
        if not isinstance(claim_idle_seconds, int | float) or claim_idle_seconds <= 0:
            raise InvalidInputError(f"trigger {name!r}: claim_idle_seconds must be > 0, got {claim_idle_seconds!r}")
        self.stream = stream
        self.url = url
        self.group = group or name
        self.field = field
        self.key_field = key_field
        self.claim_idle_seconds = float(claim_idle_seconds)
        # One consumer per process and connection: a restarted worker is a new consumer,
        # and its predecessor's pending entries are claimed by age.
        self.consumer = f"{socket.gethostname()}-{os.getpid()}-{os.urandom(3).hex()}"
        self._redis: Any = None
        self._claimed_at = 0.0

    async def connect(self) -> None:
        """Connect and create the group (and the stream) if missing."""
        module = _redis()
        self._redis = module.asyncio.Redis.from_url(self.url, socket_connect_timeout=5)
        try:
            await self._redis.xgroup_create(self.stream, self.group, id="0", mkstream=True)
        except module.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        self._claimed_at = 0.0

    async def receive(self, count: int) -> list[Delivery]:
        """Entries other consumers left pending too long, else new ones (waiting up to ``poll_seconds``)."""
        if time.monotonic() - self._claimed_at >= min(self.claim_idle_seconds, 5.0):
            self._claimed_at = time.monotonic()
            claimed = await self._claim(count)
            if claimed:
                return claimed
        reply = await self._redis.xreadgroup(
            self.group, self.consumer, {self.stream: ">"}, count=count, block=int(self.poll_seconds * 1000)
        )
        found: list[Delivery] = []
        for _stream, entries in reply or []:
            found.extend(self._delivery(entry_id, fields, False) for entry_id, fields in entries)
        return found

    async def _claim(self, count: int) -> list[Delivery]:
        reply = await self._redis.xautoclaim(
            self.stream,
            self.group,
            self.consumer,
            min_idle_time=int(self.claim_idle_seconds * 1000),
            start_id="0-0",
            count=count,
        )
        entries = reply[1]
        deleted = reply[2] if len(reply) > 2 else []
        if deleted:  # trimmed from the stream while pending: nothing left to start
            await self._redis.xack(self.stream, self.group, *deleted)
        return [self._delivery(entry_id, fields, True) for entry_id, fields in entries if fields is not None]

    def _delivery(self, entry_id: Any, fields: dict[Any, Any], redelivered: bool) -> Delivery:
        ident = _text(entry_id)
        values = {_text(k): v for k, v in (fields or {}).items()}
        key = _text(values[self.key_field]) if self.key_field and self.key_field in values else ident
        raw = values.get(self.field)
        if raw is None:
            fields_found = ", ".join(sorted(values)) or "none"
            problem = f"the entry has no {self.field!r} field (fields: {fields_found})"
            return Delivery(key=key, body=b"", handle=entry_id, redelivered=redelivered, problem=problem)
        body = raw if isinstance(raw, bytes) else str(raw).encode()
        return Delivery(key=key, body=body, handle=entry_id, redelivered=redelivered)

    async def ack(self, delivery: Delivery) -> None:
        """``XACK`` the entry."""
        await self._redis.xack(self.stream, self.group, delivery.handle)

    async def disconnect(self) -> None:
        """Leave the group if nothing is pending with this consumer; close the connection."""
        client, self._redis = self._redis, None
        if client is None:
            return
        try:
            pending = await client.xpending_range(
                self.stream, self.group, min="-", max="+", count=1, consumername=self.consumer
            )
            if not pending:
                await client.xgroup_delconsumer(self.stream, self.group, self.consumer)
        finally:
            await client.aclose()


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _redis() -> Any:
    try:
        import redis
        import redis.asyncio
    except ImportError:
        raise TriggerError("RedisTrigger needs the redis extra: pip install 'orchestrate-ai[redis]'") from None
    return redis
