"""Live updates as server-sent events: a run's progress and the review inbox.

Each event carries the id of the history entry it comes from; a client that reconnects
with ``Last-Event-ID`` gets every event after it, none twice. The streams poll the
store's history by id (one indexed read per poll on the SQL stores), every
``ServerSettings.poll_seconds``.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Request
from sse_starlette import EventSourceResponse, ServerSentEvent

from orchestrate._redact import redact_data
from orchestrate.errors import InvalidInputError
from orchestrate.server._auth import VIEWER, Principal
from orchestrate.server._deps import require, state_of
from orchestrate.server._models import event_view
from orchestrate.store._feed import events_after, newest_event_id
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


def _last_id(header: str | None, query: int | None) -> int | None:
    raw = header if header is not None else (str(query) if query is not None else None)
    if raw is None or raw == "":
        return None
    try:
        value = int(raw)
    except ValueError:
        raise InvalidInputError(f"Last-Event-ID must be an event id from this stream, got {raw[:40]!r}") from None
    if value < 0:
        raise InvalidInputError(f"Last-Event-ID must be an event id from this stream, got {raw[:40]!r}")
    return value


def _sse(event: Event, name: str, extra: dict[str, Any] | None = None) -> ServerSentEvent:
    data = event_view(event).model_dump()
    data["run_id"] = event.run_id
    if extra:
        data.update(extra)
    text = json.dumps(redact_data(data), ensure_ascii=False, separators=(",", ":"), default=str)
    return ServerSentEvent(data=text, id=str(event.id), event=name)


@router.get("/runs/{run_id}", summary="Live progress of a run (server-sent events)")
async def run_events(
    request: Request,
    run_id: str,
    _who: Annotated[Principal, Depends(require(VIEWER))],
    last_event_id_header: Annotated[str | None, Header(alias="Last-Event-ID")] = None,
    last_event_id: int | None = None,
) -> EventSourceResponse:
    """The run's history as it grows: every event after ``Last-Event-ID`` (all of them without it).

    Each event is named after its kind (``step_ok``, ``run_waiting``, ``review_decided``...)
    and carries the run's status; the stream ends after the run ends.
    """
    state = state_of(request)
    client = state.client
    run = await client.get(run_id)
    after = _last_id(last_event_id_header, last_event_id) or 0
    found = run.run_id

    async def stream() -> AsyncIterator[ServerSentEvent]:
        nonlocal after
        loop = asyncio.get_running_loop()
        ends = loop.time() + state.settings.stream_seconds
        while loop.time() < ends:
            events = await events_after(client.store, after, run_id=found, limit=500)
            current = await client.store.get_run(found)
            status = current.status.value if current is not None else "gone"
            for event in events:
                after = event.id
                yield _sse(event, event.kind, {"status": status})
            if current is None or (current.status.terminal and not events):
                return
            if not events:
                await asyncio.sleep(state.settings.poll_seconds)

    return EventSourceResponse(stream(), ping=_PING_SECONDS, headers={"Cache-Control": "no-store"})


@router.get("/reviews", summary="Live review inbox (server-sent events)")
async def review_events(
    request: Request,
    _who: Annotated[Principal, Depends(require(VIEWER))],
    last_event_id_header: Annotated[str | None, Header(alias="Last-Event-ID")] = None,
    last_event_id: int | None = None,
) -> EventSourceResponse:
    """Review items created, decided, warned about, escalated, expired, cancelled or claimed.

    Events are named ``created``, ``decided``, ``approval``, ``sla_warning``,
    ``escalated``, ``expired``, ``cancelled`` and ``claimed``. Without ``Last-Event-ID``
    the stream starts with what happens from now on.
    """
    state = state_of(request)
    store = state.client.store
    await state.client.engine.open()
    start = _last_id(last_event_id_header, last_event_id)
    after = start if start is not None else await newest_event_id(store)
    kinds = list(REVIEW_EVENTS)

    async def stream() -> AsyncIterator[ServerSentEvent]:
        nonlocal after
        loop = asyncio.get_running_loop()
        ends = loop.time() + state.settings.stream_seconds
        while loop.time() < ends:
            events = await events_after(store, after, kinds=kinds, limit=500)
            for event in events:
                after = event.id
                yield _sse(event, REVIEW_EVENTS[event.kind])
            if not events:
                await asyncio.sleep(state.settings.poll_seconds)

    return EventSourceResponse(stream(), ping=_PING_SECONDS, headers={"Cache-Control": "no-store"})
