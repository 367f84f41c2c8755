"""Deciding review items: permission checks, multi-role approvals, compare-and-set writes.

Every decision reads the item, checks it, and writes it back only if its version did
not move (:meth:`Store.update_review`). Two reviewers racing on the same item: one
write lands, the other re-reads and finds either a final item (``ConflictError``) or a
partial approval to build on (two required roles approving at once both count). The
final decision carries the run's signal in the same transaction, so an approved item
and a resumed run never disagree.
"""

from __future__ import annotations

import inspect
import json
import statistics
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from orchestrate import _serde
from orchestrate.errors import (
    ConflictError,
    InvalidInputError,
    ReviewNotFoundError,
    ReviewPermissionError,
    RunStateError,
)
from orchestrate.observe._dispatch import Dispatch, process_dispatch
from orchestrate.review._outcomes import review_id_for, signal_record
from orchestrate.review.gate import APPROVERS
from orchestrate.store._access_policy import check_server
from orchestrate.store.base import Event, ReviewRecord, ReviewStatus, RunRecord, Store

Action = Literal["approve", "reject", "edit"]

_RETRIES = 32
_ABSENT = object()


def changes(before: Any, after: Any) -> dict[str, dict[str, Any]]:
    """What an edit changed: ``{field: {"before", "after"}}`` (``"$"`` for a whole non-object value)."""
    if isinstance(before, dict) and isinstance(after, dict):
        keys = sorted(set(before) | set(after), key=str)
        return {
            str(k): {"before": before.get(k), "after": after.get(k)}
            for k in keys
            if before.get(k, _ABSENT) != after.get(k, _ABSENT)
        }
    return {} if before == after else {"$": {"before": before, "after": after}}


def _final_message(item: ReviewRecord) -> str:
    decision = item.decision or {}
    who = decision.get("by")
    role = decision.get("role")
    by = f" by {who}" + (f" ({role})" if role else "") if who else ""
    return f"review {item.review_id} was already {item.status.value}{by}; the first decision stands"


def _ours(stored: ReviewRecord, read: ReviewRecord, by: str, now: float) -> bool:
    """Whether ``stored`` is the write this decision made on top of ``read``."""
    if stored.version != read.version + 1 or stored.updated_at != now:
        return False
    last = stored.approvals[-1] if len(stored.approvals) > len(read.approvals) else (stored.decision or {})
    return last.get("by") == by and last.get("at") == now


def _complete(item: ReviewRecord, approvals: list[dict[str, Any]]) -> bool:
    roles = {a.get("role") for a in approvals}
    people = {a.get("by") for a in approvals}
    return all(r in roles for r in item.required_roles) and len(people) >= item.min_approvals


async def _check(
    role: str | None, payload: Any, review_id: str, approvers: Mapping[str, Callable[..., Any]] | None
) -> None:
    """Run the approval check of ``role``: the client's (``approvers``), else the process's."""
    if not role:
        return
    check = approvers.get(role) if approvers else None
    if check is None:
        check = APPROVERS.get(role)
    if check is None:
        return
    name = getattr(check, "__qualname__", repr(check))
    try:
        verdict = check(payload)
        if inspect.isawaitable(verdict):
            verdict = await verdict
    except Exception as exc:  # a broken check refuses; it does not crash the decision
        raise ReviewPermissionError(
            f"the approval check of role {role!r} ({name}) failed on review {review_id}: {type(exc).__name__}: {exc}"
        ) from exc
    if not verdict:
        raise ReviewPermissionError(
            f"the approval check of role {role!r} ({name}) refused to approve review {review_id}"
        )


async def decide(
    store: Store,
    now: float,
    review_id: str,
    *,
    action: Action,
    by: str,
    role: str | None,
    reason: str | None = None,
    payload: Any = _ABSENT,
    comment: str | None = None,
    override: bool = False,
    hooks: Dispatch | None = None,
    approvers: Mapping[str, Callable[..., Any]] | None = None,
) -> ReviewRecord:
    """Approve, reject or edit the item; return it as written.

    A final decision is reported to ``hooks`` (default: the process-wide observers) as
    ``review_decided``. An approval in a role is checked by ``approvers``' check of that
    role, else by the one registered for the process (:func:`~orchestrate.review.approval`).

    Raises:
        ReviewNotFoundError: no such item.
        ReviewPermissionError: ``role`` may not decide it (or its approval check refused).
        ConflictError: the item was decided already, or this reviewer or role approved it already.
        RunStateError: the run has ended.
        InvalidInputError: no ``by``, a rejection without a reason, an edit without a payload.
    """
    if not isinstance(by, str) or not by.strip():
        raise InvalidInputError("a decision needs to say who decides (by=...)")
    await check_server(store, f"the {action} of review {review_id}")
    if action == "reject" and not (isinstance(reason, str) and reason.strip()):
        raise InvalidInputError("a rejection needs a reason")
    if action == "edit":
        if payload is _ABSENT:
            raise InvalidInputError("an edit needs the corrected payload")
        payload = json.loads(_serde.dumps(payload, what="the edited payload"))
    for _ in range(_RETRIES):
        item = await store.get_review(review_id)
        if item is None:
            raise ReviewNotFoundError(f"review {review_id!r} does not exist")
        if item.status.final:
            raise ConflictError(_final_message(item))
        allowed = item.allowed_roles
        if not override and allowed and role not in allowed:
            raise ReviewPermissionError(
                f"role {role!r} may not decide review {review_id} (roles allowed: {', '.join(allowed)})"
            )
        flag = item.meta.get("kind") == "flag"  # a flag's run does not wait: it may have ended
        run = await store.get_run(item.run_id)
        if run is None or (run.status.terminal and not flag):
            state = "gone" if run is None else run.status.value
            raise RunStateError(f"review {review_id}: its run {item.run_id} is {state}; it takes no decisions")
        written = await _attempt(store, now, item, action, by, role, reason, payload, comment, override, approvers)
        if written is not None:
            if written.status.final and (hooks := hooks or process_dispatch()) is not None:
                decided(hooks, written, run, now)
            return written
        again = await store.get_review(review_id)
        if again is not None and _ours(again, item, by, now):
            return again  # our write committed; only its acknowledgement was lost (a retried call)
        if again is not None and again.version == item.version and not again.status.final:
            raise ConflictError(f"run {item.run_id} already received a decision for {item.gate_key!r}")
    raise ConflictError(f"review {review_id} changed too often while deciding; try again")


async def _attempt(
    store: Store,
    now: float,
    item: ReviewRecord,
    action: Action,
    by: str,
    role: str | None,
    reason: str | None,
    payload: Any,
    comment: str | None,
    override: bool,
    approvers: Mapping[str, Callable[..., Any]] | None,
) -> ReviewRecord | None:
    updated = item.copy()
    signal_value: dict[str, Any] | None = None
    waited = round(now - item.created_at, 3)
    if action == "reject":
        updated.status = ReviewStatus.REJECTED
        updated.decided_at = now
        updated.decision = {"outcome": "rejected", "by": by, "role": role, "at": now, "reason": reason}
        signal_value = {"approved": False, "reason": reason, "by": by, "role": role}
        kind, data = "review_decided", {**updated.decision, "waited_seconds": waited}
    else:
        if not override:
            if any(a.get("by") == by for a in item.approvals):
                raise ConflictError(f"{by} already approved review {item.review_id}")
            if role in item.required_roles and any(a.get("role") == role for a in item.approvals):
                raise ConflictError(f"role {role!r} already approved review {item.review_id}")
        entry: dict[str, Any] = {"by": by, "role": role, "at": now, "outcome": "approved"}
        if action == "edit":
            entry["outcome"] = "edited"
            entry["changes"] = changes(item.payload, payload)
            updated.payload = payload
        if comment:
            entry["comment"] = comment
        if override:
            entry["override"] = True
        else:
            await _check(role, updated.payload, item.review_id, approvers)
        updated.approvals = [*item.approvals, entry]
        edited = any(a.get("outcome") == "edited" for a in updated.approvals)
        if override or _complete(item, updated.approvals):
            updated.status = ReviewStatus.APPROVED
            updated.decided_at = now
            updated.decision = {
                "outcome": "edited" if edited else "approved",
                "by": by,
                "role": role,
                "at": now,
                "approvals": [{"by": a.get("by"), "role": a.get("role")} for a in updated.approvals],
            }
            if override:
                updated.decision["override"] = True
            signal_value = {"approved": True, "by": by, "role": role, "approvals": updated.decision["approvals"]}
            if edited:
                signal_value["payload"] = updated.payload
            kind = "review_decided"
            data = {**updated.decision, "waited_seconds": waited}
            if "changes" in entry:
                data["changes"] = entry["changes"]
        else:
            missing = [r for r in item.required_roles if r not in {a.get("role") for a in updated.approvals}]
            kind, data = "review_approval_recorded", {**entry, "waiting_for": missing}
    if comment and action == "reject":
        data["comment"] = comment
    data["review_id"] = item.review_id
    events = [Event(run_id=item.run_id, kind=kind, at=now, step_key=item.step_key, data=data)]
    signal = None
    if signal_value is not None and item.meta.get("kind") != "flag":
        signal_value["review_id"] = item.review_id
        signal = signal_record(item.run_id, f"wait:{item.gate_key}", signal_value, now, review_id=item.review_id)
    if not await store.update_review(updated, expected_version=item.version, now=now, events=events, signal=signal):
        return None
    updated.version = item.version + 1
    updated.updated_at = now
    return updated


def decided(hooks: Dispatch, item: ReviewRecord, run: RunRecord | None, now: float) -> None:
    """Report the final decision on ``item`` (``review_decided``)."""
    decision = item.decision or {}
    carrier = run.options.get("observe") if run is not None and run.options else None
    hooks.emit(
        "review_decided",
        workflow=item.workflow,
        run_id=item.run_id,
        step=item.step_key,
        review_id=item.review_id,
        outcome=str(decision.get("outcome") or item.status.value),
        by=decision.get("by"),
        waited_s=max(now - item.created_at, 0.0),
        carrier=carrier if isinstance(carrier, dict) else {},
        created_at=item.created_at,
        queue=item.queue,
        level=item.level,
        at=now,
    )


async def live_item(store: Store, run_id: str, key: str) -> ReviewRecord | None:
    """The item a run's gate ``key`` waits on now (after escalations), or ``None``."""
    item = await store.get_review(review_id_for(run_id, key, 0))
    while item is not None and item.status is ReviewStatus.ESCALATED and item.escalated_to is not None:
        item = await store.get_review(item.escalated_to)
    return item


async def cancel_items(store: Store, run_id: str, now: float, reason: str) -> int:
    """Close the pending items of a cancelled run; return how many."""
    closed = 0
    for item in await store.list_reviews(status=[ReviewStatus.PENDING], run_id=run_id, limit=1000):
        updated = item.copy()
        updated.status = ReviewStatus.CANCELLED
        updated.decided_at = now
        updated.decision = {"outcome": "cancelled", "by": None, "at": now, "reason": reason}
        event = Event(
            run_id=run_id,
            kind="review_cancelled",
            at=now,
            step_key=item.step_key,
            data={"review_id": item.review_id, "reason": reason},
        )
        if await store.update_review(updated, expected_version=item.version, now=now, events=[event]):
            closed += 1
    return closed


@dataclass(frozen=True)
class ReviewStats:
    """Review metrics over the items in the store.

    Attributes:
        items: items of every status (escalations are items of their own).
        by_status: items per status.
        pending: items waiting for a decision.
        overdue: pending items past their deadline (their timer has not fired yet).
        gates: gates reached (items at escalation level 0).
        escalations: items that escalated.
        escalation_rate: gates that escalated at least once, per gate.
        expired: items whose SLA default was taken.
        decisions: items a person approved, edited or rejected.
        time_to_decision: seconds from an item's creation to a person's final
            decision: ``count``, ``mean``, ``p50``, ``p95``, ``max`` (``None`` without decisions).
    """

    items: int
    by_status: dict[str, int]
    pending: int
    overdue: int
    gates: int
    escalations: int
    escalation_rate: float
    expired: int
    decisions: int
    time_to_decision: dict[str, float] | None


def _quantile(ordered: Sequence[float], q: float) -> float:
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def stats(store: Store, now: float, *, limit: int = 100_000) -> ReviewStats:
    """Compute :class:`ReviewStats` over (at most ``limit``) items."""
    items = await store.list_reviews(limit=limit)
    counts = Counter(i.status.value for i in items)
    gates = [i for i in items if i.level == 0]
    escalated_gates = sum(1 for i in gates if i.status is ReviewStatus.ESCALATED)
    decided = sorted(
        i.decided_at - i.created_at
        for i in items
        if i.status in (ReviewStatus.APPROVED, ReviewStatus.REJECTED)
        and i.decided_at is not None
        and (i.decision or {}).get("by") not in (None, "sla")
    )
    timing = None
    if decided:
        timing = {
            "count": float(len(decided)),
            "mean": round(statistics.fmean(decided), 3),
            "p50": round(_quantile(decided, 0.5), 3),
            "p95": round(_quantile(decided, 0.95), 3),
            "max": round(decided[-1], 3),
        }
    pending = [i for i in items if i.status is ReviewStatus.PENDING]
    return ReviewStats(
        items=len(items),
        by_status=dict(sorted(counts.items())),
        pending=len(pending),
        overdue=sum(1 for i in pending if i.due_at is not None and i.due_at <= now),
        gates=len(gates),
        escalations=counts.get(ReviewStatus.ESCALATED.value, 0),
        escalation_rate=round(escalated_gates / len(gates), 4) if gates else 0.0,
        expired=counts.get(ReviewStatus.EXPIRED.value, 0),
        decisions=len(decided),
        time_to_decision=timing,
    )
