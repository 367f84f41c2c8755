"""Telling people about review items: webhooks (POSTed JSON) and hooks.

A notification never fails the run: a webhook that is down is retried once, then the
failure is logged and recorded in the run's history (``review_notify_failed``).
Notifications are sent by the process that created the item (or gave the warning), right
after the write that made it so; a process killed in between sends none.

What leaves through a webhook or a hook has its secrets masked (every ``Secret`` value of
the process and common credential formats, anywhere in the item), and so has the error
of a failed notification recorded in the run's history.
"""

from __future__ import annotations

import asyncio
import inspect
import os
from collections.abc import Sequence
from typing import Any

from orchestrate._redact import redact, redact_data
from orchestrate.store.base import Event, ReviewRecord, Store

WEBHOOK_ENV = "ORCHESTRATE_REVIEW_WEBHOOK"
"""A webhook URL notified about every gate's items, in addition to the gate's own."""

WEBHOOK_TIMEOUT_SECONDS = 5.0
WEBHOOK_ATTEMPTS = 2


def targets(configured: Sequence[Any]) -> list[Any]:
    """The gate's notifiers plus the process-wide webhook of :data:`WEBHOOK_ENV`."""
    found = list(configured)
    extra = os.environ.get(WEBHOOK_ENV)
    if extra and extra not in found:
        found.append(extra)
    return found


def body(event: str, review: ReviewRecord) -> dict[str, Any]:
    """The JSON a webhook receives (secrets masked)."""
    payload: dict[str, Any] = redact_data({"event": event, "review": review.to_dict()})
    return payload


async def post(url: str, payload: dict[str, Any]) -> None:
    """POST ``payload`` as JSON; retry once on a transport error or a 5xx.

    Raises:
        httpx.HTTPError: the last attempt failed.
    """
    import httpx

    async with httpx.AsyncClient(timeout=WEBHOOK_TIMEOUT_SECONDS) as client:
        for attempt in range(1, WEBHOOK_ATTEMPTS + 1):
            try:
                response = await client.post(url, json=payload)
                if response.status_code < 500 or attempt == WEBHOOK_ATTEMPTS:
                    response.raise_for_status()
                    return
            except httpx.TransportError:
                if attempt == WEBHOOK_ATTEMPTS:
                    raise
            await asyncio.sleep(0.2 * attempt)


async def notify(
    store: Store, log: Any, configured: Sequence[Any], *, event: str, review: ReviewRecord, now: float
) -> int:
    """Send ``event`` about ``review`` to every target; return how many were told."""
    told = 0
    for target in targets(configured):
        try:
            if isinstance(target, str):
                await post(target, body(event, review))
            else:
                result = target(event=event, review=redact_data(review.copy()))
                if inspect.isawaitable(result):
                    await result
            told += 1
        except Exception as exc:  # noqa: BLE001 - a notification never fails the run
            where = redact(target if isinstance(target, str) else getattr(target, "__qualname__", repr(target)))
            error = redact(f"{type(exc).__qualname__}: {exc}")
            log.warning(
                "review_notify_failed",
                run_id=review.run_id,
                review_id=review.review_id,
                notify_event=event,
                target=where,
                error=error,
            )
            await store.append_event(
                Event(
                    run_id=review.run_id,
                    kind="review_notify_failed",
                    at=now,
                    step_key=review.step_key,
                    data={"review_id": review.review_id, "event": event, "target": where, "error": redact(str(exc))},
                )
            )
    return told
