"""The API's request and response models (pydantic), and records turned into them.

Times are POSIX seconds (floats), as the store keeps them. Values (inputs, outputs,
payloads) are JSON; every response is masked for secrets on its way out.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from orchestrate.client import RunDetail
from orchestrate.store.base import Event, ReviewRecord, RunRecord, StepRecord

JSON = Any


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


# requests ----------------------------------------------------------------------------------------


class StartRun(_Strict):
    """Start a run of a registered workflow."""

    workflow: str = Field(min_length=1, max_length=200)
    input: JSON = None
    idempotency_key: str | None = Field(default=None, min_length=1, max_length=200)
    queue: str = Field(default="default", min_length=1, max_length=100)


class CancelRun(_Strict):
    """Cancel a run."""

    reason: str | None = Field(default=None, max_length=2000)


class ReplayRun(_Strict):
    """Replay an ended run, from a step with a patched input if given."""

    from_step: str | None = Field(default=None, min_length=1, max_length=500)
    input: JSON = None


class SendSignal(_Strict):
    """Deliver a signal to ``ctx.wait(key)``."""

    key: str = Field(min_length=1, max_length=500)
    value: JSON = None


class Approve(_Strict):
    """Approve a review item."""

    comment: str | None = Field(default=None, max_length=5000)


class Reject(_Strict):
    """Reject a review item, with a reason."""

    reason: str = Field(min_length=1, max_length=5000)
    comment: str | None = Field(default=None, max_length=5000)


class Edit(_Strict):
    """Approve a review item with a corrected payload."""

    payload: JSON
    comment: str | None = Field(default=None, max_length=5000)


class SignIn(_Strict):
    """Open a dashboard session with an API token."""

    token: str = Field(min_length=1, max_length=500)


# responses ---------------------------------------------------------------------------------------


class RunSummary(BaseModel):
    """A run in a listing."""

    run_id: str
    workflow: str
    version: str
    status: str
    created_at: float
    updated_at: float
    error: dict[str, Any] | None = None
    parent_run_id: str | None = None
    queue: str = "default"


class StepView(BaseModel):
    """A step record."""

    step_key: str
    name: str
    status: str
    started_at: float
    finished_at: float
    attempts: int
    output: JSON = None
    error: dict[str, Any] | None = None
    fallback: str | None = None
    meta: dict[str, Any] = Field(default_factory=dict)


class EventView(BaseModel):
    """An entry of a run's history."""

    id: int
    kind: str
    at: float
    step_key: str | None = None
    detail: dict[str, Any] = Field(default_factory=dict)
    description: str = ""


class GraphNode(BaseModel):
    """A box of a workflow's graph."""

    id: str
    label: str
    kind: str


class GraphEdge(BaseModel):
    """An arrow of a workflow's graph."""

    source: str
    target: str
    label: str = ""


class Graph(BaseModel):
    """A workflow drawn as boxes and arrows, with the path a run took."""

    nodes: list[GraphNode] = Field(default_factory=list)
    edges: list[GraphEdge] = Field(default_factory=list)
    path: list[str] = Field(default_factory=list)


class ApprovalView(BaseModel):
    """One approval of a review item."""

    by: str | None = None
    role: str | None = None
    at: float | None = None
    outcome: str | None = None
    comment: str | None = None
    changes: dict[str, Any] | None = None


class ReviewView(BaseModel):
    """A review item as reviewers see it."""

    review_id: str
    run_id: str
    workflow: str
    gate: str
    step_key: str
    queue: str
    status: str
    priority: str
    roles: list[str]
    required_roles: list[str]
    created_at: float
    due_at: float | None = None
    escalated: bool = False
    escalated_to: str | None = None
    level: int = 0
    payload: JSON = None
    confidence: float | None = None
    required_approvals: int
    approvals: list[ApprovalView] = Field(default_factory=list)
    decided_by: str | None = None
    decision: str | None = None
    reason: str | None = None
    allow_edit: bool = True
    schema_: dict[str, Any] | None = Field(default=None, alias="schema", serialization_alias="schema")
    claimed_by: str | None = None
    reviews: str = "output"

    model_config = ConfigDict(populate_by_name=True)


class RunView(RunSummary):
    """A run with its steps, history, usage, review items and graph."""

    input: JSON = None
    output: JSON = None
    error_info: dict[str, Any] | None = None
    options: dict[str, Any] = Field(default_factory=dict)
    wait_reason: str | None = None
    steps: list[StepView] = Field(default_factory=list)
    events: list[EventView] = Field(default_factory=list)
    reviews: list[ReviewView] = Field(default_factory=list)
    usage: dict[str, Any] = Field(default_factory=dict)
    graph: Graph | None = None


class RunPage(BaseModel):
    """A page of runs."""

    items: list[RunSummary]
    next_cursor: str | None = None


class ReviewPage(BaseModel):
    """A page of review items."""

    items: list[ReviewView]
    next_cursor: str | None = None


class SessionView(BaseModel):
    """Who the session (or token) acts as, and the CSRF token of a session."""

    principal: str
    roles: list[str]
    csrf: str | None = None


class WorkflowView(BaseModel):
    """A workflow registered with the server."""

    name: str
    version: str
    kind: str
    graph: Graph | None = None


class Health(BaseModel):
    """Liveness or readiness."""

    status: str
    schema_version: int | None = None
    detail: str | None = None


# conversions -------------------------------------------------------------------------------------


def run_summary(run: RunRecord) -> RunSummary:
    """The listing view of a run."""
    return RunSummary(
        run_id=run.run_id,
        workflow=run.workflow,
        version=run.version,
        status=run.status.value,
        created_at=run.created_at,
        updated_at=run.updated_at,
        error=run.error,
        parent_run_id=run.parent_run_id,
        queue=run.queue,
    )


def step_view(step: StepRecord) -> StepView:
    """A step record as the API shows it."""
    return StepView(
        step_key=step.step_key,
        name=step.name,
        status=step.status.value,
        started_at=step.started_at,
        finished_at=step.finished_at,
        attempts=step.attempts,
        output=step.output,
        error=step.error,
        fallback=step.fallback,
        meta=step.meta,
    )


def event_view(event: Event) -> EventView:
    """A history entry as the API shows it."""
    return EventView(
        id=event.id,
        kind=event.kind,
        at=event.at,
        step_key=event.step_key,
        detail=event.data,
        description=describe(event),
    )


def describe(event: Event) -> str:
    """One line about an event, for people."""
    where = f" at {event.step_key}" if event.step_key else ""
    data = event.data or {}
    words = event.kind.replace("_", " ")
    extra = ""
    if "by" in data and data.get("by"):
        extra = f" by {data['by']}"
    if data.get("reason"):
        extra += f": {data['reason']}"
    elif data.get("message"):
        extra += f": {data['message']}"
    return f"{words}{where}{extra}"


def _confidence(item: ReviewRecord) -> float | None:
    for source in (item.meta, item.payload if isinstance(item.payload, dict) else {}):
        value = source.get("confidence") if isinstance(source, dict) else None
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
    return None


def review_view(item: ReviewRecord) -> ReviewView:
    """A review item as the API shows it."""
    decision = item.decision or {}
    return ReviewView(
        review_id=item.review_id,
        run_id=item.run_id,
        workflow=item.workflow,
        gate=item.gate_key,
        step_key=item.step_key,
        queue=item.queue,
        status=item.status.value,
        priority=item.priority,
        roles=item.allowed_roles,
        required_roles=item.required_roles,
        created_at=item.created_at,
        due_at=item.due_at,
        escalated=item.level > 0 or item.escalated_to is not None,
        escalated_to=item.escalated_to,
        level=item.level,
        payload=item.payload,
        confidence=_confidence(item),
        required_approvals=max(len(item.required_roles), item.min_approvals),
        approvals=[ApprovalView(**{k: a.get(k) for k in ApprovalView.model_fields}) for a in item.approvals],
        decided_by=decision.get("by"),
        decision=decision.get("outcome"),
        reason=decision.get("reason"),
        allow_edit=item.meta.get("kind") != "flag",
        schema=item.meta.get("schema") if isinstance(item.meta.get("schema"), dict) else None,
        claimed_by=item.meta.get("claimed_by"),
        reviews=str(item.meta.get("reviews") or "output"),
    )


def run_view(detail: RunDetail, graph: Graph | None) -> RunView:
    """A run's page."""
    run = detail.run
    return RunView(
        **run_summary(run).model_dump(),
        input=run.input,
        output=run.output,
        error_info=run.error,
        options={k: v for k, v in run.options.items() if k != "observe"},
        wait_reason=run.wait_reason,
        steps=[step_view(s) for s in detail.steps],
        events=[event_view(e) for e in detail.events],
        reviews=[review_view(r) for r in detail.reviews],
        usage=detail.usage(),
        graph=graph,
    )
