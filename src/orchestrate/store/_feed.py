"""Reading the history as a feed: the events after a cursor, across runs or of one run.

What the server's live streams read. Event ids grow with every append, but on
PostgreSQL they are not handed out in commit order: a transaction that took id 10 may
commit after one that took id 11, so a reader that saw 11 and resumes "after 11" would
never see 10. A :class:`FeedCursor` therefore remembers, besides the highest id it
passed, the ids below it that were missing when it passed them (*gaps*: an event still
being written, or one rolled back). Each read looks for its gaps again and sends any
that committed since, until a gap is older than the lag window and is given up (a write
that took that id was rolled back). The cursor's text (the SSE ``id``) carries its gaps,
so a stream resumed with ``Last-Event-ID`` misses none of them either. A write still
uncommitted once :data:`SCAN_ROWS` newer events are in is taken for rolled back too: a
reader far behind (a new stream of an old run) reads that settled part of the history by
index, the wanted events only, and passes every id of the newest part.

SQLite commits one writer at a time, in id order, and the memory store appends in
order: a gap there can only be a rolled-back or deleted event, and their feeds keep no
gaps (lag window 0).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from orchestrate.errors import InvalidInputError
from orchestrate.store import _access_sql
from orchestrate.store._access_sql import unwrap as _unwrap
from orchestrate.store.base import Event
from orchestrate.store.memory import InMemoryStore

MAX_GAPS = 256
"""The most missing ids a cursor keeps (the newest ones, most likely still being written)."""

SCAN_ROWS = 2000
"""The most event ids one scan of a PostgreSQL feed passes; ids further below the newest are settled."""


@dataclass
class FeedCursor:
    """Where a feed reader stands: the highest id passed and the ids below it still missing.

    A pure value: :meth:`passed` and :meth:`filled` say what a read found, :meth:`expire`
    gives up gaps older than ``lag_seconds``, :meth:`text` and :meth:`parse` carry it in
    an SSE ``id``. With ``lag_seconds`` 0 it keeps no gaps (stores that commit in id order).

    Attributes:
        after: the highest event id passed (sent, or not wanted by this feed).
        gaps: ids below ``after`` not found yet, each with when it was first missed.
        lag_seconds: how long a missing id may still commit.
    """

    after: int = 0
    gaps: dict[int, float] = field(default_factory=dict)
    lag_seconds: float = 0.0

    def passed(self, event_id: int, *, now: float) -> None:
        """The read passed ``event_id`` (present): every id between the last one and it is a gap."""
        if event_id in self.gaps:
            self.gaps.pop(event_id)
            return
        if event_id <= self.after:
            return
        if self.lag_seconds > 0:
            for missing in range(max(self.after + 1, event_id - MAX_GAPS), event_id):
                self.gaps[missing] = now
            self._trim()
        self.after = event_id

    def filled(self, event_id: int) -> None:
        """A gap's event was found (sent, or not wanted by this feed)."""
        self.gaps.pop(event_id, None)

    def expire(self, *, now: float) -> None:
        """Give up the gaps missing for longer than the lag window."""
        for gap in [g for g, since in self.gaps.items() if now - since > self.lag_seconds]:
            del self.gaps[gap]

    def text(self) -> str:
        """The cursor as an SSE ``id``: ``"<after>"``, or ``"<after>~<gap>.<gap>..."``."""
        if not self.gaps:
            return str(self.after)
        return f"{self.after}~{'.'.join(str(g) for g in sorted(self.gaps))}"

    @classmethod
    def parse(cls, text: str | None, *, lag_seconds: float, now: float) -> FeedCursor | None:
        """The cursor of an SSE ``id`` made by :meth:`text` (``None`` for none).

        Raises:
            InvalidInputError: ``text`` is no id of this feed.
        """
        if text is None or text == "":
            return None
        head, sep, tail = text.partition("~")
        try:
            after = int(head)
            gaps = [int(g) for g in tail.split(".")] if sep else []
        except ValueError:
            raise InvalidInputError(f"Last-Event-ID must be an event id from this stream, got {text[:40]!r}") from None
        if after < 0 or any(not 0 < g < after for g in gaps):
            raise InvalidInputError(f"Last-Event-ID must be an event id from this stream, got {text[:40]!r}")
        cursor = cls(after, {}, lag_seconds)
        if lag_seconds > 0:
            cursor.gaps = dict.fromkeys(gaps, now)  # missed again from now: the window restarts
            cursor._trim()
        return cursor

    def _trim(self) -> None:
        if len(self.gaps) > MAX_GAPS:
            for gap in sorted(self.gaps)[: len(self.gaps) - MAX_GAPS]:
                del self.gaps[gap]


def lag_for(store: Any, lag_seconds: float) -> float:
    """The lag window a feed of ``store`` needs: ``lag_seconds`` on PostgreSQL, else 0."""
    return lag_seconds if _access_sql.dialect_of(_unwrap(store)) == "postgres" else 0.0


async def read_feed(
    store: Any,
    cursor: FeedCursor,
    *,
    now: float,
    kinds: Sequence[str] | None = None,
    run_id: str | None = None,
    limit: int = 500,
) -> list[tuple[Event, str]]:
    """The events after ``cursor`` (and those of its gaps that committed since), each with the cursor's text after it.

    Advances ``cursor`` past everything read, wanted or not. Events are those of
    ``run_id``'s run and of ``kinds`` when given; at most ``limit`` new ones per read.
    """
    cursor.expire(now=now)
    base = _unwrap(store)
    if cursor.lag_seconds <= 0 or _access_sql.dialect_of(base) != "postgres":
        out = []
        for event in await events_after(store, cursor.after, kinds=kinds, run_id=run_id, limit=limit):
            cursor.passed(event.id, now=now)
            out.append((event, cursor.text()))
        return out
    wanted_kinds = set(kinds) if kinds is not None else None

    def wanted(event: Event) -> bool:
        return (run_id is None or event.run_id == run_id) and (wanted_kinds is None or event.kind in wanted_kinds)

    sent: list[tuple[Event, str]] = []
    # Far behind (a new stream, or one resumed long after): ids more than SCAN_ROWS below
    # the newest are settled, so the wanted events among them are read by index, without
    # passing every id of every run.
    settled = (await _access_sql.last_event_id(base) or 0) - SCAN_ROWS
    while cursor.after < settled and len(sent) < limit:
        wanted_now = limit - len(sent)
        old = await _access_sql.events_after(
            base, cursor.after, kinds=kinds, run_id=run_id, limit=wanted_now, upto=settled
        )
        for event in old or []:
            cursor.after = event.id
            sent.append((event, cursor.text()))
        if len(old or []) < wanted_now:
            cursor.after = settled
    if cursor.gaps:
        for event in await _access_sql.events_by_id(base, sorted(cursor.gaps)):
            cursor.filled(event.id)
            if wanted(event):
                sent.append((event, cursor.text()))
    while len(sent) < limit:
        # One statement, one snapshot: every id present in the range, and the wanted rows among them.
        present, rows = await _access_sql.feed_scan(base, cursor.after, kinds=kinds, run_id=run_id, rows=SCAN_ROWS)
        by_id = {event.id: event for event in rows}
        for event_id in present:
            cursor.passed(event_id, now=now)
            found = by_id.get(event_id)
            if found is not None:
                sent.append((found, cursor.text()))
                if len(sent) >= limit:
                    break
        if len(present) < SCAN_ROWS:
            break  # the end of the history as this snapshot saw it
    return sent


async def events_after(
    store: Any,
    after: int,
    *,
    kinds: Sequence[str] | None = None,
    run_id: str | None = None,
    limit: int = 200,
) -> list[Event]:
    """Events with an id above ``after``, oldest first: of ``run_id``'s run, of ``kinds``, at most ``limit``."""
    found = await _access_sql.events_after(_unwrap(store), after, kinds=kinds, run_id=run_id, limit=limit)
    if found is not None:
        return found
    base = _unwrap(store)
    if run_id is not None:
        events = [e for e in await store.list_events(run_id) if e.id > after]
    elif isinstance(base, InMemoryStore):
        events = sorted((e for run in list(base._events.values()) for e in run if e.id > after), key=lambda e: e.id)
    else:
        return []
    if kinds is not None:
        wanted = set(kinds)
        events = [e for e in events if e.kind in wanted]
    return events[:limit]


async def newest_event_id(store: Any) -> int:
    """The id of the newest event in the store (0 when there is none)."""
    found = await _access_sql.last_event_id(_unwrap(store))
    if found is not None:
        return found
    base = _unwrap(store)
    if isinstance(base, InMemoryStore):
        return base._event_id
    return 0
