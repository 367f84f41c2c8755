"""Routes of step quality, outcome feedback and alerts.

Step results and their windowed health, feedback attached to runs, and the durable alerts
of the monitors with their acknowledgement. Who gives feedback or acknowledges an alert
is the principal of the token (or session), never whoever the body names.
"""

from __future__ import annotations

import dataclasses
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException

from orchestrate.errors import InvalidInputError
from orchestrate.server._auth import OPERATOR, VIEWER, Principal
from orchestrate.server._deps import audited, record, require, state_of
from orchestrate.store._quality import AlertRecord, FeedbackRecord
from orchestrate.store._quality_sql import quality_for

router = APIRouter(prefix="/api/v1")

JSON = Any

# requests ----------------------------------------------------------------------------------------


class GiveFeedback(BaseModel):
    """What happened after a run; at least one of ``outcome``, ``score`` and ``label``."""

    model_config = ConfigDict(extra="forbid")

    outcome: str | None = Field(default=None, min_length=1, max_length=200)
    score: float | None = Field(default=None, allow_inf_nan=False)
    label: str | None = Field(default=None, min_length=1, max_length=200)
    step: str | None = Field(default=None, min_length=1, max_length=500)
    data: dict[str, Any] | None = None
    feedback_id: str | None = Field(default=None, min_length=1, max_length=200)


# responses ---------------------------------------------------------------------------------------


class StepResultView(BaseModel):
    """One execution of a step with its quality metadata."""

    workflow: str
    run_id: str
    step_key: str
    name: str
    status: str
    finished_at: float
    latency_ms: float | None = None
    attempts: int
    input_hash: str | None = None
    model: str | None = None
    model_version: str | None = None
    tokens_in: int | None = None
    tokens_out: int | None = None
    cost: float | None = None
    confidence: float | None = None
    cached: bool = False
    fallback: str | None = None
    diverted: str | None = None
    escalated: bool = False
    validation: JSON = None
    drift_score: float | None = None
    error_class: str | None = None
    output: JSON = None


class WindowStatsView(BaseModel):
    """A step's health over one window of executions."""

    executions: int
    first_at: float
    last_at: float
    latency_p50_ms: float | None = None
    latency_p95_ms: float | None = None
    error_rate: float
    fallback_rate: float
    escalation_rate: float
    confidence_mean: float | None = None


class FeedbackView(BaseModel):
    """A feedback entry attached to a run."""

    feedback_id: str
    run_id: str
    workflow: str
    at: float
    by: str
    outcome: str | None = None
    score: float | None = None
    label: str | None = None
    step: str | None = None
    data: dict[str, Any] = Field(default_factory=dict)


class AlertView(BaseModel):
    """One incident of a monitor."""

    alert_id: str
    workflow: str
    monitor: str
    step: str | None = None
    incident: int
    state: str
    value: float | None = None
    reason: str
    action: str | None = None
    diverting: bool = False
    fired_at: float
    updated_at: float
    resolved_at: float | None = None
    acked_at: float | None = None
    acked_by: str | None = None


def feedback_view(entry: FeedbackRecord) -> FeedbackView:
    """A feedback entry as the API shows it."""
    return FeedbackView(**entry.to_dict())


def alert_view(alert: AlertRecord) -> AlertView:
    """An alert as the API shows it (a reading that is not a finite number shows as ``null``)."""
    value: float | None = alert.value
    if value is not None and not (value == value and abs(value) != float("inf")):
        value = None
    return AlertView(
        alert_id=alert.alert_id,
        workflow=alert.workflow,
        monitor=alert.monitor,
        step=alert.step,
        incident=alert.incident,
        state=alert.state.value,
        value=value,
        reason=alert.reason,
        action=alert.action,
        diverting=alert.diverting,
        fired_at=alert.fired_at,
        updated_at=alert.updated_at,
        resolved_at=alert.resolved_at,
        acked_at=alert.acked_at,
        acked_by=alert.acked_by,
    )


def _finite(value: Any) -> Any:
    """``value`` with NaN and infinities as ``None`` (JSON has neither)."""
    if isinstance(value, float) and not (value == value and abs(value) != float("inf")):
        return None
    return value


def _limit(request: Request, value: int, name: str) -> int:
    largest = state_of(request).settings.page_limit
    if value < 1 or value > largest:
        raise InvalidInputError(f"{name} must be between 1 and {largest}, got {value}")
    return value


# routes ------------------------------------------------------------------------------------------


@router.get(
    "/steps/{step}/results",
    response_model=list[StepResultView],
    tags=["quality"],
    summary="A step's newest executions with their quality data",
)
async def step_results(
    request: Request,
    step: str,
    _who: Annotated[Principal, Depends(require(VIEWER))],
    workflow: str | None = None,
    last: int = 100,
) -> list[StepResultView]:
    """The newest ``last`` executions of ``step`` (of ``workflow``, or of any), newest first."""
    client = state_of(request).client
    found = await client.step_results(step, last=_limit(request, last, "last"), workflow=workflow or None)
    return [StepResultView(**{k: _finite(v) for k, v in r.to_dict().items()}) for r in found]


@router.get(
    "/steps/{step}/stats",
    response_model=list[WindowStatsView],
    tags=["quality"],
    summary="A step's health per window of executions",
)
async def step_stats(
    request: Request,
    step: str,
    _who: Annotated[Principal, Depends(require(VIEWER))],
    workflow: str | None = None,
    window: int = 100,
    windows: int = 10,
) -> list[WindowStatsView]:
    """p50/p95 latency, error, fallback and escalation rates and mean confidence, oldest window first."""
    _limit(request, window, "window")
    if windows < 1 or windows > 100:
        raise InvalidInputError(f"windows must be between 1 and 100, got {windows}")
    client = state_of(request).client
    found = await client.step_stats(step, workflow=workflow or None, window=window, windows=windows)
    return [WindowStatsView(**{k: _finite(v) for k, v in dataclasses.asdict(w).items()}) for w in found]


@router.post(
    "/runs/{run_id}/feedback",
    response_model=FeedbackView,
    status_code=201,
    tags=["quality"],
    summary="Attach what happened after a run",
)
async def give_feedback(
    request: Request, run_id: str, body: GiveFeedback, who: Annotated[Principal, Depends(require(OPERATOR))]
) -> FeedbackView:
    """Store feedback on the run as the token's principal; it is written into the run's history."""
    state = state_of(request)

    async def go() -> FeedbackView:
        entry = await state.client.feedback(
            run_id,
            by=who.name,
            outcome=body.outcome,
            score=body.score,
            label=body.label,
            step=body.step,
            data=body.data,
            feedback_id=body.feedback_id,
        )
        return feedback_view(entry)

    return await audited(state, who, "run.feedback", run_id, body.model_dump(), go)


@router.get("/feedback", response_model=list[FeedbackView], tags=["quality"], summary="Feedback entries")
async def list_feedback(
    request: Request,
    _who: Annotated[Principal, Depends(require(VIEWER))],
    run_id: str | None = None,
    workflow: str | None = None,
    limit: int = 100,
) -> list[FeedbackView]:
    """Feedback of one run or workflow (or all), oldest first."""
    client = state_of(request).client
    found = await client.list_feedback(
        run_id=run_id or None, workflow=workflow or None, limit=_limit(request, limit, "limit")
    )
    return [feedback_view(e) for e in found]


@router.get("/alerts", response_model=list[AlertView], tags=["quality"], summary="Alerts of the monitors")
async def list_alerts(
    request: Request,
    _who: Annotated[Principal, Depends(require(VIEWER))],
    state: str | None = None,
    workflow: str | None = None,
    limit: int = 50,
) -> list[AlertView]:
    """Alerts, newest first (``state``: ``firing``, ``acknowledged`` or ``resolved``)."""
    client = state_of(request).client
    found = await client.alerts(state=state or None, workflow=workflow or None, limit=_limit(request, limit, "limit"))
    return [alert_view(a) for a in found]


@router.post(
    "/alerts/{alert_id}/acknowledge",
    response_model=AlertView,
    tags=["quality"],
    summary="Acknowledge an alert",
)
async def acknowledge(
    request: Request, alert_id: str, who: Annotated[Principal, Depends(require(OPERATOR))]
) -> AlertView:
    """Take the alert as the token's principal; its action stops diverting the step."""
    state = state_of(request)
    client = state.client
    await client.engine.open()
    if await quality_for(client.store).get_alert(alert_id) is None:
        await record(state, who, "alert.acknowledge", alert_id, None, 404)
        raise HTTPException(404, f"no alert {alert_id!r}; list them with GET /api/v1/alerts")

    async def go() -> AlertView:
        return alert_view(await client.acknowledge_alert(alert_id, by=who.name))

    return await audited(state, who, "alert.acknowledge", alert_id, None, go)
