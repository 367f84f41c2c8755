"""NATS JetStream: one run per message of a stream, through a durable pull consumer.

The consumer is durable (named after the trigger unless ``durable`` says otherwise), so
every worker serving the trigger shares it: JetStream hands each message to one of them,
and a message not acknowledged within ``ack_wait_seconds`` (its worker died) goes to
another. ``max_ack_pending`` is set to ``max_in_flight``: the server stops handing out
messages while that many are unacknowledged.

The idempotency key is the message's ``Nats-Msg-Id`` header when it has one (the id
publishers give for JetStream's own de-duplication), else ``<stream>:<stream sequence>``.
Needs the ``nats`` extra (nats-py).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from orchestrate.errors import InvalidInputError
from orchestrate.triggers.base import BrokerTrigger, Decoder, Delivery, TriggerError

if TYPE_CHECKING:
    from orchestrate.workflow import AnyWorkflow

MSG_ID_HEADER = "Nats-Msg-Id"


class NatsTrigger(BrokerTrigger):
    """Start a run for each message on a JetStream stream's subject.

    Args:
        name: the trigger's name (and, by default, its durable consumer's).
        workflow: the workflow each message starts.
        stream: the JetStream stream.
        subject: the subject (filter) consumed; wildcards allowed.
        servers: the NATS server URL(s).
        durable: the durable consumer's name (default: ``name`` with other characters
            than letters, digits, ``-`` and ``_`` replaced by ``_``).
        create_stream: create the stream (on ``subject``) when it does not exist;
            otherwise a missing stream is an error naming it.
        ack_wait_seconds: how long a message may stay unacknowledged before JetStream
            hands it to another worker (how soon a dead worker's messages move on).
        **options: see :class:`~orchestrate.triggers.BrokerTrigger` (``decode``,
            ``queue``, ``max_in_flight``, ``poll_seconds``, ``retry_seconds``).
    """

    def __init__(
        self,
        name: str,
        *,
        workflow: AnyWorkflow | str,
        stream: str,
        subject: str,
        servers: str | list[str] = "nats://127.0.0.1:4222",
        durable: str | None = None,
        create_stream: bool = False,
        ack_wait_seconds: float = 30.0,
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
        if not stream or not subject:
            raise InvalidInputError(f"trigger {name!r}: stream and subject are required")
        if not isinstance(ack_wait_seconds, int | float) or ack_wait_seconds <= 0:
            raise InvalidInputError(f"trigger {name!r}: ack_wait_seconds must be > 0, got {ack_wait_seconds!r}")
        self.stream = stream
        self.subject = subject
        self.servers = [servers] if isinstance(servers, str) else list(servers)
        self.durable = durable or re.sub(r"[^A-Za-z0-9_-]", "_", name)
        self.create_stream = create_stream
        self.ack_wait_seconds = float(ack_wait_seconds)
        self._nc: Any = None
        self._sub: Any = None

    async def connect(self) -> None:
        """Connect, check (or create) the stream and bind the durable pull consumer."""
        nats, api, errors = _nats()
        self._nc = await nats.connect(servers=self.servers, connect_timeout=5, max_reconnect_attempts=0)
        js = self._nc.jetstream()
        try:
            await js.stream_info(self.stream)
        except errors.NotFoundError:
            if not self.create_stream:
                raise TriggerError(
                    f"trigger {self.name!r}: JetStream has no stream {self.stream!r}; create it "
                    f"(nats stream add {self.stream} --subjects '{self.subject}') or pass create_stream=True"
                ) from None
            await js.add_stream(name=self.stream, subjects=[self.subject])
        config = api.ConsumerConfig(
            durable_name=self.durable,
            ack_policy=api.AckPolicy.EXPLICIT,
            ack_wait=self.ack_wait_seconds,
            max_ack_pending=self.max_in_flight,
            filter_subject=self.subject,
        )
        self._sub = await js.pull_subscribe(self.subject, durable=self.durable, stream=self.stream, config=config)

    async def receive(self, count: int) -> list[Delivery]:
        """Fetch up to ``count`` messages, waiting up to ``poll_seconds``."""
        _, _, errors = _nats()
        try:
            messages = await self._sub.fetch(batch=count, timeout=self.poll_seconds)
        except (errors.TimeoutError, TimeoutError):  # nothing arrived in time
            return []
        return [_delivery(msg) for msg in messages]

    async def ack(self, delivery: Delivery) -> None:
        """Acknowledge the message."""
        await delivery.handle.ack()

    async def release(self, delivery: Delivery) -> None:
        """Negatively acknowledge it: JetStream redelivers it after a short delay."""
        await delivery.handle.nak(delay=self.retry_seconds)

    async def disconnect(self) -> None:
        """Drain and close the connection."""
        nc, self._nc, self._sub = self._nc, None, None
        if nc is not None and not nc.is_closed:
            await nc.close()


def _delivery(msg: Any) -> Delivery:
    meta = msg.metadata
    headers = msg.headers or {}
    key = headers.get(MSG_ID_HEADER) or f"{meta.stream}:{meta.sequence.stream}"
    return Delivery(key=key, body=bytes(msg.data), handle=msg, redelivered=meta.num_delivered > 1)


def _nats() -> tuple[Any, Any, Any]:
    try:
        import nats
        import nats.errors
        import nats.js.api
        import nats.js.errors
    except ImportError:
        raise TriggerError("NatsTrigger needs the nats extra: pip install 'orchestrate-ai[nats]'") from None

    class _Errors:
        NotFoundError = nats.js.errors.NotFoundError
        TimeoutError = nats.errors.TimeoutError

    return nats, nats.js.api, _Errors
