"""The engine's side of review gates: park a run on a review item and act on its SLA.

A gate on a run waits for the step record ``wait:<key>`` (``key`` is ``review:<step>``
or ``queue:<name>:<step>``). Reviewers never touch the run: a final decision updates the
item and inserts that record *in one transaction* (:meth:`Store.update_review`), and
wakes the run. While the item is pending the run is ``waiting`` with its ``wake_at`` on
the item's next timer (the warning, then the deadline): a worker wakes it then, this
module sees the timer due and acts, with a compare-and-set on the item, so an
escalation or a default fires exactly once however many workers and restarts there are.

Item ids are derived from ``(run, key, escalation level)``: a replay, or a worker that
crashed between two writes, finds the item it (or another worker) created.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from orchestrate import _codec, _serde
from orchestrate._engine.state import RunState, Suspend
from orchestrate.errors import PayloadTooLargeError
from orchestrate.review import _notify
from orchestrate.review._decisions import decided
from orchestrate.review._outcomes import outcome_of, review_id_for, signal_record
from orchestrate.review.gate import (
    SELF_APPROVAL,
    AnyGate,
    Default,
    Escalate,
    HumanReviewGate,
    ReviewOutcome,
    RouteTo,
    TieredGate,
    describe_action,
)
from orchestrate.store.base import Event, ReviewRecord, ReviewStatus, StepRecord
from orchestrate.types import StepStatus

_MAX_PASSES = 16  # each pass parks, returns, or saw the item move on; more means a livelock


async def await_review(
    ctx: RunState,
    gate: AnyGate,
    *,
    key: str,
    step_key: str,
    payload: Any,
    queue: str | None = None,
    before: bool = False,
) -> ReviewOutcome:
    """Return the decision on ``payload``, or park the run until there is one.

    Args:
        ctx: the run.
        gate: the gate's rules (a tiered gate picks them from ``payload``).
        key: what the run waits for: ``review:<step>`` or ``queue:<name>:<step>``.
        step_key: the step whose output is reviewed.
        payload: the value under review (stored as JSON on the item).
        queue: the queue's name for items of a human queue.
        before: the payload is the input of a step that runs only once approved.
    """
    wait_key = f"wait:{key}"
    chosen, tier = gate.choose(payload) if isinstance(gate, TieredGate) else (gate, None)
    reject_route = chosen.on_reject.step if chosen is not None and chosen.on_reject is not None else None
    found = ctx.recorded.get(wait_key)
    if found is not None:
        if "review_id" not in found.meta and not found.meta.get("auto"):
            await _close_after_signal(ctx, key, found)
        return outcome_of(found.output, payload, reject_route=reject_route)
    if chosen is None:
        return await _auto(ctx, wait_key, step_key, payload, tier)
    # Refused here, naming the review, if people could not be shown it: nested too deep, or
    # over the store's payload limit (the store refuses the item).
    _codec.check_depth(payload, f"the review at step {step_key!r} of run {ctx.run_id}", "payload")
    # Shown as JSON: a declared type's value (a dataclass, a Decimal) as pydantic writes it;
    # an edit comes back as JSON and is revived into the declared type.
    shown = json.loads(_serde.dumps(_codec.to_json(payload, f"the payload reviewed at step {step_key!r}")))
    clock = ctx.engine.clock
    item = await _current(ctx, chosen, key=key, step_key=step_key, shown=shown, tier=tier, queue=queue, before=before)
    for _ in range(_MAX_PASSES):
        if item.status is ReviewStatus.PENDING:
            now = clock.now()
            if item.due_at is not None and now >= item.due_at:
                await _expire(ctx, chosen, item, now)
            elif item.warn_at is not None and item.warned_at is None and now >= item.warn_at:
                await _warn(ctx, chosen, item, now)
            else:
                wake = item.warn_at if item.warn_at is not None and item.warned_at is None else item.due_at
                raise Suspend(wake_at=wake, reason=f"signal:{key}", signal=wait_key)
            item = await _current(
                ctx, chosen, key=key, step_key=step_key, shown=shown, tier=tier, queue=queue, before=before
            )
            continue
        # Final: its decision was recorded in the same transaction (after our steps were read).
        record = await _recorded(ctx, wait_key)
        if record is not None:
            return outcome_of(record.output, payload, reject_route=reject_route)
        raise Suspend(wake_at=None, reason=f"signal:{key}", signal=wait_key)
    raise Suspend(wake_at=clock.now() + 1.0, reason=f"signal:{key}", signal=wait_key)


async def open_flag(ctx: RunState, record: StepRecord) -> None:
    """A step's fallback flagged it (``flag="human_review"``): open a review item people see
    and close, without the run waiting for it (seed 000: "still sends the ETA but flags a
    human review"). Idempotent: the item's id comes from the run and the step, so a replay
    (or a crash between the step's record and this write) opens it once."""
    flag = str(record.meta.get("flag"))
    key = f"flag:{record.step_key}"
    review_id = review_id_for(ctx.run_id, key, 0)
    store = ctx.engine.store
    if await store.get_review(review_id) is not None:
        return
    now = ctx.engine.clock.now()
    error = {k: v for k, v in (record.error or {}).items() if k != "traceback"}
    item = ReviewRecord(
        review_id=review_id,
        run_id=ctx.run_id,
        workflow=ctx.workflow,
        step_key=record.step_key,
        gate_key=key,
        payload={"flag": flag, "step": record.step_key, "fallback": record.fallback, "output": record.output},
        queue=flag,
        created_at=now,
        updated_at=now,
        meta={"kind": "flag", "flag": flag, "error": error, "reviews": "output"},
    )
    data = {"review_id": review_id, "flag": flag, "blocking": False, "fallback": record.fallback}
    try:
        await store.create_review(
            item, event=Event(run_id=ctx.run_id, kind="review_created", at=now, step_key=record.step_key, data=data)
        )
    except PayloadTooLargeError as exc:
        # The output fit in its record but not with the flag around it: the item goes
        # without it (people find it in the step's record).
        item.payload = {**item.payload, "output": None, "output_omitted": f"{exc.size:,} bytes of JSON"}
        await store.create_review(
            item, event=Event(run_id=ctx.run_id, kind="review_created", at=now, step_key=record.step_key, data=data)
        )


async def _recorded(ctx: RunState, wait_key: str) -> StepRecord | None:
    for record in await ctx.engine.store.get_steps(ctx.run_id):
        if record.step_key == wait_key:
            ctx.recorded[wait_key] = record
            return record
    return None


async def _auto(ctx: RunState, wait_key: str, step_key: str, payload: Any, tier: str | None) -> ReviewOutcome:
    """A tier without review: record the automatic approval (once) and go on."""
    now = ctx.engine.clock.now()
    value = {"approved": True, "auto": True, "tier": tier, "by": "auto"}
    record = StepRecord(
        run_id=ctx.run_id,
        step_key=wait_key,
        name=wait_key,
        status=StepStatus.SUCCEEDED,
        output=value,
        started_at=now,
        finished_at=now,
        meta={"auto": True, "tier": tier},
    )
    stored = await ctx.record(
        record,
        event=Event(run_id=ctx.run_id, kind="review_auto_approved", at=now, step_key=step_key, data={"tier": tier}),
    )
    return outcome_of(stored.output, payload)


async def _current(
    ctx: RunState,
    gate: HumanReviewGate,
    *,
    key: str,
    step_key: str,
    shown: Any,
    tier: str | None,
    queue: str | None,
    before: bool = False,
) -> ReviewRecord:
    """The gate's live item: created if missing, following escalations to the last one."""
    store = ctx.engine.store
    item = await store.get_review(review_id_for(ctx.run_id, key, 0))
    if item is None:
        item = await _create(
            ctx, gate, level=0, key=key, step_key=step_key, shown=shown, tier=tier, queue=queue, before=before
        )
    while item.status is ReviewStatus.ESCALATED and item.escalated_to is not None:
        child = await store.get_review(item.escalated_to)
        if child is None:  # the escalating worker died between its two writes
            child = await _create(
                ctx,
                gate,
                level=item.level + 1,
                key=key,
                step_key=step_key,
                shown=item.payload,
                tier=tier,
                queue=item.queue,
                parent=item,
                before=item.meta.get("reviews") == "input",
            )
        item = child
    return item


async def _create(
    ctx: RunState,
    gate: HumanReviewGate,
    *,
    level: int,
    key: str,
    step_key: str,
    shown: Any,
    tier: str | None,
    queue: str | None,
    parent: ReviewRecord | None = None,
    before: bool = False,
) -> ReviewRecord:
    engine = ctx.engine
    rules = gate.level(level)
    now = engine.clock.now()
    due = now + rules.timeout if rules.timeout is not None else None
    warn = due - rules.warn_before if due is not None and rules.warn_before else None
    marker = uuid.uuid4().hex
    record = ReviewRecord(
        review_id=review_id_for(ctx.run_id, key, level),
        run_id=ctx.run_id,
        workflow=ctx.workflow,
        step_key=step_key,
        gate_key=key,
        payload=shown,
        queue=queue or gate.queue,
        roles=list(rules.roles),
        required_roles=list(rules.required_roles),
        min_approvals=rules.min_approvals,
        priority=rules.priority,
        sla_seconds=rules.timeout,
        due_at=due,
        warn_at=warn,
        level=level,
        parent_id=parent.review_id if parent is not None else None,
        created_at=now,
        updated_at=now,
        meta={
            "tier": tier,
            "on_timeout": describe_action(rules.on_timeout) if rules.timeout is not None else None,
            "on_reject": gate.on_reject.step if gate.on_reject is not None else "fail",
            "created_by": marker,
            # what the reviewer decides on: the step's input (it has not run) or its output
            "reviews": "input" if before else "output",
            SELF_APPROVAL: gate.allow_self_approval,
        },
    )
    data = {
        "review_id": record.review_id,
        "roles": record.roles,
        "required_roles": record.required_roles,
        "priority": record.priority,
        "due_at": due,
        "level": level,
        "tier": tier,
        "reviews": "input" if before else "output",
    }
    stored = await engine.store.create_review(
        record, event=Event(run_id=ctx.run_id, kind="review_created", at=now, step_key=step_key, data=data)
    )
    if stored.meta.get("created_by") == marker:
        engine.log.info(
            "review_created",
            workflow=ctx.workflow,
            run_id=ctx.run_id,
            step=step_key,
            review_id=stored.review_id,
            roles=stored.allowed_roles,
            priority=stored.priority,
            level=level,
        )
        if ctx.hooks is not None:
            ctx.hooks.emit(
                "review_created",
                workflow=ctx.workflow,
                run_id=ctx.run_id,
                step=step_key,
                review_id=stored.review_id,
                queue=stored.queue,
                roles=list(stored.allowed_roles),
                priority=stored.priority,
                level=level,
                due_at=due,
                at=now,
            )
        event = "review_escalated" if level else "review_created"
        await _notify.notify(engine.store, engine.log, gate.notify, event=event, review=stored, now=now)
    return stored


async def _expire(ctx: RunState, gate: HumanReviewGate, item: ReviewRecord, now: float) -> None:
    """The SLA passed: escalate or take the default, unless someone else got there first."""
    engine = ctx.engine
    action = gate.level(item.level).on_timeout
    label = describe_action(action)
    updated = item.copy()
    updated.decided_at = now
    if isinstance(action, Escalate):
        child_id = review_id_for(ctx.run_id, item.gate_key, item.level + 1)
        updated.status = ReviewStatus.ESCALATED
        updated.escalated_to = child_id
        updated.decision = {"outcome": "escalated", "by": "sla", "at": now, "to": action.to, "review_id": child_id}
        event = Event(
            run_id=ctx.run_id,
            kind="review_escalated",
            at=now,
            step_key=item.step_key,
            data={
                "review_id": item.review_id,
                "to_review_id": child_id,
                "role": action.to,
                "sla_seconds": action.timeout,
                "level": item.level + 1,
            },
        )
        if await engine.store.update_review(updated, expected_version=item.version, now=now, events=[event]):
            engine.log.warning(
                "review_escalated", run_id=ctx.run_id, review_id=item.review_id, to=action.to, to_review_id=child_id
            )
            if ctx.hooks is not None:
                ctx.hooks.emit(
                    "review_escalated",
                    workflow=ctx.workflow,
                    run_id=ctx.run_id,
                    step=item.step_key,
                    review_id=item.review_id,
                    to_review_id=child_id,
                    to=action.to,
                    level=item.level + 1,
                    waited_s=max(now - item.created_at, 0.0),
                    at=now,
                )
            await _create(
                ctx,
                gate,
                level=item.level + 1,
                key=item.gate_key,
                step_key=item.step_key,
                shown=item.payload,
                tier=item.meta.get("tier"),
                queue=item.queue,
                parent=updated,
                before=item.meta.get("reviews") == "input",
            )
        return
    kind = "route" if isinstance(action, RouteTo) else "default" if isinstance(action, Default) else str(action)
    sla = f"{item.sla_seconds:g}s" if item.sla_seconds is not None else "its deadline"
    value: dict[str, Any] = {
        "approved": kind in ("approve", "default"),
        "timed_out": True,
        "action": kind,
        "by": "sla",
        "review_id": item.review_id,
        "reason": f"no decision within the SLA of {sla}; took the default: {label}",
    }
    if isinstance(action, RouteTo):
        value["route"] = action.step
    if isinstance(action, Default):
        value["payload"] = json.loads(_serde.dumps(action.value, what=f"the default of review {item.review_id}"))
    updated.status = ReviewStatus.EXPIRED
    updated.decision = {"outcome": "expired", "action": label, "by": "sla", "at": now}
    signal = signal_record(ctx.run_id, f"wait:{item.gate_key}", value, now, review_id=item.review_id)
    event = Event(
        run_id=ctx.run_id,
        kind="review_expired",
        at=now,
        step_key=item.step_key,
        data={"review_id": item.review_id, "action": label},
    )
    if await engine.store.update_review(updated, expected_version=item.version, now=now, events=[event], signal=signal):
        engine.log.warning("review_expired", run_id=ctx.run_id, review_id=item.review_id, action=label)
        if ctx.hooks is not None:
            decided(ctx.hooks, updated, ctx.run, now)


async def _warn(ctx: RunState, gate: HumanReviewGate, item: ReviewRecord, now: float) -> None:
    engine = ctx.engine
    updated = item.copy()
    updated.warned_at = now
    left = (item.due_at or now) - now
    event = Event(
        run_id=ctx.run_id,
        kind="review_sla_warning",
        at=now,
        step_key=item.step_key,
        data={"review_id": item.review_id, "due_at": item.due_at, "seconds_left": round(left, 3)},
    )
    if await engine.store.update_review(updated, expected_version=item.version, now=now, events=[event]):
        engine.log.warning("review_sla_warning", run_id=ctx.run_id, review_id=item.review_id, seconds_left=left)
        await _notify.notify(engine.store, engine.log, gate.notify, event="review_sla_warning", review=updated, now=now)


async def _close_after_signal(ctx: RunState, key: str, record: StepRecord) -> None:
    """A raw ``Client.signal`` decided the gate: close its item so that queues stay true."""
    store = ctx.engine.store
    item = await store.get_review(review_id_for(ctx.run_id, key, 0))
    while item is not None and item.status is ReviewStatus.ESCALATED and item.escalated_to is not None:
        item = await store.get_review(item.escalated_to)
    if item is None or item.status is not ReviewStatus.PENDING:
        return
    value = record.output
    rejected = isinstance(value, dict) and "approved" in value and not value["approved"]
    by = (value.get("by") if isinstance(value, dict) else None) or record.meta.get("by")
    updated = item.copy()
    updated.status = ReviewStatus.REJECTED if rejected else ReviewStatus.APPROVED
    updated.decided_at = record.finished_at
    updated.decision = {
        "outcome": "rejected" if rejected else "approved",
        "by": by,
        "role": None,
        "at": record.finished_at,
        "via": "signal",
    }
    if isinstance(value, dict) and value.get("reason"):
        updated.decision["reason"] = value["reason"]
    now = ctx.engine.clock.now()
    data = {"review_id": item.review_id, "outcome": updated.decision["outcome"], "by": by, "via": "signal"}
    if (
        await store.update_review(
            updated,
            expected_version=item.version,
            now=now,
            events=[Event(run_id=ctx.run_id, kind="review_decided", at=now, step_key=item.step_key, data=data)],
        )
        and ctx.hooks is not None
    ):
        decided(ctx.hooks, updated, ctx.run, now)
