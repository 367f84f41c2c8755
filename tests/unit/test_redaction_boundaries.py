"""Secrets are masked where data leaves: review webhooks and hooks, and what ``Client`` returns."""

from __future__ import annotations

import io
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from orchestrate import Client, RunStatus, StepStatus
from orchestrate.errors import RunFailedError
from orchestrate.models import Secret
from orchestrate.observe import configure_logging, get_logger
from orchestrate.review import _notify
from orchestrate.store import InMemoryStore
from orchestrate.store.base import Event, ReviewRecord, RunRecord, StepRecord

KEY = "sk-proj-B0undary0f7heW0rld1234"
"""What an older version stored in clear: found by its format, no ``Secret`` needed."""


class Capture(BaseHTTPRequestHandler):
    bodies: list[bytes]

    def do_POST(self) -> None:
        self.bodies.append(self.rfile.read(int(self.headers["Content-Length"])))
        self.send_response(204)
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def webhook() -> Iterator[tuple[str, list[bytes]]]:
    bodies: list[bytes] = []
    handler = type("Handler", (Capture,), {"bodies": bodies})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook", bodies
    server.shutdown()
    server.server_close()


def leaky_item(secret: Secret) -> ReviewRecord:
    return ReviewRecord(
        review_id="rv-1",
        run_id="r1",
        workflow="wf",
        step_key="draft",
        gate_key="review:draft",
        payload={"draft": f"the vendor said: invalid key {KEY}", "creds": {"password": "pa55word"}},
        meta={"error": {"message": f"401 Bearer {secret.reveal()}"}},
    )


async def test_webhook_bodies_and_hooks_get_the_item_with_secrets_masked(webhook: tuple[str, list[bytes]]) -> None:
    url, bodies = webhook
    secret = Secret("vendor-0a1b2c3d4e5f", name="vendor_key")
    item = leaky_item(secret)
    heard: list[ReviewRecord] = []

    told = await _notify.notify(
        InMemoryStore(),
        get_logger(),
        [url, lambda *, event, review: heard.append(review)],
        event="review_created",
        review=item,
        now=1.0,
    )

    assert told == 2
    (body,) = bodies
    assert KEY not in body.decode() and secret.reveal() not in body.decode() and "pa55word" not in body.decode()
    sent = json.loads(body)
    assert sent["review"]["payload"] == {
        "draft": "the vendor said: invalid key [REDACTED]",
        "creds": {"password": "[REDACTED]"},
    }
    assert sent["review"]["meta"]["error"]["message"] == "401 Bearer [REDACTED:vendor_key]"
    (review,) = heard
    assert review.payload["draft"] == "the vendor said: invalid key [REDACTED]"
    assert item.payload["draft"].endswith(KEY)  # the caller's record is not changed


async def test_a_failed_notification_records_and_logs_its_error_masked() -> None:
    store = InMemoryStore()
    stream = io.StringIO()

    def hook(**_: Any) -> None:
        raise ConnectionError(f"hook refused Authorization: Bearer {KEY}")

    configure_logging("warning", stream=stream)
    try:
        async with Client(store):
            told = await _notify.notify(
                store,
                get_logger(),
                [hook],
                event="review_created",
                review=leaky_item(Secret("notify-7g8h9i0j")),
                now=1.0,
            )
            (event,) = await store.list_events("r1")
    finally:
        configure_logging("warning")

    assert told == 0
    assert (
        event.kind == "review_notify_failed" and event.data["error"] == "hook refused Authorization: Bearer [REDACTED]"
    )
    assert KEY not in stream.getvalue() and "review_notify_failed" in stream.getvalue()


async def test_client_masks_errors_and_events_an_older_version_stored_in_clear() -> None:
    store = InMemoryStore()
    error = {"type": "x.BadRequestError", "name": "BadRequestError", "message": f"HTTP 401: key {KEY}", "step": "ask"}
    async with Client(store) as client:
        await store.create_run(
            RunRecord(run_id="old", workflow="wf", version="1", status=RunStatus.DEAD, input={"q": "hi"}, error=error)
        )
        await store.record_step(
            StepRecord(
                run_id="old",
                step_key="ask",
                name="ask",
                status=StepStatus.FAILED,
                error=error,
                meta={"fallbacks_failed": [{"fallback": "value", "error": f"Bearer {KEY}"}]},
            ),
            fence=None,
            now=1.0,
        )
        await store.append_event(
            Event(run_id="old", kind="step_retry_scheduled", at=1.0, step_key="ask", data={"error": error, "delay": 1})
        )
        await store.create_review(
            ReviewRecord(
                review_id="rv-old",
                run_id="old",
                workflow="wf",
                step_key="flag:ask",
                gate_key="flag:ask",
                payload={"q": "hi"},
                meta={"error": error},
            )
        )

        returned: list[Any] = [
            await client.get("old"),
            await client.list(),
            await client.dead_letters(),
            await client.detail("old"),
            await client.list_reviews(status=None),
            await client.get_review("rv-old"),
        ]
        with pytest.raises(RunFailedError) as failed:
            await client.result("old")
        stored = await store.get_run("old")

    text = repr(returned)
    assert KEY not in text and "HTTP 401: key [REDACTED]" in text and "Bearer [REDACTED]" in text
    assert KEY not in str(failed.value) and KEY not in repr(failed.value.run)
    detail = returned[3]
    assert detail.steps[0].error["message"] == "HTTP 401: key [REDACTED]"
    assert detail.events[0].data["error"]["message"] == "HTTP 401: key [REDACTED]"
    assert detail.run.input == {"q": "hi"} and detail.run.status is RunStatus.DEAD
    assert stored is not None and KEY in stored.error["message"]  # what is stored is left as it is
