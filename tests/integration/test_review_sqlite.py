"""Review gates on a real SQLite store, and notifications POSTed to a real local HTTP server."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from orchestrate import Client, Engine, RunStatus, Step, Workflow
from orchestrate.review import APPROVERS, Escalate, HumanReviewGate, ReviewStatus
from orchestrate.review._notify import WEBHOOK_ENV
from orchestrate.store import open_store
from orchestrate.testing import FakeClock


class Hooks:
    """A webhook receiver on 127.0.0.1: keeps every JSON body POSTed to it."""

    def __init__(self, status: int = 204) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.status = status
        hooks = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers["Content-Length"])
                hooks.bodies.append(
                    {"path": self.path, "type": self.headers["Content-Type"], **json.loads(self.rfile.read(length))}
                )
                self.send_response(hooks.status)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/reviews"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def events(self) -> list[str]:
        return [b["event"] for b in self.bodies]


@pytest.fixture(autouse=True)
def _no_approval_checks_from_elsewhere() -> Iterator[None]:
    # Approval checks are process-wide per role: an example imported by another test may
    # have registered one for a role used here.
    saved = dict(APPROVERS)
    APPROVERS.clear()
    yield
    APPROVERS.clear()
    APPROVERS.update(saved)


@pytest.fixture
def hooks() -> Iterator[Hooks]:
    server = Hooks()
    server.thread.start()
    yield server
    server.server.shutdown()
    server.server.server_close()
    server.thread.join()


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'reviews.db'}"


def _intake(gate: HumanReviewGate) -> Workflow:
    return Workflow(
        "intake",
        [
            Step("summarise", lambda form: {"patient": form["patient"], "summary": "fracture, left wrist"}, gate=gate),
            Step("update_record", lambda s: f"EHR <- {s['patient']}: {s['summary']}"),
        ],
        version="1",
    )


async def test_a_parked_run_survives_the_process_and_resumes_after_two_roles_approve(url: str) -> None:
    wf = _intake(HumanReviewGate(required_approvals=["medical_reviewer", "quality_assurance"], timeout=3600))
    async with Client(url, workflows=[wf]) as first:
        parked = await first.run(wf, {"patient": "P-7"})
        assert parked.status is RunStatus.WAITING
    # A second client (another process would do the same): nothing of the run was in memory.
    async with Client(url) as reviewer:
        (item,) = await reviewer.list_reviews(role="medical_reviewer")
        assert item.run_id == parked.run_id and item.payload["patient"] == "P-7"
        await reviewer.approve(item.review_id, by="dr_okafor", role="medical_reviewer")
        partly = await reviewer.get(parked.run_id)
        assert partly.status is RunStatus.WAITING and partly.wake_at == parked.wake_at  # not due yet
        await reviewer.edit(
            item.review_id,
            {"patient": "P-7", "summary": "fracture, right wrist"},
            by="qa_lee",
            role="quality_assurance",
        )
        due = await reviewer.get(parked.run_id)
        assert due.wake_at is not None and due.wake_at < parked.wake_at  # due now
    async with Client(url, workflows=[wf]) as worker:
        await worker.engine.work(until_idle=True, poll_seconds=0.05)
        done = await worker.get(parked.run_id)
        assert done.status is RunStatus.SUCCEEDED and done.output == "EHR <- P-7: fracture, right wrist"
        stored = await worker.get_review(item.review_id)
        assert [a["role"] for a in stored.approvals] == ["medical_reviewer", "quality_assurance"]
        assert stored.approvals[1]["changes"]["summary"]["before"] == "fracture, left wrist"
        kinds = [e.kind for e in (await worker.detail(parked.run_id)).events]
        assert kinds.count("review_decided") == 1 and kinds.count("review_approval_recorded") == 1


async def test_webhooks_hear_of_new_items_warnings_and_escalations(url: str, hooks: Hooks) -> None:
    clock = FakeClock()
    gate = HumanReviewGate(
        roles=["triage_nurse"],
        timeout=300,
        on_timeout=Escalate("charge_nurse", timeout=120),
        notify=hooks.url,
    )
    wf = _intake(gate)
    async with Client(engine=Engine(open_store(url), clock=clock), workflows=[wf]) as client:
        parked = await client.run(wf, {"patient": "P-9"})
        assert hooks.events() == ["review_created"]
        first = hooks.bodies[0]
        assert first["path"] == "/hooks/reviews" and first["type"] == "application/json"
        assert first["review"]["run_id"] == parked.run_id and first["review"]["roles"] == ["triage_nurse"]
        assert first["review"]["payload"] == {"patient": "P-9", "summary": "fracture, left wrist"}

        clock.advance(240)
        await client.resume(parked.run_id)
        clock.advance(60)
        await client.resume(parked.run_id)
        assert hooks.events() == ["review_created", "review_sla_warning", "review_escalated"]
        escalated = hooks.bodies[2]["review"]
        assert escalated["roles"] == ["charge_nurse"] and escalated["level"] == 1 and escalated["priority"] == "urgent"

        for _ in range(3):  # more wakes fire nothing twice
            await client.resume(parked.run_id)
        assert hooks.events().count("review_escalated") == 1

        await client.approve(escalated["review_id"], by="cn_ade", role="charge_nurse")
        assert (await client.resume(parked.run_id)).status is RunStatus.SUCCEEDED


async def test_the_process_wide_webhook_and_a_failing_one(
    url: str, hooks: Hooks, monkeypatch: pytest.MonkeyPatch
) -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}/gone"
    monkeypatch.setenv(WEBHOOK_ENV, hooks.url)
    wf = _intake(HumanReviewGate(notify=dead))
    async with Client(url, workflows=[wf]) as client:
        parked = await client.run(wf, {"patient": "P-1"})
        assert parked.status is RunStatus.WAITING  # a dead webhook never fails the run
        assert hooks.events() == ["review_created"]
        (failed,) = [e for e in (await client.detail(parked.run_id)).events if e.kind == "review_notify_failed"]
        assert failed.data["target"] == dead and failed.data["event"] == "review_created"


async def test_a_webhook_answering_500_is_recorded_as_failed(url: str) -> None:
    server = Hooks(status=500)
    server.thread.start()
    try:
        wf = _intake(HumanReviewGate(notify=server.url))
        async with Client(url, workflows=[wf]) as client:
            parked = await client.run(wf, {"patient": "P-2"})
            assert len(server.bodies) == 2  # tried twice
            kinds = [e.kind for e in (await client.detail(parked.run_id)).events]
            assert "review_notify_failed" in kinds
    finally:
        server.server.shutdown()
        server.server.server_close()
        server.thread.join()


async def test_review_items_survive_reopening_the_store(url: str) -> None:
    wf = _intake(HumanReviewGate(roles=["doctor"], priority="urgent", timeout=600))
    async with Client(url, workflows=[wf]) as client:
        parked = await client.run(wf, {"patient": "P-5"})
        (before,) = await client.list_reviews(run_id=parked.run_id)
    async with Client(url) as again:
        after = await again.get_review(before.review_id)
        assert after == before and after.status is ReviewStatus.PENDING
        stats = await again.review_stats()
        assert stats.pending == 1 and stats.gates == 1
