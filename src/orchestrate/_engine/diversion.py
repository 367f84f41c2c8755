"""Actions of alerts on steps: a step an alert diverts takes its fallback or goes to people.

The durable monitors of :mod:`orchestrate.observe.alerts` write alerts into the store; a
monitor with ``action="fallback"`` or ``action="review"`` diverts its step while its
alert holds (until someone acknowledges it). The executor asks here before it runs a
step, only when diversions are attached to the engine (``engine.diversions``).

The decision is recorded in the run before the step runs, as a ``wait:diverted:<key>``
record with a ``step_diverted`` event in the run's history: the audit of the action, and
what a replay follows (the alert may have been acknowledged since, or this process may
have no diversions attached). ``review`` gates the step's output with a review item on
``divert:<key>`` (queue ``review``, anyone may decide): what people approve or edit is
what the run goes on with. ``fallback`` takes the step's fallback chain instead of
calling it; a step without one goes to people instead.
"""

from __future__ import annotations

from typing import Any

from orchestrate._engine.gates import await_review
from orchestrate._engine.state import RunState, StepSpec
from orchestrate.review._outcomes import continue_with
from orchestrate.review.gate import HumanReviewGate
from orchestrate.store.base import Event, EventKind, StepRecord
from orchestrate.types import StepStatus

DIVERTED_EVENT = EventKind.STEP_DIVERTED
"""The kind of the event that records a diversion in the run's history (data: alert_id, monitor, action)."""

_GATE = HumanReviewGate()


class AlertDivertedError(Exception):
    """What a step diverted to its fallback gave up with: an alert's action, not an error of its own."""


def _key(step_key: str) -> str:
    return f"wait:diverted:{step_key}"


def recorded(ctx: RunState, step_key: str) -> str | None:
    """The action recorded for ``step_key`` in this run (a replay), or ``None``."""
    found = ctx.recorded.get(_key(step_key))
    return None if found is None else str(found.output["action"])


async def decide(ctx: RunState, spec: StepSpec, step_key: str, diversions: Any) -> str | None:
    """The action an alert takes on the step now, recorded in the run; ``None``: run it as usual."""
    found = recorded(ctx, step_key)
    if found is not None:
        return found
    alert = await diversions.action_for(ctx.workflow, spec.name)
    if alert is None:
        return None
    action = alert.action if alert.action == "review" or spec.policy.fallback else "review"
    now = ctx.engine.clock.now()
    data = {"alert_id": alert.alert_id, "monitor": alert.monitor, "action": action}
    record = StepRecord(
        run_id=ctx.run_id,
        step_key=_key(step_key),
        name=spec.name,
        status=StepStatus.SUCCEEDED,
        output=data,
        started_at=now,
        finished_at=now,
        meta={"diverted": action, "alert_id": alert.alert_id},
    )
    event = Event(run_id=ctx.run_id, kind=DIVERTED_EVENT, at=now, step_key=step_key, data=data)
    stored = await ctx.record(record, event=event)
    ctx.engine.log.warning(
        DIVERTED_EVENT, workflow=ctx.workflow, run_id=ctx.run_id, step=step_key, alert_id=alert.alert_id, action=action
    )
    return str(stored.output["action"])


async def review(ctx: RunState, spec: StepSpec, step_key: str, output: Any) -> tuple[Any, str | None]:
    """Park until people approve (or edit) the diverted step's output; what they decide goes on."""
    outcome = await await_review(ctx, _GATE, key=f"divert:{step_key}", step_key=step_key, payload=output)
    return continue_with(
        outcome,
        rejected=f"step {step_key!r} (diverted to review by an alert) was rejected by a reviewer",
        codec=spec.codec,
        where=f"step {step_key!r}",
    )
