"""Live updates as server-sent events: a run's progress and the review inbox.

Each event's ``id`` is the stream's cursor after it (see
:class:`~orchestrate.store._feed.FeedCursor`): a client that reconnects with
``Last-Event-ID`` gets every event after it, none twice, including on PostgreSQL an
event that committed after a newer one was sent. The streams read the store's history
(one indexed read on the SQL stores) when woken by a change made in this process (a
decision through the API, a step of the embedded worker), and at least every
``ServerSettings.poll_seconds`` for changes made by other processes.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Request
from sse_starlette import EventSourceResponse, ServerSentEvent

from orchestrate._redact import redact_data
from orchestrate.server._auth import VIEWER, Principal
from orchestrate.server._deps import require, state_of
from orchestrate.server._models import event_view
from orchestrate.store._feed import FeedCursor, lag_for, newest_event_id, read_feed
from orchestrate.store.base import Event

router = APIRouter(prefix="/api/v1/events", tags=["events"])

REVIEW_EVENTS: dict[str, str] = {
    "review_created": "created",
    "review_decided": "decided",
    "review_approval_recorded": "approval",
    "review_auto_approved": "decided",
    "review_sla_warning": "sla_warning",
    "review_escalated": "escalated",
    "review_expired": "expired",
    "review_cancelled": "cancelled",
    "review_claimed": "claimed",
}
"""History kinds the inbox stream sends, and the SSE event name of each."""

_PING_SECONDS = 15


def _cursor(request: Request, header: str | None, query: str | None) -> FeedCursor | None:
    state = state_of(request)
    lag = lag_for(state.client.store, state.settings.stream_lag_seconds)
    return FeedCursor.parse(header if header is not None else query, lag_seconds=lag, now=time.time())


def _sse(event: Event, cursor: str, name: str, extra: dict[str, Any] | None = None) -> ServerSentEvent:
    data = event_view(event).model_dump()
    data["run_id"] = event.run_id
    if extra:
        data.update(extra)
    text = json.dumps(redact_data(data), ensure_ascii=False, separators=(",", ":"), default=str)
    return ServerSentEvent(data=text, id=cursor, event=name)


@router.get("/runs/{run_id}", summary="Live progress of a run (server-sent events)")
async def run_events(
    request: Request,
    run_id: str,
    _who: Annotated[Principal, Depends(require(VIEWER))],
    last_event_id_header: Annotated[str | None, Header(alias="Last-Event-ID")] = None,
    last_event_id: str | None = None,
) -> EventSourceResponse:
    """The run's history as it grows: every event after ``Last-Event-ID`` (all of them without it).

    Each event is named after its kind (``step_ok``, ``run_waiting``, ``review_decided``...)
    and carries the run's status; the stream ends after the run ends.
    """
    state = state_of(request)
    client = state.client
    run = await client.get(run_id)
    lag = lag_for(client.store, state.settings.stream_lag_seconds)
    cursor = _cursor(request, last_event_id_header, last_event_id) or FeedCursor(0, {}, lag)
    found = run.run_id

    async def stream() -> AsyncIterator[ServerSentEvent]:
        loop = asyncio.get_running_loop()
        ends = loop.time() + state.settings.stream_seconds
        while loop.time() < ends:
            woken = state.changes.next()
            # The status first: when it is final already, every event of the run is in.
            current = await client.store.get_run(found)
            events = await read_feed(client.store, cursor, now=time.time(), run_id=found, limit=500)
            status = current.status.value if current is not None else "gone"
            if events:
                latest = await client.store.get_run(found)
                status = latest.status.value if latest is not None else "gone"
            for event, text in events:
                yield _sse(event, text, event.kind, {"status": status})
            if current is None or (current.status.terminal and not events):
                return
            if not events:
                await state.changes.wait(woken, state.settings.poll_seconds)

    return EventSourceResponse(stream(), ping=_PING_SECONDS, headers={"Cache-Control": "no-store"})


@router.get("/reviews", summary="Live review inbox (server-sent events)")
async def review_events(
    request: Request,
    _who: Annotated[Principal, Depends(require(VIEWER))],
    last_event_id_header: Annotated[str | None, Header(alias="Last-Event-ID")] = None,
    last_event_id: str | None = None,
) -> EventSourceResponse:
    """Review items created, decided, warned about, escalated, expired, cancelled or claimed.

    Events are named ``created``, ``decided``, ``approval``, ``sla_warning``,
    ``escalated``, ``expired``, ``cancelled`` and ``claimed``. Without ``Last-Event-ID``
    the stream starts with what happens from now on.
    """
    state = state_of(request)
    store = state.client.store
    await state.client.engine.open()
    lag = lag_for(store, state.settings.stream_lag_seconds)
    cursor = _cursor(request, last_event_id_header, last_event_id)
    if cursor is None:
        cursor = FeedCursor(await newest_event_id(store), {}, lag)
    kinds = list(REVIEW_EVENTS)

    async def stream() -> AsyncIterator[ServerSentEvent]:
        loop = asyncio.get_running_loop()
        ends = loop.time() + state.settings.stream_seconds
        while loop.time() < ends:
            woken = state.changes.next()
            events = await read_feed(store, cursor, now=time.time(), kinds=kinds, limit=500)
            for event, text in events:
                yield _sse(event, text, REVIEW_EVENTS[event.kind])
            if not events:
                await state.changes.wait(woken, state.settings.poll_seconds)

    return EventSourceResponse(stream(), ping=_PING_SECONDS, headers={"Cache-Control": "no-store"})
