"""Step quality, feedback and alerts over HTTP, on memory, SQLite and PostgreSQL.

A fraud check whose model stops answering falls back; a fallback-rate monitor evaluated
from the store fires a durable alert that diverts the step until an operator
acknowledges it through the API.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from orchestrate import Client, Fallback, Step, Workflow
from orchestrate.observe.alerts import AlertEvaluator
from orchestrate.observe.monitors import Monitor, Threshold
from orchestrate.server import ServerSettings, create_app, create_token
from orchestrate.server._auth import create_token as create_at
from orchestrate.store._access_sql import access_for
from tests.integration.test_server_api import CANARY, ROLES, Env
from tests.postgres import in_schema

down = {"now": False}


def fraud_check(application: int) -> dict[str, Any]:
    if down["now"]:
        raise TimeoutError("the fraud model did not answer")
    return {"decision": "approve", "confidence": 0.9}


LOANS = Workflow("loans", [Step("fraud_check", fraud_check, fallback=Fallback.value({"decision": "manual"}))])
MONITOR = Monitor("fraud_check", "fallback_rate", Threshold(above=0.5), window=10, action="fallback")


@pytest.fixture(params=["memory", "sqlite", "postgres"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "memory":
        yield "memory://"
    elif request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'quality.db'}"
    else:
        yield from in_schema()


@pytest.fixture
async def env(store_url: str) -> AsyncIterator[Env]:
    client = Client(store_url, workflows=[LOANS])
    await client.engine.open()
    made = Env(client, create_app(client, settings=ServerSettings(stream_seconds=0.3)))
    access = access_for(client.store)
    for who, roles in ROLES.items():
        if who == "expired":
            token, _ = await create_at(access, name=who, roles=roles, expires_in=1, now=time.time() - 60)
        else:
            token, _ = await create_token(client.store, name=who, roles=roles)
        made.tokens[who] = token
    down["now"] = False
    try:
        yield made
    finally:
        down["now"] = False
        await client.engine.close()


async def loans(env: Env, *, ok: int, failing: int) -> list[str]:
    """``ok`` runs the model answers, then ``failing`` runs it does not (they fall back)."""
    ids = []
    for i in range(ok + failing):
        down["now"] = i >= ok
        ids.append((await env.client.run(LOANS, i)).run_id)
    down["now"] = False
    return ids


async def fired(env: Env) -> str:
    """Ten good runs, ten that fall back, and the alert the monitor fires: its id."""
    await loans(env, ok=10, failing=10)
    evaluator = AlertEvaluator(env.client.store, [MONITOR], sinks=[])
    evaluator.attach(env.client.engine, ttl_seconds=0)
    (alert,) = await evaluator.evaluate()
    return alert.alert_id


async def test_step_results_and_stats_per_window(env: Env) -> None:
    ids = await loans(env, ok=10, failing=10)
    async with env.http() as http:
        answer = await http.get("/api/v1/steps/fraud_check/results?last=5", headers=env.headers("viewer"))
        assert answer.status_code == 200, answer.text
        results = answer.json()
        assert [r["run_id"] for r in results] == ids[::-1][:5]  # newest first
        assert {r["fallback"] for r in results} == {"value"}
        assert all(r["workflow"] == "loans" and r["latency_ms"] is not None for r in results)
        other = await http.get("/api/v1/steps/fraud_check/results?workflow=other", headers=env.headers("viewer"))
        assert other.json() == []
        stats = (await http.get("/api/v1/steps/fraud_check/stats?window=10", headers=env.headers("viewer"))).json()
        assert [w["executions"] for w in stats] == [10, 10]  # oldest window first
        assert [w["fallback_rate"] for w in stats] == [0.0, 1.0]
        assert stats[0]["confidence_mean"] == pytest.approx(0.9)
        assert stats[0]["latency_p50_ms"] <= stats[0]["latency_p95_ms"]
        bad = await http.get("/api/v1/steps/fraud_check/results?last=0", headers=env.headers("viewer"))
        assert bad.status_code == 400
        assert bad.headers["content-type"] == "application/problem+json"
        assert "last must be between 1 and" in bad.json()["detail"]
        anonymous = await http.get("/api/v1/steps/fraud_check/stats")
        assert anonymous.status_code == 401


async def test_feedback_is_given_as_the_token_and_audited(env: Env) -> None:
    (run_id,) = await loans(env, ok=1, failing=0)
    async with env.http() as http:
        body = {"outcome": "defaulted", "score": 0.0, "step": "fraud_check", "data": {"note": f"key {CANARY}"}}
        given = await http.post(f"/api/v1/runs/{run_id}/feedback", json=body, headers=env.headers("operator"))
        assert given.status_code == 201, given.text
        entry = given.json()
        # Who gave it is the token's principal; a secret in its data never comes back.
        assert entry["by"] == "operator"
        assert entry["outcome"] == "defaulted" and entry["step"] == "fraud_check"
        assert CANARY not in given.text
        named = await http.post(
            f"/api/v1/runs/{run_id}/feedback", json={"label": "ok", "by": "someone"}, headers=env.headers("admin")
        )
        assert named.status_code == 422  # `by` is not the body's to say
        assert "by" in named.json()["detail"]
        empty = await http.post(f"/api/v1/runs/{run_id}/feedback", json={}, headers=env.headers("operator"))
        assert empty.status_code == 400
        assert "outcome=, score= or label=" in empty.json()["detail"]
        nowhere = "/api/v1/runs/no-such-run/feedback"
        missing = await http.post(nowhere, json={"label": "x"}, headers=env.headers("admin"))
        assert missing.status_code == 404
        viewer = await http.post(f"/api/v1/runs/{run_id}/feedback", json={"label": "x"}, headers=env.headers("viewer"))
        assert viewer.status_code == 403
        listed = await http.get(f"/api/v1/feedback?run_id={run_id}", headers=env.headers("viewer"))
        assert [e["feedback_id"] for e in listed.json()] == [entry["feedback_id"]]
        by_workflow = await http.get("/api/v1/feedback?workflow=loans", headers=env.headers("viewer"))
        assert len(by_workflow.json()) == 1
        assert CANARY not in listed.text
    events = [e.kind for e in (await env.client.detail(run_id)).events]
    assert events[-1] == "feedback_recorded"
    trail = await access_for(env.client.store).list_audit(limit=1000)
    actions = [(a.principal, a.action, a.target, a.outcome) for a in trail if a.action == "run.feedback"]
    assert ("operator", "run.feedback", run_id, 200) in actions
    assert ("admin", "run.feedback", "no-such-run", 404) in actions


async def test_an_alert_is_listed_and_acknowledged_as_the_token(env: Env) -> None:
    alert_id = await fired(env)
    # The alert diverts the step to its fallback though the model answers again.
    assert (await env.client.run(LOANS, 98)).output == {"decision": "manual"}
    url = f"/api/v1/alerts/{quote(alert_id, safe='')}/acknowledge"
    async with env.http() as http:
        firing = await http.get("/api/v1/alerts?state=firing", headers=env.headers("viewer"))
        assert firing.status_code == 200, firing.text
        (alert,) = firing.json()
        assert alert["alert_id"] == alert_id
        assert (alert["monitor"], alert["step"], alert["state"], alert["action"]) == (
            "fraud_check.fallback_rate",
            "fraud_check",
            "firing",
            "fallback",
        )
        assert alert["diverting"] is True and alert["value"] == 1.0 and alert["reason"]
        refused = await http.post(url, headers=env.headers("viewer"))
        assert refused.status_code == 403
        assert (await env.client.alerts())[0].state.value == "firing"
        acked = await http.post(url, headers=env.headers("operator"))
        assert acked.status_code == 200, acked.text
        assert (acked.json()["state"], acked.json()["acked_by"], acked.json()["diverting"]) == (
            "acknowledged",
            "operator",
            False,
        )
        assert (await http.get("/api/v1/alerts?state=firing", headers=env.headers("viewer"))).json() == []
        query = "/api/v1/alerts?state=acknowledged&workflow=loans"
        listed = (await http.get(query, headers=env.headers("viewer"))).json()
        assert [a["alert_id"] for a in listed] == [alert_id]
        unknown = await http.post("/api/v1/alerts/loans%3Anope%231/acknowledge", headers=env.headers("operator"))
        assert unknown.status_code == 404
        assert unknown.headers["content-type"] == "application/problem+json"
        assert unknown.json()["detail"] == "no alert 'loans:nope#1'; list them with GET /api/v1/alerts"
        bad = await http.get("/api/v1/alerts?state=loud", headers=env.headers("viewer"))
        assert bad.status_code == 400
        assert "unknown alert state 'loud'" in bad.json()["detail"]
    # The acknowledgement lifted the action: the step runs again.
    assert (await env.client.run(LOANS, 99)).output == {"decision": "approve", "confidence": 0.9}
    trail = await access_for(env.client.store).list_audit(limit=1000)
    acks = [(a.principal, a.outcome) for a in trail if a.action == "alert.acknowledge"]
    assert acks == [("operator", 200), ("operator", 404)]
