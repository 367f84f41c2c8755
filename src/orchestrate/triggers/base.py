"""The ``Trigger`` protocol and what every trigger shares: one run per event, poison to the DLQ.

An *event* (a broker message, a webhook request, a schedule's slot) becomes a run through
:func:`start_for_event`. The run's id is derived from the trigger's name and the event's
key (:func:`event_run_id`), and creating a run whose id exists keeps the existing one, so
an event delivered twice — redelivered after a crash, published twice, posted twice —
is one run, whichever worker sees it.

:class:`BrokerTrigger` is the consume loop the broker modules share: receive at most
``max_in_flight`` messages, create each one's run durably, and only then acknowledge it.
A worker that dies before the acknowledgement leaves the message to the broker, which
hands it out again; the second delivery finds the run and is acknowledged.

A *poison* message — one that cannot be decoded, or whose value the workflow refuses
as its input — becomes a **dead run** (status ``dead``, ``error.reason == "poison"``):
it sits in the dead-letter queue with the other dead runs (``orchestrate dlq list``,
replayable with a corrected input), and the message is acknowledged so that it never
blocks the stream. One place for every broker (Redis Streams has no dead-letter
mechanism of its own) and for the runs that failed later.
"""

from __future__ import annotations

import abc
import asyncio
import dataclasses
import enum
import hashlib
import json
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from orchestrate._redact import redact
from orchestrate.errors import (
    InvalidInputError,
    OrchestrateError,
    SerializationError,
    StoreError,
    error_info,
)
from orchestrate.observe import get_logger
from orchestrate.store.base import Event, RunRecord
from orchestrate.types import RunStatus

if TYPE_CHECKING:
    from orchestrate.client import Client
    from orchestrate.workflow import AnyWorkflow

Decoder = Callable[[bytes], Any]
"""Turns a message body into the run's input; raising means the message is poison."""

RAW_PREVIEW_BYTES = 4096
"""How much of an undecodable message a poison run keeps (as text) for the operator."""


class PoisonMessageError(InvalidInputError):
    """An event cannot become a run: its body does not decode or the workflow refuses it.

    The event is recorded as a dead run (``error.reason == "poison"``) and acknowledged.
    """


class TriggerError(OrchestrateError):
    """A trigger cannot run as configured (a missing extra, a broker that refuses it)."""


class EventOutcome(enum.StrEnum):
    """What became of one event."""

    CREATED = "created"  # a new run was created for it
    DUPLICATE = "duplicate"  # its run existed already (a redelivery or a second publish)
    POISON = "poison"  # it could not become a run: recorded as a dead run


@dataclass(frozen=True)
class Started:
    """The outcome of :func:`start_for_event`.

    Attributes:
        run_id: the event's run (a dead one for a poison event).
        outcome: created, duplicate or poison.
    """

    run_id: str
    outcome: EventOutcome


@dataclass
class TriggerStats:
    """Counts of what a trigger did since it started (this process only).

    Attributes:
        created: events that created a run.
        duplicates: events whose run existed (redeliveries, double publishes).
        poison: events recorded as dead runs.
        failed: deliveries left unacknowledged because the store failed (redelivered later).
    """

    created: int = 0
    duplicates: int = 0
    poison: int = 0
    failed: int = 0

    def count(self, outcome: EventOutcome) -> None:
        """Count one event's outcome."""
        if outcome is EventOutcome.CREATED:
            self.created += 1
        elif outcome is EventOutcome.DUPLICATE:
            self.duplicates += 1
        else:
            self.poison += 1


@runtime_checkable
class Trigger(Protocol):
    """Something that starts runs from outside events; ``orchestrate worker`` runs them.

    Attributes:
        name: unique among the triggers of an application; part of every run id it makes.
    """

    name: str

    async def serve(self, client: Client, *, stop: asyncio.Event) -> None:
        """Turn events into runs of ``client`` until ``stop`` is set, then return.

        Events taken but not yet turned into runs when ``stop`` is set are finished
        first (or left to the broker to hand out again).
        """


def event_run_id(trigger: str, key: str) -> str:
    """The id of the run for the event ``key`` of ``trigger``: the same for every delivery.

    Returns:
        32 hex digits (a SHA-256 prefix), shaped like the ids the engine makes.
    """
    return hashlib.sha256(f"{trigger}\x00{key}".encode()).hexdigest()[:32]


def json_body(body: bytes) -> Any:
    """The default decoder: the body is JSON (UTF-8); an empty body is ``None``."""
    if not body.strip():
        return None
    return json.loads(body)


def check_name(name: object, what: str = "trigger") -> str:
    """Validate a trigger or schedule name: 1 to 100 printable characters."""
    if not isinstance(name, str) or not name or len(name) > 100 or not name.isprintable():
        raise InvalidInputError(f"a {what} name must be 1 to 100 printable characters, got {name!r}")
    return name


async def start_for_event(
    client: Client,
    *,
    trigger: str,
    workflow: AnyWorkflow | str,
    key: str,
    body: bytes | None = None,
    value: Any = None,
    decode: Decoder | None = None,
    queue: str = "default",
    start_at: float | None = None,
    details: dict[str, Any] | None = None,
    problem: str | None = None,
) -> Started:
    """Create the run of one event, exactly once, or record the event as poison.

    Args:
        client: where the run is created.
        trigger: the trigger's name.
        workflow: the workflow to start.
        key: the event's idempotency key (a message id, a webhook's key, a slot time).
        body: the raw event, decoded with ``decode`` (default: JSON); or
        value: the run's input as is, when ``body`` is ``None``.
        decode: body → input; an exception means poison.
        queue: the run's queue.
        start_at: a delayed start (POSIX seconds).
        details: recorded in the run's options under ``"trigger"`` (beside name and key).
        problem: the event is poison for this reason, whatever its body.

    Returns:
        The run's id and whether it was created, existed, or is a poison record.

    Raises:
        StoreError: the store failed: the event is not handled; deliver it again.
    """
    run_id = event_run_id(trigger, key)
    store = client.engine.store
    await client.engine.open()
    existing = await store.get_run(run_id)
    if existing is not None:
        return Started(run_id, EventOutcome.DUPLICATE)
    meta = {"name": trigger, "key": key, **(details or {}), "delivery": os.urandom(8).hex()}
    if problem is not None:
        return await _poison(client, run_id, workflow, problem, _raw(body or b""), meta, queue)
    if body is not None:
        try:
            value = (decode or json_body)(body)
        except Exception as exc:  # noqa: BLE001 - whatever the decoder raises makes the message poison
            why = f"its body cannot be decoded: {type(exc).__name__}: {exc}"
            return await _poison(client, run_id, workflow, why, _raw(body), meta, queue)
    # Another worker may create the run between the look-up and the insert (the insert
    # keeps the first): the delivery's own mark on the stored run says which one won.
    try:
        await client.start(workflow, value, run_id=run_id, options={"trigger": meta}, queue=queue, start_at=start_at)
    except StoreError:
        raise
    except (SerializationError, InvalidInputError) as exc:
        why = f"the workflow refuses its input: {exc}"
        return await _poison(client, run_id, workflow, why, value, meta, queue)
    stored = await store.get_run(run_id)
    ours = stored is not None and stored.options.get("trigger", {}).get("delivery") == meta["delivery"]
    return Started(run_id, EventOutcome.CREATED if ours else EventOutcome.DUPLICATE)


def _raw(body: bytes) -> dict[str, Any]:
    head = body[:RAW_PREVIEW_BYTES]
    return {"raw": head.decode("utf-8", errors="replace"), "raw_bytes": len(body)}


async def _poison(
    client: Client,
    run_id: str,
    workflow: AnyWorkflow | str,
    why: str,
    value: Any,
    meta: dict[str, Any],
    queue: str,
) -> Started:
    """Record the event as a dead run (the dead-letter queue); ``value`` kept when storable."""
    engine = client.engine
    wf = engine.get_workflow(workflow) if isinstance(workflow, str) else workflow
    now = engine.clock.now()
    exc = PoisonMessageError(f"event {meta['key']!r} of trigger {meta['name']!r} is poison: {why}")
    info = {**error_info(exc), "reason": "poison"}
    log = get_logger()
    log.warning("trigger_poison", trigger=meta["name"], key=meta["key"], run_id=run_id, error=redact(str(exc)))
    for kept in (value, {"unstorable": True}):
        record = RunRecord(
            run_id=run_id,
            workflow=wf.name,
            version=wf.version,
            status=RunStatus.DEAD,
            input=kept,
            error=info,
            created_at=now,
            updated_at=now,
            queue=queue,
            options={"trigger": meta},
        )
        try:
            await engine.store.create_run(
                record, event=Event(run_id=run_id, kind="run_dead", at=now, data={"error": info})
            )
        except StoreError:
            raise
        except (SerializationError, InvalidInputError):
            continue  # the value cannot be stored as JSON (or is too large): keep the record without it
        stored = await engine.store.get_run(run_id)
        ours = stored is not None and stored.options.get("trigger", {}).get("delivery") == meta["delivery"]
        return Started(run_id, EventOutcome.POISON if ours else EventOutcome.DUPLICATE)
    raise AssertionError("a dead run without its input is always storable")  # pragma: no cover


@dataclass(frozen=True)
class Delivery:
    """One message as a broker handed it out.

    Attributes:
        key: its idempotency key (stable across redeliveries).
        body: its bytes.
        handle: the broker's own message object (to acknowledge it).
        redelivered: whether the broker says it was handed out before.
        problem: why it cannot be an event at all (it is poison), found before decoding.
    """

    key: str
    body: bytes
    handle: Any = dataclasses.field(default=None, compare=False, repr=False)
    redelivered: bool = False
    problem: str | None = None


class BrokerTrigger(abc.ABC):
    """The consume → create the run durably → acknowledge loop the broker triggers share.

    Subclasses connect to their broker and receive, acknowledge and release messages;
    this class bounds what is in flight, turns each message into its run with
    :func:`start_for_event` and acknowledges only after the run is stored.

    Args:
        name: the trigger's name (unique in the application; part of every run id).
        workflow: the workflow each message starts (an object or a registered name).
        decode: body → the run's input (default: JSON). An exception makes it poison.
        queue: the queue the runs wait in.
        max_in_flight: messages taken and not yet acknowledged, at most (back-pressure:
            the broker keeps the rest).
        poll_seconds: how long one receive waits for messages (how soon ``stop`` is seen).
        retry_seconds: the pause after the broker or the store failed, before trying again.
    """

    def __init__(
        self,
        *,
        name: str,
        workflow: AnyWorkflow | str,
        decode: Decoder | None = None,
        queue: str = "default",
        max_in_flight: int = 64,
        poll_seconds: float = 1.0,
        retry_seconds: float = 1.0,
    ) -> None:
        self.name = check_name(name)
        self.workflow = workflow
        self.decode = decode
        self.queue = queue
        if isinstance(max_in_flight, bool) or not isinstance(max_in_flight, int) or max_in_flight < 1:
            raise InvalidInputError(f"trigger {name!r}: max_in_flight must be an int >= 1, got {max_in_flight!r}")
        for label, seconds in (("poll_seconds", poll_seconds), ("retry_seconds", retry_seconds)):
            if isinstance(seconds, bool) or not isinstance(seconds, int | float) or seconds <= 0:
                raise InvalidInputError(f"trigger {name!r}: {label} must be a number > 0, got {seconds!r}")
        self.max_in_flight = max_in_flight
        self.poll_seconds = float(poll_seconds)
        self.retry_seconds = float(retry_seconds)
        self.stats = TriggerStats()
        self.log = get_logger()

    # what a broker module provides -------------------------------------------------------
    @abc.abstractmethod
    async def connect(self) -> None:
        """Connect and declare what the trigger consumes (idempotently)."""

    @abc.abstractmethod
    async def receive(self, count: int) -> list[Delivery]:
        """Up to ``count`` messages, waiting at most ``poll_seconds`` for the first."""

    @abc.abstractmethod
    async def ack(self, delivery: Delivery) -> None:
        """Acknowledge: the broker forgets the message."""

    async def release(self, delivery: Delivery) -> None:  # noqa: B027 - optional for a broker
        """Hand the message back for another try (default: leave it to the broker's timeout)."""

    @abc.abstractmethod
    async def disconnect(self) -> None:
        """Close the connection (messages not acknowledged go back to the broker)."""

    # the shared loop ---------------------------------------------------------------------
    async def serve(self, client: Client, *, stop: asyncio.Event) -> None:
        """Consume until ``stop`` is set; finish the messages in flight; disconnect."""
        if isinstance(self.workflow, str):
            client.engine.get_workflow(self.workflow)  # an unknown name fails now, not per message
        in_flight: set[asyncio.Task[None]] = set()
        connected = False
        try:
            while not stop.is_set():
                if not connected:
                    try:
                        await self.connect()
                        connected = True
                    except TriggerError:
                        raise
                    except Exception as exc:  # noqa: BLE001 - the broker's errors; tried again
                        self._failed("connect", exc)
                        await _pause(stop, self.retry_seconds)
                        continue
                free = self.max_in_flight - len(in_flight)
                if free <= 0:
                    await asyncio.wait(in_flight, return_when=asyncio.FIRST_COMPLETED)
                    continue
                try:
                    batch = await self.receive(free)
                except Exception as exc:  # noqa: BLE001 - a dropped connection: reconnect
                    self._failed("receive", exc)
                    if in_flight:  # let them acknowledge (or fail to) before the connection goes
                        await asyncio.gather(*in_flight, return_exceptions=True)
                    await self._drop()
                    connected = False
                    await _pause(stop, self.retry_seconds)
                    continue
                for delivery in batch:
                    task = asyncio.create_task(self._handle(client, delivery))
                    in_flight.add(task)
                    task.add_done_callback(in_flight.discard)
        finally:
            if in_flight:
                await asyncio.gather(*in_flight, return_exceptions=True)
            if connected:
                await self._drop()

    async def _handle(self, client: Client, delivery: Delivery) -> None:
        try:
            started = await start_for_event(
                client,
                trigger=self.name,
                workflow=self.workflow,
                key=delivery.key,
                body=delivery.body,
                decode=self.decode,
                queue=self.queue,
                problem=delivery.problem,
            )
        except Exception as exc:  # noqa: BLE001 - the store failed: not acknowledged, handed out again
            self.stats.failed += 1
            self._failed("start", exc, key=delivery.key)
            try:
                await self.release(delivery)
            except Exception as again:  # noqa: BLE001 - the broker's timeout hands it out anyway
                self._failed("release", again, key=delivery.key)
            await asyncio.sleep(0)
            return
        self.stats.count(started.outcome)
        try:
            await self.ack(delivery)
        except Exception as exc:  # noqa: BLE001 - redelivered later, then found as a duplicate
            self._failed("ack", exc, key=delivery.key)

    async def _drop(self) -> None:
        try:
            await self.disconnect()
        except Exception as exc:  # noqa: BLE001 - closing a broken connection
            self._failed("disconnect", exc)

    def _failed(self, action: str, exc: BaseException, **data: Any) -> None:
        self.log.warning(
            "trigger_error", trigger=self.name, action=action, error=redact(f"{type(exc).__name__}: {exc}"), **data
        )


async def _pause(stop: asyncio.Event, seconds: float) -> None:
    """Sleep ``seconds`` (real time: broker retries) or until ``stop`` is set."""
    try:
        await asyncio.wait_for(stop.wait(), timeout=seconds)
    except TimeoutError:
        pass


async def run_triggers(client: Client, triggers: Iterable[Trigger], *, stop: asyncio.Event) -> None:
    """Serve every trigger until ``stop`` is set (what ``orchestrate worker --triggers`` runs).

    Raises:
        InvalidInputError: two triggers share a name.
        TriggerError: a trigger cannot run (its first failure stops the others).
    """
    found = list(triggers)
    names = [t.name for t in found]
    if len(set(names)) != len(names):
        twice = sorted({n for n in names if names.count(n) > 1})
        raise InvalidInputError(f"trigger names must be unique; used twice: {', '.join(twice)}")
    tasks = [asyncio.create_task(t.serve(client, stop=stop), name=f"trigger:{t.name}") for t in found]
    try:
        await asyncio.gather(*tasks)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
