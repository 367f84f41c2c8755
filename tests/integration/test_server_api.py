"""The HTTP API through ``httpx.ASGITransport``: every route, on memory, SQLite and PostgreSQL.

Runs are driven by the test (``Client.resume``), not by a worker in the app, so that
what each request finds is known.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from orchestrate import Client, Step, Workflow
from orchestrate.models import Secret
from orchestrate.review import HumanReviewGate
from orchestrate.server import ServerSettings, create_app, create_token, revoke_token
from orchestrate.server._auth import create_token as create_at
from orchestrate.store._access_sql import access_for
from tests.postgres import in_schema

CANARY = "canary-Zq81xPw0RvLm33Tt"
SECRET = Secret(CANARY, name="canary")


def draft(text: Any) -> dict[str, Any]:
    return {"text": f"draft for {text}", "confidence": 0.42}


def send(reply: dict[str, Any]) -> dict[str, Any]:
    return {"sent": reply["text"]}


def leak(value: Any) -> dict[str, Any]:
    # A step that echoes a secret into its output and its error: the API must mask both.
    raise RuntimeError(f"upstream refused key {CANARY}")


REPLY = Workflow("reply", [Step("draft", draft, gate=HumanReviewGate(roles=["editor"])), Step("send", send)])
BROKEN = Workflow("broken", [Step("leak", leak)])

PRINCIPALS = ("none", "expired", "revoked", "viewer", "operator", "reviewer_in", "reviewer_out", "admin")
ROLES = {
    "viewer": ["viewer"],
    "operator": ["operator"],
    "admin": ["admin"],
    "reviewer_in": ["editor"],
    "reviewer_out": ["legal"],
    "expired": ["admin", "editor"],
    "revoked": ["admin", "editor"],
}


@dataclass
class Env:
    """An app over a client, with a token per kind of principal."""

    client: Client
    app: Any
    tokens: dict[str, str] = field(default_factory=dict)

    def headers(self, who: str) -> dict[str, str]:
        token = self.tokens.get(who)
        return {"Authorization": f"Bearer {token}"} if token else {}

    def http(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=httpx.ASGITransport(app=self.app), base_url="http://127.0.0.1")

    async def waiting_run(self, text: str = "hello") -> tuple[str, str]:
        """A run of ``reply`` parked at its gate: ``(run_id, review_id)``."""
        run = await self.client.run(REPLY, text)
        items = await self.client.list_reviews(run_id=run.run_id)
        return run.run_id, items[0].review_id

    async def dead_run(self) -> str:
        return (await self.client.run(BROKEN, {"key": CANARY})).run_id


async def make_env(url: str, settings: ServerSettings | None = None) -> Env:
    client = Client(url, workflows=[REPLY, BROKEN])
    await client.engine.open()
    env = Env(client, create_app(client, settings=settings or ServerSettings(stream_seconds=0.3)))
    access = access_for(client.store)
    for who, roles in ROLES.items():
        if who == "expired":
            token, _ = await create_at(access, name=who, roles=roles, expires_in=1, now=time.time() - 60)
        else:
            token, record = await create_token(client.store, name=who, roles=roles)
            if who == "revoked":
                await revoke_token(client.store, record.token_id)
        env.tokens[who] = token
    return env


@pytest.fixture(params=["memory", "sqlite", "postgres"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "memory":
        yield "memory://"
    elif request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'api.db'}"
    else:
        yield from in_schema()


@pytest.fixture
async def env(store_url: str) -> AsyncIterator[Env]:
    made = await make_env(store_url)
    try:
        yield made
    finally:
        await made.client.engine.close()


async def test_a_review_decided_over_http_resumes_the_run(env: Env) -> None:
    run_id, review_id = await env.waiting_run()
    async with env.http() as http:
        listed = (await http.get("/api/v1/reviews", headers=env.headers("viewer"))).json()
        assert [i["review_id"] for i in listed["items"]] == [review_id]
        assert listed["items"][0]["confidence"] == 0.42
        approved = await http.post(
            f"/api/v1/reviews/{review_id}/approve", json={"comment": "fine"}, headers=env.headers("reviewer_in")
        )
        assert approved.status_code == 200, approved.text
        # The reviewer's identity is the token's principal, and its role the token's.
        assert approved.json()["approvals"][0]["by"] == "reviewer_in"
        assert approved.json()["approvals"][0]["role"] == "editor"
        again = await http.post(f"/api/v1/reviews/{review_id}/approve", headers=env.headers("reviewer_in"))
        assert again.status_code == 409
        assert again.headers["content-type"] == "application/problem+json"
        assert "already approved" in again.json()["detail"]
    assert (await env.client.resume(run_id)).output == {"sent": "draft for hello"}


async def test_reject_needs_a_reason_and_edit_records_the_change(env: Env) -> None:
    _, first = await env.waiting_run("a")
    run_b, second = await env.waiting_run("b")
    async with env.http() as http:
        no_reason = await http.post(f"/api/v1/reviews/{first}/reject", json={}, headers=env.headers("reviewer_in"))
        assert no_reason.status_code == 422
        assert "reason" in no_reason.json()["detail"]
        rejected = await http.post(
            f"/api/v1/reviews/{first}/reject", json={"reason": "off topic"}, headers=env.headers("reviewer_in")
        )
        assert rejected.json()["status"] == "rejected"
        assert rejected.json()["reason"] == "off topic"
        edited = await http.post(
            f"/api/v1/reviews/{second}/edit",
            json={"payload": {"text": "better", "confidence": 1.0}},
            headers=env.headers("reviewer_in"),
        )
        assert edited.status_code == 200, edited.text
        assert edited.json()["decision"] == "edited"
        assert edited.json()["approvals"][0]["changes"]["text"] == {"before": "draft for b", "after": "better"}
    assert (await env.client.resume(run_b)).output == {"sent": "better"}


async def test_claim_marks_who_works_on_an_item(env: Env) -> None:
    _, review_id = await env.waiting_run()
    async with env.http() as http:
        claimed = await http.post(f"/api/v1/reviews/{review_id}/claim", headers=env.headers("reviewer_in"))
        assert claimed.json()["claimed_by"] == "reviewer_in"
        item = await http.get(f"/api/v1/reviews/{review_id}", headers=env.headers("viewer"))
        assert item.json()["claimed_by"] == "reviewer_in"


async def test_runs_start_idempotently_list_by_page_and_show_their_graph(env: Env) -> None:
    op = env.headers("operator")
    async with env.http() as http:
        body = {"workflow": "reply", "input": "x", "idempotency_key": "order-7"}
        first = await http.post("/api/v1/runs", json=body, headers=op)
        second = await http.post("/api/v1/runs", json=body, headers=op)
        assert (first.status_code, second.status_code) == (201, 200)
        assert first.json()["run_id"] == second.json()["run_id"]
        unknown = await http.post("/api/v1/runs", json={"workflow": "nope"}, headers=op)
        assert unknown.status_code == 404
        assert "nope" in unknown.json()["detail"]
        for i in range(4):
            await env.waiting_run(str(i))
        seen: list[str] = []
        cursor = None
        while True:
            params: dict[str, Any] = {"limit": 2, "workflow": "reply"}
            if cursor:
                params["cursor"] = cursor
            page = (await http.get("/api/v1/runs", params=params, headers=op)).json()
            seen += [r["run_id"] for r in page["items"]]
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert len(seen) == len(set(seen)) == 5
        waiting = (await http.get("/api/v1/runs", params={"status": "waiting"}, headers=op)).json()["items"]
        assert len(waiting) == 4
        bad = await http.get("/api/v1/runs", params={"status": "sleeping"}, headers=op)
        assert bad.status_code == 400
        assert "unknown run status 'sleeping'" in bad.json()["detail"]
        view = (await http.get(f"/api/v1/runs/{waiting[0]['run_id']}", headers=op)).json()
        assert view["status"] == "waiting"
        assert [s["step_key"] for s in view["steps"]] == ["draft"]
        assert [n["label"].split(" (")[0] for n in view["graph"]["nodes"]] == [
            "start: reply",
            "step draft",
            "step send",
            "end",
        ]
        assert view["graph"]["path"] == ["n0", "n1"]
        assert view["reviews"][0]["status"] == "pending"


async def test_cancel_resume_signal_retry_and_replay(env: Env) -> None:
    op = env.headers("operator")
    run_id, _ = await env.waiting_run()
    dead = await env.dead_run()
    async with env.http() as http:
        resumed = await http.post(f"/api/v1/runs/{run_id}/resume", headers=op)
        assert resumed.status_code == 200, resumed.text
        signal = await http.post(f"/api/v1/runs/{run_id}/signals", json={"key": "poke", "value": 1}, headers=op)
        assert signal.status_code == 200
        twice = await http.post(f"/api/v1/runs/{run_id}/signals", json={"key": "poke", "value": 2}, headers=op)
        assert twice.status_code == 409
        cancelled = await http.post(f"/api/v1/runs/{run_id}/cancel", json={"reason": "duplicate"}, headers=op)
        assert cancelled.json()["status"] == "cancelled"
        again = await http.post(f"/api/v1/runs/{run_id}/cancel", headers=op)
        assert again.status_code == 409
        dlq = (await http.get("/api/v1/dlq", headers=op)).json()["items"]
        assert [r["run_id"] for r in dlq] == [dead]
        retried = await http.post(f"/api/v1/runs/{dead}/retry", headers=op)
        assert retried.status_code == 200, retried.text
        assert retried.json()["parent_run_id"] == dead
        assert (await http.get("/api/v1/dlq", headers=op)).json()["items"] == []
        replayed = await http.post(
            f"/api/v1/runs/{dead}/replay", json={"from_step": "leak", "input": {"k": 1}}, headers=op
        )
        assert replayed.status_code == 201, replayed.text
        missing = await http.post(f"/api/v1/runs/{dead}/replay", json={"from_step": "nope"}, headers=op)
        assert missing.status_code == 400
        assert "has no recorded step 'nope'" in missing.json()["detail"]
        not_dead = await http.post(f"/api/v1/dlq/{run_id}/replay", headers=op)
        assert not_dead.status_code == 409


async def test_other_reads(env: Env) -> None:
    viewer = env.headers("viewer")
    await env.waiting_run()
    async with env.http() as http:
        workflows = (await http.get("/api/v1/workflows", headers=viewer)).json()
        assert {w["name"] for w in workflows} == {"reply", "broken"}
        stats = (await http.get("/api/v1/stats/reviews", headers=viewer)).json()
        assert stats["pending"] == 1
        usage = (await http.get("/api/v1/usage", headers=viewer)).json()
        assert usage["by_workflow"]["reply"]["runs"] == 1
        assert (await http.get("/healthz")).json() == {"status": "ok", "schema_version": None, "detail": None}
        ready = (await http.get("/readyz")).json()
        assert ready["status"] == "ok" and ready["schema_version"] >= 5
        metrics = await http.get("/metrics", headers=viewer)
        assert metrics.status_code == 200 and metrics.headers["content-type"].startswith("text/plain")
        spec = (await http.get("/openapi.json")).json()
        assert "/api/v1/reviews/{review_id}/approve" in spec["paths"]


async def test_every_response_carries_the_security_headers_and_refuses_other_hosts(env: Env) -> None:
    async with env.http() as http:
        for response in (
            await http.get("/healthz"),
            await http.get("/api/v1/runs"),
            await http.get("/api/v1/nope", headers=env.headers("viewer")),
        ):
            csp = response.headers["content-security-policy"]
            assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp
            assert "unsafe-inline" not in csp
            assert response.headers["x-frame-options"] == "DENY"
        rebound = await http.get("/api/v1/runs", headers={**env.headers("admin"), "Host": "attacker.example"})
        assert rebound.status_code == 400
        assert "attacker.example" in rebound.json()["detail"]


async def test_a_body_over_the_limit_is_refused(store_url: str) -> None:
    env = await make_env(store_url, ServerSettings(max_body_bytes=2048))
    try:
        async with env.http() as http:
            big = {"workflow": "reply", "input": "x" * 5000}
            refused = await http.post("/api/v1/runs", json=big, headers=env.headers("operator"))
            assert refused.status_code == 413

            async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: counted as it arrives
                yield b'{"workflow": "reply", "input": "'
                for _ in range(10):
                    yield b"y" * 500
                yield b'"}'

            streamed = await http.post(
                "/api/v1/runs",
                content=chunks(),
                headers={**env.headers("operator"), "Content-Type": "application/json"},
            )
            assert streamed.status_code == 413
            assert await env.client.list() == []
    finally:
        await env.client.engine.close()


async def test_dashboard_sessions_need_the_csrf_token_on_unsafe_methods(env: Env) -> None:
    run_id, review_id = await env.waiting_run()
    async with env.http() as http:
        bad = await http.post("/api/v1/session", json={"token": "orc_nope"})
        assert bad.status_code == 401
        opened = await http.post("/api/v1/session", json={"token": env.tokens["reviewer_in"]})
        assert opened.status_code == 200
        cookie = opened.headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=strict" in cookie.replace("Strict", "strict")
        csrf = opened.json()["csrf"]
        me = await http.get("/api/v1/session")
        assert me.json() == {"principal": "reviewer_in", "roles": ["editor"], "csrf": csrf}
        # A cross-site form post carries the cookie but not the token: refused, nothing decided.
        forged = await http.post(f"/api/v1/reviews/{review_id}/approve")
        assert forged.status_code == 403
        assert "CSRF" in forged.json()["detail"]
        wrong = await http.post(f"/api/v1/reviews/{review_id}/approve", headers={"X-CSRF-Token": csrf[:-1] + "x"})
        assert wrong.status_code == 403
        assert (await env.client.get_review(review_id)).status.value == "pending"
        done = await http.post(f"/api/v1/reviews/{review_id}/approve", headers={"X-CSRF-Token": csrf})
        assert done.status_code == 200, done.text
        out = await http.request("DELETE", "/api/v1/session", headers={"X-CSRF-Token": csrf})
        assert out.status_code == 204
        assert (await http.get("/api/v1/session")).status_code == 401
    assert (await env.client.get(run_id)).status.value == "waiting"


async def test_revoking_a_token_ends_its_sessions(env: Env) -> None:
    token, record = await create_token(env.client.store, name="temp", roles=["viewer"])
    async with env.http() as http:
        assert (await http.post("/api/v1/session", json={"token": token})).status_code == 200
        assert (await http.get("/api/v1/runs")).status_code == 200
        await revoke_token(env.client.store, record.token_id)
        gone = await http.get("/api/v1/runs")
        assert gone.status_code == 401
        assert (await http.get("/api/v1/runs", headers={"Authorization": f"Bearer {token}"})).status_code == 401


async def test_a_reviewer_never_approves_a_run_it_started(store_url: str) -> None:
    env = await make_env(store_url)
    try:
        both, _ = await create_token(env.client.store, name="sam", roles=["operator", "editor"])
        headers = {"Authorization": f"Bearer {both}"}
        async with env.http() as http:
            started = await http.post("/api/v1/runs", json={"workflow": "reply", "input": "mine"}, headers=headers)
            run_id = started.json()["run_id"]
            await env.client.resume(run_id)
            review_id = (await env.client.list_reviews(run_id=run_id))[0].review_id
            own = await http.post(f"/api/v1/reviews/{review_id}/approve", headers=headers)
            assert own.status_code == 403
            assert "may not approve" in own.json()["detail"]
            other = await http.post(f"/api/v1/reviews/{review_id}/approve", headers=env.headers("reviewer_in"))
            assert other.status_code == 200
    finally:
        await env.client.engine.close()


async def test_mutations_are_audited_with_principal_action_and_payload_hash(env: Env) -> None:
    _, review_id = await env.waiting_run()
    async with env.http() as http:
        await http.post(f"/api/v1/reviews/{review_id}/reject", json={"reason": "no"}, headers=env.headers("viewer"))
        await http.post(
            f"/api/v1/reviews/{review_id}/reject", json={"reason": "no"}, headers=env.headers("reviewer_in")
        )
    trail = await access_for(env.client.store).list_audit()
    decided = [(e.principal, e.action, e.target, e.outcome) for e in trail if e.action == "review.reject"]
    assert decided == [("viewer", "review.reject", review_id, 403), ("reviewer_in", "review.reject", review_id, 200)]
    assert all(len(e.payload_hash or "") == 64 for e in trail if e.action == "review.reject")


async def test_canary_secrets_never_leave_the_server(env: Env) -> None:
    dead = await env.dead_run()
    admin = env.headers("admin")
    async with env.http() as http:
        bodies = [
            await http.get(f"/api/v1/runs/{dead}", headers=admin),
            await http.get("/api/v1/runs", params={"q": "broken"}, headers=admin),
            await http.get("/api/v1/dlq", headers=admin),
            await http.get(f"/api/v1/events/runs/{dead}", headers=admin),
            await http.post("/api/v1/runs", json={"workflow": "nope", "input": CANARY}, headers=admin),
            await http.post(f"/api/v1/runs/{dead}/signals", json={"key": CANARY}, headers=admin),
        ]
    view = bodies[0].json()
    assert view["status"] == "dead"
    assert "[REDACTED:canary]" in json.dumps(view)
    for response in bodies:
        assert CANARY not in response.text, response.request.url


async def test_run_events_stream_resumes_after_the_last_event_id(env: Env) -> None:
    run_id, review_id = await env.waiting_run()
    await env.client.approve(review_id, by="someone", role="editor")
    await env.client.resume(run_id)
    async with env.http() as http:
        whole = await http.get(f"/api/v1/events/runs/{run_id}", headers=env.headers("viewer"))
        assert whole.headers["content-type"].startswith("text/event-stream")
        events = _parse(whole.text)
        kinds = [e["event"] for e in events]
        assert kinds[0] == "run_created" and "review_decided" in kinds and kinds[-1] == "run_succeeded"
        middle = events[2]["id"]
        rest = await http.get(
            f"/api/v1/events/runs/{run_id}", headers={**env.headers("viewer"), "Last-Event-ID": middle}
        )
        assert [e["id"] for e in _parse(rest.text)] == [e["id"] for e in events[3:]]


async def test_review_inbox_stream_sends_new_items_and_decisions(env: Env) -> None:
    _, first = await env.waiting_run("one")
    async with env.http() as http:
        start = await http.get("/api/v1/events/reviews", params={"last_event_id": 0}, headers=env.headers("viewer"))
        created = [e for e in _parse(start.text) if e["event"] == "created"]
        assert [json.loads(e["data"])["detail"]["review_id"] for e in created] == [first]
        after = created[-1]["id"]
        await env.client.approve(first, by="someone", role="editor")
        _, second = await env.waiting_run("two")
        more = await http.get("/api/v1/events/reviews", headers={**env.headers("viewer"), "Last-Event-ID": after})
        names = [(e["event"], json.loads(e["data"])["detail"]["review_id"]) for e in _parse(more.text)]
        assert names == [("decided", first), ("created", second)]


def _parse(text: str) -> list[dict[str, str]]:
    """The events of an SSE body (comments and pings left out)."""
    events = []
    for block in text.replace("\r\n", "\n").split("\n\n"):
        fields: dict[str, str] = {}
        for line in block.split("\n"):
            if not line or line.startswith(":"):
                continue
            name, _, value = line.partition(":")
            fields[name] = value[1:] if value.startswith(" ") else value
        if "data" in fields:
            events.append(fields)
    return events


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
async def test_tokens_and_the_audit_persist_hashed_in_the_store(backend: str, tmp_path: Path) -> None:
    urls = in_schema() if backend == "postgres" else iter([f"sqlite:///{tmp_path / 'tokens.db'}"])
    url = next(urls)
    try:
        first = await make_env(url)
        run_id, _ = await first.waiting_run()
        async with first.http() as http:
            assert (await http.post(f"/api/v1/runs/{run_id}/cancel", headers=first.headers("operator"))).is_success
        await first.client.engine.close()
        # Another process (a new client on the same store) knows the same tokens and trail.
        second = Env(Client(url), None)
        second.app = create_app(second.client, settings=ServerSettings())
        async with second.http() as http:
            for who, expected in (("viewer", 200), ("revoked", 401), ("expired", 401)):
                response = await http.get("/api/v1/runs", headers=first.headers(who))
                assert response.status_code == expected, who
        access = access_for(second.client.store)
        tokens = await access.list_tokens()
        assert {t.name for t in tokens} >= set(ROLES)
        stored = json.dumps([t.__dict__ for t in tokens])
        assert not any(token in stored for token in first.tokens.values())  # only hashes are kept
        trail = await access.list_audit()
        assert [(e.principal, e.action, e.target) for e in trail if e.action == "run.cancel"] == [
            ("operator", "run.cancel", run_id)
        ]
        if backend == "postgres":
            from orchestrate.store.postgres import PostgresStore

            store = access._db.store  # type: ignore[attr-defined]
            assert isinstance(store, PostgresStore)
            for statement in ("UPDATE orchestrate_audit SET principal = 'x'", "DELETE FROM orchestrate_audit"):
                with pytest.raises(Exception, match="append-only"):
                    await store._execute("tamper", statement)
            assert len(await access.list_audit()) == len(trail)
        await second.client.engine.close()
    finally:
        for _ in urls:
            pass
