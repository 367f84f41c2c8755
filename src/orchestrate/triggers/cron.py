"""Cron schedules: one run per slot, across any number of workers, in a time zone.

A :class:`Schedule` names a workflow, a cron expression and a time zone. Every worker that
serves it computes the same *slots* (the times the expression names, in that zone, DST
included) and starts the slot's run under an id derived from the schedule's name and the
slot (:func:`~orchestrate.triggers.base.event_run_id`): the first worker creates it, the
others find it. So two, or twenty, workers fire each slot once.

Durability: the schedule's *cursor* — up to when its slots were decided — is kept in the
store (under the cache key ``orchestrate:schedule:<name>``). A worker that starts after an
outage finds the slots between the cursor and now that nobody fired, and its
:class:`Misfire` policy decides: skip them (the default), or catch up the most recent
``N``. A schedule seen for the first time starts from now: it never fires slots from
before it existed.

Time is the engine's :class:`~orchestrate.Clock`, so tests run schedules on
:class:`~orchestrate.testing.FakeClock`. Needs the ``cron`` extra (croniter, tzdata).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from orchestrate._redact import redact
from orchestrate.errors import InvalidInputError, StoreError
from orchestrate.observe import get_logger
from orchestrate.triggers.base import Started, TriggerError, check_name, start_for_event

if TYPE_CHECKING:
    from orchestrate.client import Client
    from orchestrate.workflow import AnyWorkflow

CURSOR_PREFIX = "orchestrate:schedule:"
"""The store cache key of a schedule's cursor is this prefix and the schedule's name."""

_CATCH_UP = re.compile(r"catch[_ ]up[: ]\s*(\d+)")


@dataclass(frozen=True)
class Misfire:
    """What a schedule does with the slots nobody fired on time.

    A slot is *on time* while no more than ``grace_seconds`` have passed since it; it
    always fires. Older ones were *missed* (every worker was down, or the schedule's
    process was): ``catch_up`` of them fire late, the most recent ones, oldest first;
    the rest are skipped.

    Attributes:
        catch_up: missed slots fired late (0: skip them all).
        grace_seconds: how late a slot may still fire as on time.
    """

    catch_up: int = 0
    grace_seconds: float = 60.0

    def __post_init__(self) -> None:
        if isinstance(self.catch_up, bool) or not isinstance(self.catch_up, int) or self.catch_up < 0:
            raise InvalidInputError(f"Misfire.catch_up must be an int >= 0, got {self.catch_up!r}")
        grace = self.grace_seconds
        if isinstance(grace, bool) or not isinstance(grace, int | float) or grace < 0:
            raise InvalidInputError(f"Misfire.grace_seconds must be a number >= 0, got {grace!r}")

    @classmethod
    def of(cls, value: Misfire | str | int) -> Misfire:
        """Normalise ``"skip"``, ``"catch_up:N"`` (or an int ``N``) or a ``Misfire``.

        Raises:
            InvalidInputError: anything else.
        """
        if isinstance(value, Misfire):
            return value
        if isinstance(value, int) and not isinstance(value, bool):
            return cls(catch_up=value)
        if isinstance(value, str):
            text = value.strip().lower()
            if text == "skip":
                return cls()
            if match := _CATCH_UP.fullmatch(text):
                return cls(catch_up=int(match.group(1)))
        raise InvalidInputError(f"misfire must be 'skip', 'catch_up:N' or a Misfire, got {value!r}")

    def slots_to_fire(self, slots: Sequence[float], *, now: float) -> list[float]:
        """Of the undecided ``slots`` (ascending, none after ``now``), those to fire, in order.

        Returns:
            The last ``catch_up`` missed slots, then every on-time one.
        """
        late = [s for s in slots if now - s > self.grace_seconds]
        on_time = [s for s in slots if now - s <= self.grace_seconds]
        return (late[-self.catch_up :] if self.catch_up else []) + on_time


class Schedule:
    """Start a workflow on a cron schedule, in a time zone, once per slot across workers.

    Args:
        name: unique among the application's triggers; with the slot, it makes the run id.
        workflow: the workflow to start (an object or a registered name).
        cron: a cron expression (five fields; a sixth for seconds), e.g. ``"0 9 * * mon-fri"``.
        timezone: an IANA zone (``"Europe/Paris"``); slots follow its DST changes.
        input: the run's input: a value, or a function of the slot (an aware datetime).
        misfire: what to do with missed slots: ``"skip"`` (default), ``"catch_up:N"`` or
            a :class:`Misfire`.
        queue: the queue the runs wait in.
        retry_seconds: the pause after the store failed, before trying again.

    Raises:
        InvalidInputError: a bad name, expression, zone or misfire policy.
        TriggerError: the ``cron`` extra is not installed.
    """

    def __init__(
        self,
        name: str,
        *,
        workflow: AnyWorkflow | str,
        cron: str,
        timezone: str = "UTC",
        input: Any | Callable[[dt.datetime], Any] = None,
        misfire: Misfire | str | int = "skip",
        queue: str = "default",
        retry_seconds: float = 5.0,
    ) -> None:
        self.name = check_name(name, "schedule")
        self.workflow = workflow
        croniter = _croniter()
        if not isinstance(cron, str) or not croniter.is_valid(cron):
            raise InvalidInputError(
                f"schedule {name!r}: {cron!r} is not a cron expression (five fields: minute hour day month weekday)"
            )
        self.cron = cron
        try:
            self.zone = ZoneInfo(timezone)
        except (ZoneInfoNotFoundError, ValueError, TypeError):
            raise InvalidInputError(
                f"schedule {name!r}: unknown time zone {timezone!r} (an IANA name such as 'Europe/Paris')"
            ) from None
        self.timezone = timezone
        self.input = input
        self.misfire = Misfire.of(misfire)
        self.queue = queue
        self.retry_seconds = retry_seconds
        self.log = get_logger()

    def __repr__(self) -> str:
        return f"Schedule({self.name!r}, cron={self.cron!r}, timezone={self.timezone!r})"

    @property
    def workflow_name(self) -> str:
        """The name of the workflow it starts."""
        return self.workflow if isinstance(self.workflow, str) else self.workflow.name

    # slots --------------------------------------------------------------------------------
    def next_firings(self, count: int = 3, *, after: float | dt.datetime) -> list[dt.datetime]:
        """The next ``count`` slots after ``after``, as aware datetimes in the schedule's zone."""
        start = after if isinstance(after, dt.datetime) else dt.datetime.fromtimestamp(after, self.zone)
        it = _croniter()(self.cron, start.astimezone(self.zone))
        return [it.get_next(dt.datetime).astimezone(self.zone) for _ in range(count)]

    def slots_between(self, after: float, until: float, *, limit: int | None = None) -> list[float]:
        """Slots ``s`` with ``after < s <= until``, ascending: the last ``limit`` of them at most.

        Walks back from ``until``, so a long outage costs ``limit`` steps, not one per slot.
        """
        if limit is None:
            limit = self.misfire.catch_up + 1_000
        it = _croniter()(self.cron, dt.datetime.fromtimestamp(until + 1.0, self.zone))
        found: list[float] = []
        on_time_from = until - self.misfire.grace_seconds
        late = 0
        while len(found) < limit:
            slot = it.get_prev(dt.datetime).timestamp()
            if slot <= after:
                break
            if slot > until:
                continue
            if slot < on_time_from:
                late += 1
                if late > self.misfire.catch_up:
                    break  # older missed slots would be skipped anyway
            found.append(slot)
        found.reverse()
        return found

    def slot_key(self, slot: float) -> str:
        """The slot's idempotency key: its UTC time, ISO 8601."""
        return dt.datetime.fromtimestamp(slot, dt.UTC).isoformat()

    # firing -------------------------------------------------------------------------------
    async def cursor(self, client: Client) -> float | None:
        """Up to when this schedule's slots were decided (``None``: never served)."""
        await client.engine.open()
        entry = await client.engine.store.cache_get(CURSOR_PREFIX + self.name)
        if entry is None or not isinstance(entry.value, dict):
            return None
        value = entry.value.get("cursor")
        return float(value) if isinstance(value, int | float) else None

    async def tick(self, client: Client) -> list[Started]:
        """Fire the due slots (as the misfire policy says) and move the cursor to now.

        Returns:
            What became of each slot fired (created, or found when another worker was first).

        Raises:
            StoreError: the store failed; the cursor did not move, so the next tick tries again.
        """
        now = client.engine.clock.now()
        cursor = await self.cursor(client)
        started: list[Started] = []
        if cursor is not None and cursor < now:
            slots = self.slots_between(cursor, now)
            for slot in self.misfire.slots_to_fire(slots, now=now):
                started.append(await self._fire(client, slot))
            grace = self.misfire.grace_seconds
            if self.next_firings(1, after=cursor)[0].timestamp() < now - grace:  # slots were missed
                late = sum(now - s > grace for s in slots)
                self.log.warning("schedule_missed", schedule=self.name, since=cursor, fired_late=late)
        if cursor is None or cursor < now:
            await client.engine.store.cache_put(CURSOR_PREFIX + self.name, {"cursor": now}, now=now)
        return started

    async def _fire(self, client: Client, slot: float) -> Started:
        when = dt.datetime.fromtimestamp(slot, self.zone)
        value = self.input(when) if callable(self.input) else self.input
        return await start_for_event(
            client,
            trigger=self.name,
            workflow=self.workflow,
            key=self.slot_key(slot),
            value=value,
            queue=self.queue,
            details={"slot": when.isoformat(), "cron": self.cron, "timezone": self.timezone},
        )

    async def serve(self, client: Client, *, stop: asyncio.Event) -> None:
        """Fire slots as they come, on the engine's clock, until ``stop`` is set."""
        if isinstance(self.workflow, str):
            client.engine.get_workflow(self.workflow)
        clock = client.engine.clock
        while not stop.is_set():
            try:
                await self.tick(client)
            except StoreError as exc:
                self.log.warning("trigger_error", trigger=self.name, action="tick", error=redact(str(exc)))
                await _sleep_or_stop(clock.sleep(self.retry_seconds), stop)
                continue
            now = clock.now()
            following = self.next_firings(1, after=now)[0].timestamp()
            await _sleep_or_stop(clock.sleep(max(following - now, 0.0)), stop)


async def _sleep_or_stop(sleep: Any, stop: asyncio.Event) -> None:
    sleeper = asyncio.ensure_future(sleep)
    stopper = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({sleeper, stopper}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (sleeper, stopper):
            task.cancel()
        await asyncio.gather(sleeper, stopper, return_exceptions=True)


def _croniter() -> Any:
    try:
        from croniter import croniter
    except ImportError:
        raise TriggerError("cron schedules need the cron extra: pip install 'orchestrate-ai[cron]'") from None
    return croniter
