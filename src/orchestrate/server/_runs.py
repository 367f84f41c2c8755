"""Routes of runs, signals and the dead-letter queue."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Query, Request, Response

from orchestrate.errors import InvalidInputError, RunStateError
from orchestrate.server._auth import OPERATOR, VIEWER, Principal
from orchestrate.server._deps import ServerState, audited, decode_cursor, encode_cursor, page_limit, require, state_of
from orchestrate.server._graph import workflow_graph
from orchestrate.server._models import (
    CancelRun,
    ReplayRun,
    RunPage,
    RunSummary,
    RunView,
    SendSignal,
    StartRun,
    run_summary,
    run_view,
)
from orchestrate.store._pages import page_runs
from orchestrate.types import RunStatus

router = APIRouter(prefix="/api/v1", tags=["runs"])

_IDEMPOTENCY = uuid.UUID("6f0b6a4e-2c1f-4d5e-9a57-0c3f7d1e8b21")


def _statuses(status: str | None) -> list[RunStatus] | None:
    if not status:
        return None
    found = []
    for name in status.split(","):
        try:
            found.append(RunStatus(name.strip()))
        except ValueError:
            raise InvalidInputError(
                f"unknown run status {name.strip()!r}; use one of {', '.join(s.value for s in RunStatus)}"
            ) from None
    return found


def _after(cursor: str | None) -> tuple[float, str] | None:
    value = decode_cursor(cursor)
    if value is None:
        return None
    if (
        isinstance(value, list)
        and len(value) == 2
        and isinstance(value[0], int | float)
        and not isinstance(value[0], bool)
        and isinstance(value[1], str)
    ):
        return float(value[0]), value[1]
    raise InvalidInputError("invalid cursor: pass next_cursor from the previous page")


@router.get("/runs", response_model=RunPage, summary="List runs, newest first")
async def list_runs(
    request: Request,
    _who: Annotated[Principal, Depends(require(VIEWER))],
    workflow: str | None = None,
    status: Annotated[str | None, Query(description="One status or several, comma-separated.")] = None,
    since: Annotated[float | None, Query(description="Created at or after (POSIX seconds).")] = None,
    until: Annotated[float | None, Query(description="Created before (POSIX seconds).")] = None,
    q: Annotated[str | None, Query(max_length=200, description="Run id prefix, workflow or error text.")] = None,
    limit: int = 50,
    cursor: str | None = None,
) -> RunPage:
    """Runs matching the filters, newest first, a page at a time."""
    state = state_of(request)
    limit = page_limit(state, limit)
    await state.client.engine.open()
    runs = await page_runs(
        state.client.store,
        status=_statuses(status),
        workflow=workflow or None,
        since=since,
        until=until,
        text=q or None,
        after=_after(cursor),
        limit=limit + 1,
    )
    more = len(runs) > limit
    runs = runs[:limit]
    last = runs[-1] if more and runs else None
    return RunPage(
        items=[run_summary(r) for r in runs],
        next_cursor=encode_cursor([last.created_at, last.run_id]) if last is not None else None,
    )


@router.post("/runs", response_model=RunSummary, status_code=201, summary="Start a run")
async def start_run(
    request: Request,
    response: Response,
    body: StartRun,
    who: Annotated[Principal, Depends(require(OPERATOR))],
) -> RunSummary:
    """Create a pending run of a registered workflow; with ``idempotency_key``, at most one per key."""
    state = state_of(request)
    client = state.client

    async def go() -> RunSummary:
        await client.engine.open()
        wf = client.engine.get_workflow(body.workflow)
        run_id = None
        if body.idempotency_key is not None:
            run_id = str(uuid.uuid5(_IDEMPOTENCY, f"{wf.name}\x00{body.idempotency_key}"))
            existing = await client.store.get_run(run_id)
            if existing is not None:
                response.status_code = 200
                return run_summary(existing)
        options: dict[str, Any] = {"started_by": who.name}
        if body.idempotency_key is not None:
            options["idempotency_key"] = body.idempotency_key
        found = await client.start(wf, body.input, run_id=run_id, options=options, queue=body.queue)
        return _due(state, run_summary(await client.get(found)))

    return await audited(state, who, "run.start", body.workflow, body.model_dump(), go)


@router.get("/runs/{run_id}", response_model=RunView, summary="A run with its steps, history and graph")
async def get_run(request: Request, run_id: str, _who: Annotated[Principal, Depends(require(VIEWER))]) -> RunView:
    """The run's page: steps, history, review items, usage and graph (values masked)."""
    client = state_of(request).client
    detail = await client.detail(run_id)
    run = detail.run
    wf = None
    if client.engine.has_version(run.workflow, run.version):
        wf = client.engine.get_workflow(run.workflow, run.version)
    return run_view(detail, workflow_graph(wf, detail.steps, ended=run.status is RunStatus.SUCCEEDED))


async def _mutate(request: Request, who: Principal, action: str, run_id: str, body: Any, call: Any) -> RunSummary:
    state: ServerState = state_of(request)
    return await audited(state, who, action, run_id, body, call)


def _due(state: ServerState, run: RunSummary) -> RunSummary:
    """``run`` may be due now: an embedded worker that has its workflow drives it at once."""
    if state.client.engine.has_version(run.workflow, run.version):
        state.wake_run(run.run_id)
    return run


@router.post("/runs/{run_id}/cancel", response_model=RunSummary, summary="Cancel a run")
async def cancel_run(
    request: Request,
    run_id: str,
    who: Annotated[Principal, Depends(require(OPERATOR))],
    body: Annotated[CancelRun | None, Body()] = None,
) -> RunSummary:
    """Cancel a run that has not ended (and its pending review items)."""
    client = state_of(request).client
    reason = (body.reason if body else None) or f"cancelled by {who.name}"

    async def go() -> RunSummary:
        return run_summary(await client.cancel(run_id, reason=reason))

    return await _mutate(request, who, "run.cancel", run_id, body.model_dump() if body else None, go)


@router.post("/runs/{run_id}/retry", response_model=RunSummary, summary="Retry a failed or dead run")
async def retry_run(request: Request, run_id: str, who: Annotated[Principal, Depends(require(OPERATOR))]) -> RunSummary:
    """Start a new run from an ended one that did not succeed: its succeeded steps are reused."""
    client = state_of(request).client

    async def go() -> RunSummary:
        source = await client.get(run_id)
        if source.status is RunStatus.SUCCEEDED:
            raise RunStateError(f"run {source.run_id!r} succeeded; replay it to run it again")
        new = await client.replay(source.run_id, execute=False, options={"started_by": who.name})
        return _due(state_of(request), run_summary(new))

    return await _mutate(request, who, "run.retry", run_id, None, go)


@router.post("/runs/{run_id}/resume", response_model=RunSummary, summary="Make a waiting run due now")
async def resume_run(
    request: Request, run_id: str, who: Annotated[Principal, Depends(require(OPERATOR))]
) -> RunSummary:
    """Wake a waiting run: a worker continues it at once instead of at its timer."""
    client = state_of(request).client

    async def go() -> RunSummary:
        run = await client.get(run_id)
        if run.status is not RunStatus.WAITING:
            raise RunStateError(f"run {run.run_id!r} is {run.status.value}; only waiting runs can be resumed")
        await client.store.wake_run(run.run_id, now=client.engine.clock.now())
        return _due(state_of(request), run_summary(await client.get(run.run_id)))

    return await _mutate(request, who, "run.resume", run_id, None, go)


async def _replay(request: Request, who: Principal, run_id: str, body: ReplayRun | None, action: str) -> RunSummary:
    client = state_of(request).client
    payload = body.model_dump() if body else None

    async def go() -> RunSummary:
        new = await client.replay(
            run_id,
            from_step=body.from_step if body else None,
            input=body.input if body else None,
            execute=False,
            options={"started_by": who.name},
        )
        return _due(state_of(request), run_summary(new))

    return await _mutate(request, who, action, run_id, payload, go)


@router.post("/runs/{run_id}/replay", response_model=RunSummary, status_code=201, summary="Replay an ended run")
async def replay_run(
    request: Request,
    run_id: str,
    who: Annotated[Principal, Depends(require(OPERATOR))],
    body: Annotated[ReplayRun | None, Body()] = None,
) -> RunSummary:
    """A new run from an ended one, from ``from_step`` with ``input`` patched in if given."""
    return await _replay(request, who, run_id, body, "run.replay")


@router.post("/runs/{run_id}/signals", response_model=RunSummary, summary="Deliver a signal to a run")
async def send_signal(
    request: Request, run_id: str, body: SendSignal, who: Annotated[Principal, Depends(require(OPERATOR))]
) -> RunSummary:
    """Deliver ``value`` to the run's ``ctx.wait(key)``, exactly once."""
    client = state_of(request).client
    if body.key.startswith("review:"):
        raise InvalidInputError("decide reviews through /api/v1/reviews/{id}/approve, reject or edit, not as signals")

    async def go() -> RunSummary:
        await client.signal(run_id, body.key, body.value, by=who.name)
        return _due(state_of(request), run_summary(await client.get(run_id)))

    return await _mutate(request, who, "run.signal", run_id, body.model_dump(), go)


@router.get("/dlq", response_model=RunPage, tags=["dlq"], summary="The dead-letter queue")
async def dead_letters(
    request: Request,
    _who: Annotated[Principal, Depends(require(VIEWER))],
    workflow: str | None = None,
    limit: int = 50,
    cursor: str | None = None,
) -> RunPage:
    """Dead runs not replayed since, newest first."""
    state = state_of(request)
    limit = page_limit(state, limit)
    offset = decode_cursor(cursor) or 0
    if not isinstance(offset, int) or offset < 0:
        raise InvalidInputError("invalid cursor: pass next_cursor from the previous page")
    runs = await state.client.dead_letters(workflow=workflow or None, limit=offset + limit + 1, values=False)
    page = runs[offset : offset + limit]
    more = len(runs) > offset + limit
    return RunPage(items=[run_summary(r) for r in page], next_cursor=encode_cursor(offset + limit) if more else None)


@router.post(
    "/dlq/{run_id}/replay", response_model=RunSummary, status_code=201, tags=["dlq"], summary="Replay a dead run"
)
async def replay_dead(
    request: Request,
    run_id: str,
    who: Annotated[Principal, Depends(require(OPERATOR))],
    body: Annotated[ReplayRun | None, Body()] = None,
) -> RunSummary:
    """Replay a dead run (it leaves the queue), from ``from_step`` with ``input`` if given."""
    client = state_of(request).client
    run = await client.get(run_id)
    if run.status is not RunStatus.DEAD:
        raise RunStateError(f"run {run.run_id!r} is {run.status.value}, not in the dead-letter queue")
    return await _replay(request, who, run.run_id, body, "dlq.replay")
