"""The authorization matrix: every route of the app by every kind of principal → the status it gets.

The routes come from ``app.routes``: a route added without a line here fails the test.
Each case runs on a fresh app (a run waiting at a gate for the role ``editor``, a dead
run), so that what one allowed request changes does not decide the next one.
"""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import quote

import pytest
from fastapi.routing import APIRoute
from starlette.routing import Mount, Route

from orchestrate.server import create_app
from orchestrate.store._quality import AlertRecord, AlertState, alert_id
from orchestrate.store._quality_sql import quality_for
from tests.integration.test_server_api import PRINCIPALS, make_env

# access: who may call it. public: anyone; open: the body's token signs in; auth: any valid
# principal; viewer/operator: that rank or above; decide: a reviewer role the item allows.
ROUTES: dict[tuple[str, str], tuple[str, int, Any]] = {
    ("GET", "/healthz"): ("public", 200, None),
    ("GET", "/readyz"): ("public", 200, None),
    ("GET", "/openapi.json"): ("public", 200, None),
    ("GET", "/"): ("public", 200, None),
    ("GET", "/ui"): ("public", 307, None),
    ("GET", "/ui/index.html"): ("public", 200, None),
    ("GET", "/metrics"): ("viewer", 200, None),
    ("POST", "/api/v1/session"): ("open", 200, None),
    ("GET", "/api/v1/session"): ("auth", 200, None),
    ("DELETE", "/api/v1/session"): ("auth", 204, None),
    ("GET", "/api/v1/workflows"): ("viewer", 200, None),
    ("GET", "/api/v1/usage"): ("viewer", 200, None),
    ("GET", "/api/v1/runs"): ("viewer", 200, None),
    ("POST", "/api/v1/runs"): ("operator", 201, {"workflow": "reply", "input": "x"}),
    ("GET", "/api/v1/runs/{run_id}"): ("viewer", 200, None),
    ("POST", "/api/v1/runs/{run_id}/cancel"): ("operator", 200, {"reason": "test"}),
    ("POST", "/api/v1/runs/{dead_id}/retry"): ("operator", 200, None),
    ("POST", "/api/v1/runs/{run_id}/resume"): ("operator", 200, None),
    ("POST", "/api/v1/runs/{dead_id}/replay"): ("operator", 201, {"from_step": "leak"}),
    ("POST", "/api/v1/runs/{run_id}/signals"): ("operator", 200, {"key": "poke", "value": 1}),
    ("GET", "/api/v1/dlq"): ("viewer", 200, None),
    ("POST", "/api/v1/dlq/{dead_id}/replay"): ("operator", 201, None),
    ("GET", "/api/v1/reviews"): ("viewer", 200, None),
    ("GET", "/api/v1/reviews/{review_id}"): ("viewer", 200, None),
    ("POST", "/api/v1/reviews/{review_id}/approve"): ("decide", 200, {"comment": "ok"}),
    ("POST", "/api/v1/reviews/{review_id}/reject"): ("decide", 200, {"reason": "no"}),
    ("POST", "/api/v1/reviews/{review_id}/edit"): ("decide", 200, {"payload": {"text": "fixed"}}),
    ("POST", "/api/v1/reviews/{review_id}/claim"): ("decide", 200, None),
    ("GET", "/api/v1/stats/reviews"): ("viewer", 200, None),
    ("GET", "/api/v1/events/runs/{dead_id}"): ("viewer", 200, None),
    ("GET", "/api/v1/events/reviews"): ("viewer", 200, None),
    ("GET", "/api/v1/steps/{step}/results"): ("viewer", 200, None),
    ("GET", "/api/v1/steps/{step}/stats"): ("viewer", 200, None),
    ("POST", "/api/v1/runs/{run_id}/feedback"): ("operator", 201, {"outcome": "complained", "score": 0.2}),
    ("GET", "/api/v1/feedback"): ("viewer", 200, None),
    ("GET", "/api/v1/alerts"): ("viewer", 200, None),
    ("POST", "/api/v1/alerts/{alert_id}/acknowledge"): ("operator", 200, None),
}

RANK = {"viewer": 1, "operator": 2, "admin": 3, "reviewer_in": 1, "reviewer_out": 1}


def expected(access: str, success: int, who: str) -> int:
    """The status ``who`` gets on a route of ``access``."""
    if access == "public":
        return success
    if who in ("none", "expired", "revoked"):
        return 401
    if access in ("open", "auth"):
        return success
    if access == "decide":
        return success if who == "reviewer_in" else 403
    need = {"viewer": 1, "operator": 2}[access]
    return success if RANK[who] >= need else 403


def _flat(routes: Any) -> list[Any]:
    """The routes, those of included routers in their place (FastAPI keeps an included
    router as one entry that holds the router's own routes)."""
    out: list[Any] = []
    for route in routes:
        inner = getattr(route, "original_router", None)
        out.extend(_flat(inner.routes) if inner is not None else [route])
    return out


def _app_routes() -> set[tuple[str, str]]:
    app = create_app("memory://")
    found: set[tuple[str, str]] = set()
    for route in _flat(app.routes):
        if isinstance(route, APIRoute | Route):
            for method in route.methods or ():
                if method != "HEAD":
                    found.add((method, route.path))
        elif isinstance(route, Mount):
            found.add(("GET", route.path + "/index.html"))
    return found


def _normal(path: str) -> str:
    return path.replace("{dead_id}", "{run_id}")


def test_the_matrix_names_every_route_of_the_app() -> None:
    assert _app_routes() == {(m, _normal(p)) for m, p in ROUTES} - {("GET", "/docs")}


async def _firing_alert(client: Any) -> str:
    """An alert of the ``draft`` step, as a monitor's evaluation stores it: its id."""
    now = time.time()
    alert = AlertRecord(
        alert_id=alert_id("reply", "draft.latency_p95", 1),
        workflow="reply",
        monitor="draft.latency_p95",
        step="draft",
        incident=1,
        state=AlertState.FIRING,
        value=2500.0,
        reason="p95 latency 2500 ms is above 2000",
        action="review",
        fired_at=now,
        updated_at=now,
    )
    assert await quality_for(client.store).insert_alert(alert)
    return alert.alert_id


CASES = [(method, path, who) for (method, path) in ROUTES for who in PRINCIPALS]


@pytest.mark.parametrize(("method", "path", "who"), CASES, ids=[f"{m} {p} as {w}" for m, p, w in CASES])
async def test_authorization_matrix(method: str, path: str, who: str) -> None:
    access, success, body = ROUTES[(method, path)]
    env = await make_env("memory://")
    try:
        run_id, review_id = await env.waiting_run()
        dead_id = await env.dead_run()
        alert_id = await _firing_alert(env.client)
        url = path.format(
            run_id=run_id, dead_id=dead_id, review_id=review_id, step="draft", alert_id=quote(alert_id, safe="")
        )
        headers = env.headers(who)
        if access == "open":
            headers = {}
            body = {"token": env.tokens.get(who, "orc_not-a-token")}
        async with env.http() as http:
            response = await http.request(method, url, json=body, headers=headers, follow_redirects=False)
        want = expected(access, success, who)
        assert response.status_code == want, response.text
        if want in (401, 403):
            assert response.headers["content-type"] == "application/problem+json"
            if access not in ("public", "open"):
                # Nothing changed: the run still waits and its review is still pending.
                assert (await env.client.get(run_id)).status.value == "waiting"
                assert (await env.client.get_review(review_id)).status.value == "pending"
                assert (await env.client.alerts())[0].state.value == "firing"
                assert await env.client.list_feedback(run_id=run_id) == []
    finally:
        await env.client.engine.close()
