"""``create_app``: the HTTP API over :class:`~orchestrate.Client`, its live events and the dashboard."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Sequence
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Request, Response
from starlette.routing import BaseRoute

from orchestrate import __version__
from orchestrate.errors import OrchestrateError
from orchestrate.server import _events, _quality, _reviews, _runs
from orchestrate.server._auth import (
    SESSION_COOKIE,
    VIEWER,
    Principal,
    Sessions,
    from_token,
)
from orchestrate.server._changes import ChangeObserver
from orchestrate.server._deps import ServerState, principal, record, require, state_of
from orchestrate.server._graph import workflow_graph
from orchestrate.server._http import GuardMiddleware, RedactedJSONResponse, install_errors
from orchestrate.server._models import Health, SessionView, SignIn, WorkflowView
from orchestrate.server.settings import ServerSettings
from orchestrate.store._access import token_hash
from orchestrate.store._access_sql import access_for, usage_totals

api = APIRouter(prefix="/api/v1")
probes = APIRouter(tags=["health"])


@api.post("/session", response_model=SessionView, tags=["session"], summary="Sign in to the dashboard")
async def sign_in(request: Request, response: Response, body: SignIn) -> SessionView:
    """Open a dashboard session with an API token: sets the session cookie, returns the CSRF token."""
    state = state_of(request)
    now = time.time()
    await state.client.engine.open()
    record_ = await from_token(state.access, body.token, now=now)
    cookie, csrf = await state.sessions.open(record_, token_hash(body.token), now=now)
    response.set_cookie(
        SESSION_COOKIE,
        cookie,
        max_age=int(state.settings.session_seconds),
        path="/",
        httponly=True,
        samesite="strict",
        secure=state.settings.secure_cookies,
    )
    who = Principal(record_.name, tuple(record_.roles), "session", csrf)
    await record(state, who, "session.open", record_.token_id, None, 200)
    return SessionView(principal=record_.name, roles=list(record_.roles), csrf=csrf)


@api.get("/session", response_model=SessionView, tags=["session"], summary="Who this session is")
async def whoami(who: Annotated[Principal, Depends(principal)]) -> SessionView:
    """The principal, its roles and (for a session) its CSRF token."""
    return SessionView(principal=who.name, roles=list(who.roles), csrf=who.csrf)


@api.delete("/session", status_code=204, tags=["session"], summary="Sign out")
async def sign_out(request: Request, who: Annotated[Principal, Depends(principal)]) -> Response:
    """End the session (a bearer token is not affected)."""
    state = state_of(request)
    cookie = request.cookies.get(SESSION_COOKIE)
    if cookie:
        await state.sessions.close(cookie)
    await record(state, who, "session.close", None, None, 204)
    response = Response(status_code=204)
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict")
    return response


@api.get("/workflows", response_model=list[WorkflowView], tags=["workflows"], summary="Registered workflows")
async def workflows(request: Request, _who: Annotated[Principal, Depends(require(VIEWER))]) -> list[WorkflowView]:
    """The workflows this server can start, each version with its graph."""
    engine = state_of(request).client.engine
    found = []
    for name, versions in sorted(engine._workflows.items()):
        for version, wf in sorted(versions.items()):
            kind = "graph" if workflow_graph(wf) is not None else "function"
            found.append(WorkflowView(name=name, version=version, kind=kind, graph=workflow_graph(wf)))
    return found


@api.get("/usage", tags=["usage"], summary="Tokens and cost by workflow and model")
async def usage(
    request: Request,
    _who: Annotated[Principal, Depends(require(VIEWER))],
    workflow: str | None = None,
    since: float | None = None,
    limit: int = 1000,
) -> dict[str, Any]:
    """Model tokens and cost of the newest ``limit`` runs (created since ``since``), by workflow and model.

    The SQL stores sum them in the database; no run's steps are read here.
    """
    state = state_of(request)
    client = state.client
    limit = max(1, min(limit, 10_000))
    total: dict[str, Any] = {"runs": 0, "tokens_in": 0, "tokens_out": 0, "cost": 0.0, "by_workflow": {}, "by_model": {}}
    found = await usage_totals(client.store, workflow=workflow or None, since=since, limit=limit)
    if found is None:
        found = await _usage_scanned(client, workflow=workflow or None, since=since, limit=limit)
    runs, rows = found
    for name, count in runs.items():
        total["runs"] += count
        total["by_workflow"][name] = {"runs": count, "tokens_in": 0, "tokens_out": 0, "cost": 0.0}
    for name, model, tokens_in, tokens_out, cost in rows:
        per_model = total["by_model"].setdefault(model, {"tokens_in": 0, "tokens_out": 0, "cost": 0.0})
        for bucket in (total, total["by_workflow"][name], per_model):
            bucket["tokens_in"] += int(tokens_in)
            bucket["tokens_out"] += int(tokens_out)
            bucket["cost"] += cost
    return total


async def _usage_scanned(
    client: Any, *, workflow: str | None, since: float | None, limit: int
) -> tuple[dict[str, int], list[tuple[str, str, float, float, float]]]:
    """What :func:`usage_totals` sums, read run by run (stores without SQL)."""
    runs: dict[str, int] = {}
    sums: dict[tuple[str, str], list[float]] = {}
    for run in await client.list(workflow=workflow, limit=limit, values=False):
        if since is not None and run.created_at < since:
            continue
        runs[run.workflow] = runs.get(run.workflow, 0) + 1
        for step in await client.store.get_steps(run.run_id):
            model = step.meta.get("model")
            if not isinstance(model, dict):
                continue
            acc = sums.setdefault((run.workflow, str(model.get("model") or "?")), [0.0, 0.0, 0.0])
            for i, field in enumerate(("tokens_in", "tokens_out", "cost")):
                value = model.get(field)
                acc[i] += float(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0.0
    return runs, [(w, m, acc[0], acc[1], acc[2]) for (w, m), acc in sums.items()]


@probes.get("/healthz", response_model=Health, summary="Liveness")
async def healthz() -> Health:
    """The process answers."""
    return Health(status="ok")


@probes.get("/readyz", response_model=Health, summary="Readiness", responses={503: {"model": Health}})
async def readyz(request: Request) -> Any:
    """The store answers (its schema version is read)."""
    client = state_of(request).client
    try:
        await client.engine.open()
        version = await client.store.schema_version()
    except OrchestrateError as exc:
        return RedactedJSONResponse({"status": "unavailable", "detail": str(exc)}, status_code=503)
    return Health(status="ok", schema_version=version)


@probes.get("/metrics", summary="Prometheus metrics", response_class=Response)
async def metrics(_who: Annotated[Principal, Depends(require(VIEWER))]) -> Response:
    """This process's metrics in Prometheus' text format."""
    from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

    return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)


def _dashboard_routes() -> list[BaseRoute]:
    try:
        from orchestrate.server import dashboard
    except ImportError:  # pragma: no cover - the package ships it
        return []
    return dashboard.routes()


def create_app(
    client: Any,
    *,
    settings: ServerSettings | None = None,
    extra_routes: Sequence[BaseRoute] = (),
    worker: bool = False,
    worker_concurrency: int = 10,
) -> FastAPI:
    """The HTTP API over ``client``: JSON under ``/api/v1``, live events, health, metrics, the dashboard.

    Args:
        client: the :class:`~orchestrate.Client` to serve (its workflows are the ones
            runs can be started of), or a store URL.
        settings: auth, allowed hosts, size limits (default: :class:`ServerSettings()`,
            auth on, loopback names only).
        extra_routes: Starlette routes mounted unchanged (webhook triggers).
        worker: also drive due runs of the client's workflows in this process.
        worker_concurrency: runs the worker drives at once.

    Returns:
        The FastAPI application; its OpenAPI document is at ``/openapi.json``.
    """
    from orchestrate.client import Client

    if not isinstance(client, Client):
        client = Client(client)
    settings = settings or ServerSettings()

    access = access_for(client.store)
    state = ServerState(
        client=client, settings=settings, access=access, sessions=Sessions(access, settings.session_seconds)
    )
    engine = client.engine
    # The streams wake on what this process's engine does (steps of the embedded worker,
    # decisions made through Client); other processes' changes are found by polling.
    engine._observers = (*engine._observers, ChangeObserver(state.changes))
    engine._hooks = (-1, None)
    driving: set[asyncio.Task[Any]] = set()

    async def drive_now(run_id: str) -> None:
        try:
            await engine.execute(run_id)  # None when the worker claimed it first
        except Exception as exc:  # noqa: BLE001 - the worker loop drives it later
            engine.log.warning("run_drive_failed", run_id=run_id, error_class=type(exc).__qualname__)

    def drive(run_id: str) -> None:
        task = asyncio.get_running_loop().create_task(drive_now(run_id))
        driving.add(task)
        task.add_done_callback(driving.discard)

    if worker:
        state.drive = drive

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        await engine.open()
        stop = asyncio.Event()
        task = None
        if worker:
            task = asyncio.create_task(engine.work(concurrency=worker_concurrency, stop=stop, poll_seconds=0.2))
        try:
            yield
        finally:
            stop.set()
            for running in [*driving, *([task] if task is not None else [])]:
                running.cancel()
            for running in [*driving, *([task] if task is not None else [])]:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await running
            await engine.close()

    app = FastAPI(
        title="orchestrate",
        version=__version__,
        description="Durable AI workflows: runs, reviews, the dead-letter queue and live events.",
        default_response_class=RedactedJSONResponse,
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
    )
    app.state.orchestrate = state
    install_errors(app)
    app.include_router(api)
    app.include_router(_runs.router)
    app.include_router(_reviews.router)
    app.include_router(_quality.router)
    app.include_router(_events.router)
    app.include_router(probes)
    for route in [*extra_routes, *_dashboard_routes()]:
        app.router.routes.append(route)
    app.add_middleware(GuardMiddleware, settings=settings)
    return app
