"""What a review's decision means for the run: item ids, the record that hands a decision
to the run, and how a gated step goes on (approved, edited, routed, rejected, expired).

Pure functions of records and outcomes, shared by the reviewer side
(:mod:`orchestrate.review._decisions`) and the engine's gates (``orchestrate._engine.gates``).
"""

from __future__ import annotations

import hashlib
import uuid
from typing import Any

from orchestrate import _codec
from orchestrate.errors import RejectedError, ReviewExpiredError
from orchestrate.review.gate import ReviewOutcome
from orchestrate.store.base import StepRecord
from orchestrate.types import StepStatus


def review_id_for(run_id: str, key: str, level: int) -> str:
    """The id of the item of gate ``key`` of a run at escalation ``level``."""
    digest = hashlib.sha256(f"{run_id}\x00{key}\x00{level}".encode()).hexdigest()[:16]
    return f"rv-{digest}"


def signal_record(run_id: str, wait_key: str, value: Any, now: float, *, review_id: str | None) -> StepRecord:
    """The step record that hands a decision to the waiting run."""
    meta: dict[str, Any] = {"review_id": review_id, "signal_id": uuid.uuid4().hex}
    if isinstance(value, dict) and value.get("by"):
        meta["by"] = value["by"]
    return StepRecord(
        run_id=run_id,
        step_key=wait_key,
        name=wait_key,
        status=StepStatus.SUCCEEDED,
        output=value,
        attempts=1,
        started_at=now,
        finished_at=now,
        meta=meta,
    )


def outcome_of(value: Any, payload: Any, *, reject_route: str | None = None) -> ReviewOutcome:
    """Read a delivered decision: ``{"approved": bool, "payload"?, "reason"?, ...}``."""
    if not isinstance(value, dict) or "approved" not in value:
        return ReviewOutcome(approved=False, payload=payload, outcome="signal", value=value)
    approved = bool(value["approved"])
    timed_out = bool(value.get("timed_out"))
    edited = approved and "payload" in value
    if timed_out:
        outcome = "expired"
        route = value.get("route") or (reject_route if value.get("action") == "reject" else None)
    else:
        outcome = "auto" if value.get("auto") else "edited" if edited else "approved" if approved else "rejected"
        route = None if approved else reject_route
    return ReviewOutcome(
        approved=approved,
        payload=value["payload"] if edited else payload,
        outcome=outcome,
        reason=value.get("reason"),
        by=value.get("by"),
        role=value.get("role"),
        review_id=value.get("review_id"),
        route=route,
        timed_out=timed_out,
        tier=value.get("tier"),
        value=value,
    )


def fail_if_expired(outcome: ReviewOutcome, *, what: str) -> None:
    """Fail closed: an expired review whose gate says ``"fail"`` (or ``"reject"`` with no
    route) stops the run, in every definition style.

    Raises:
        ReviewExpiredError: the SLA passed and the gate's default is to fail.
        RejectedError: the SLA passed and the gate's default is to reject, with no route.
    """
    if not outcome.timed_out or outcome.route is not None:
        return
    action = outcome.value.get("action") if isinstance(outcome.value, dict) else "fail"
    if action == "fail":
        raise ReviewExpiredError(f"{what} got no decision: {outcome.reason}")
    if action == "reject":
        raise RejectedError(f"{what} was rejected: {outcome.reason}")


def continue_with(
    outcome: ReviewOutcome, *, rejected: str, codec: _codec.Plan | None = None, where: str = ""
) -> tuple[Any, str | None]:
    """What a gated step hands on: ``(payload, None)``, or ``(payload, step)`` to route there.

    Args:
        outcome: the review's outcome.
        rejected: the start of the ``RejectedError`` message.
        codec: how the reviewed value revives (an edited or default payload is JSON).
        where: the place, for the codec's errors.

    Raises:
        RejectedError: rejected, with no route configured.
        ReviewExpiredError: the SLA passed and the gate's default is to fail.
    """
    fail_if_expired(outcome, what=rejected.replace(" was rejected", "").replace(" by a reviewer", ""))
    if outcome.approved or (outcome.timed_out and outcome.route is None):
        # approved, edited, or an expiry whose gate says go on (approve, continue, default)
        if codec is not None and isinstance(outcome.value, dict) and "payload" in outcome.value:
            return codec.revive(outcome.payload, None, where), None
        return outcome.payload, None
    if outcome.route is not None:
        return outcome.payload, outcome.route
    raise RejectedError(f"{rejected}: {outcome.reason or 'no reason given'}")
