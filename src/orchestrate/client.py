"""``Client``: the one façade over the store and the engine.

The CLI (and later the HTTP server and the dashboard) are thin layers over it. A client
needs only a store URL to inspect runs; to start, resume or replay runs it needs the
workflows too (``Client(url, workflows=[...])``).

Every method that takes a run id or a review id also takes a unique prefix of one, as
people type them: ``await client.get("3f2a")``. A whole id is looked up directly; a
prefix that several ids share is refused with :class:`~orchestrate.errors.InvalidInputError`
naming a few of them.

What it returns never shows a secret in an error: a run's and a step's error, a step's
metadata, the history's event data and a review item's metadata have every ``Secret``
value of the process and common credential formats masked — also when an older version
stored them in clear. Inputs, outputs and review payloads are returned as stored.
"""

from __future__ import annotations

import builtins
import datetime
import re
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from orchestrate._client_quality import QualityMethods
from orchestrate._engine.hooks import hooks_of
from orchestrate._engine.runner import Engine, outcome
from orchestrate._engine.state import new_signal_id
from orchestrate._redact import masked_fields
from orchestrate.errors import (
    ConflictError,
    InvalidInputError,
    OrchestrateError,
    ReviewNotFoundError,
    RunNotFoundError,
    RunStateError,
)
from orchestrate.policies import parse_duration
from orchestrate.review import _decisions
from orchestrate.review._decisions import ReviewStats
from orchestrate.review.gate import refuse_self_approval
from orchestrate.store import Store, _blobs, open_store
from orchestrate.store._access_policy import check_server
from orchestrate.store.base import (
    PRUNED_BY_DEFAULT,
    REPLAYED_EVENT,
    Event,
    ReviewRecord,
    ReviewStatus,
    RunRecord,
    StepRecord,
)
from orchestrate.types import RunStatus, StepStatus
from orchestrate.workflow import AnyWorkflow

if TYPE_CHECKING:
    pass


@dataclass
class RunDetail:
    """A run with its step records, its history and its review items (what ``runs show`` prints).

    Attributes:
        run: the run's record.
        steps: its step records, in the order they were recorded.
        events: its history, oldest first.
        reviews: its review items, most urgent first (every status).
    """

    run: RunRecord
    steps: list[StepRecord]
    events: list[Event]
    reviews: list[ReviewRecord] = field(default_factory=list)

    def usage(self) -> dict[str, Any]:
        """Tokens and cost of the run's model calls, summed over its steps (and per model).

        Returns:
            ``{"tokens_in", "tokens_out", "cost", "by_model": {model: {...the same three}}}``.
        """
        total: dict[str, Any] = {"tokens_in": 0, "tokens_out": 0, "cost": 0.0, "by_model": {}}
        for step in self.steps:
            model = step.meta.get("model")
            if not isinstance(model, dict):
                continue
            per = total["by_model"].setdefault(
                model.get("model") or "?", {"tokens_in": 0, "tokens_out": 0, "cost": 0.0}
            )
            for bucket in (total, per):
                bucket["tokens_in"] += model.get("tokens_in", 0)
                bucket["tokens_out"] += model.get("tokens_out", 0)
                bucket["cost"] += model.get("cost", 0.0)
        return total


class Client(QualityMethods):
    """Start, inspect, signal, cancel and replay runs.

    Args:
        store: a store URL or an opened/unopened store.
        workflows: workflows this client may start or resume in-process.
        engine: an engine to share (its store is used).
        approvers: approval checks by role for this client's decisions: ``check(payload)``
            returning false refuses an approval in that role (:class:`ReviewPermissionError`).
            A role not named here uses the check registered for the process with
            :func:`~orchestrate.review.approval`, if any.
    """

    def __init__(
        self,
        store: str | Store | None = None,
        *,
        workflows: Iterable[AnyWorkflow] = (),
        engine: Engine | None = None,
        approvers: Mapping[str, Callable[..., Any]] | None = None,
    ) -> None:
        if engine is None:
            engine = Engine(
                open_store(store) if isinstance(store, str) or store is None else store, workflows=workflows
            )
        else:
            for wf in workflows:
                engine.register(wf)
        self.engine = engine
        self.store = engine.store
        self.approvers: dict[str, Callable[..., Any]] = dict(approvers or {})

    async def __aenter__(self) -> Client:
        """Open the store; return this client."""
        await self.engine.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        """Close the store (and the engine's resources)."""
        await self.engine.close()

    # ids --------------------------------------------------------------------------------
    async def _find_run(self, run_id: str) -> RunRecord:
        """The run ``run_id`` names: the run of that id, else the one whose id starts with it."""
        await self.engine.open()
        run = await self.store.get_run(run_id)
        if run is None:
            full = await _by_prefix("run", run_id, self.store.find_run_ids, RunNotFoundError)
            run = await self.store.get_run(full)
            if run is None:  # deleted in between
                raise RunNotFoundError(f"run {run_id!r} does not exist")
        return run

    async def _review_id(self, review_id: str) -> str:
        """The id of the item ``review_id`` names: itself if it exists, else the one it begins."""
        await self.engine.open()
        if await self.store.get_review(review_id) is not None:
            return review_id
        return await _by_prefix("review", review_id, self.store.find_review_ids, ReviewNotFoundError)

    # runs ------------------------------------------------------------------------------
    async def start(
        self,
        workflow: AnyWorkflow | str,
        input: Any = None,
        *,
        run_id: str | None = None,
        options: dict[str, Any] | None = None,
        queue: str = "default",
        start_at: float | datetime.datetime | None = None,
    ) -> str:
        """Create a pending run for a worker (or :meth:`resume`) to execute.

        Args:
            workflow: the workflow, or the name of one registered with this client.
            input: the run's input.
            run_id: the run's id (default: a new UUID); if that run exists it is kept as it is.
            options: extra run options recorded on the run.
            queue: the queue the run waits in. Workers started with ``queues=[...]``
                (``orchestrate worker --queue NAME``) claim only runs of those queues;
                workers without it take every queue. 1 to 100 ASCII letters, digits,
                ``-``, ``_``, ``.`` or ``:``.
            start_at: a delayed start: no worker claims the run before this time (POSIX
                seconds on the engine's clock, or a timezone-aware datetime). The wait is
                a timer in the store: it holds no worker and survives restarts.

        Returns:
            The run's id (``run_id`` when given).

        Raises:
            InvalidInputError: ``queue`` is not a valid queue name, or ``start_at`` is a
                naive datetime.
        """
        if isinstance(start_at, datetime.datetime):
            if start_at.tzinfo is None:
                raise InvalidInputError("start_at must be timezone-aware (e.g. datetime(..., tzinfo=ZoneInfo('UTC')))")
            start_at = start_at.timestamp()
        return await self.engine.start(
            workflow, input, run_id=run_id, options=options, queue=_check_queue_name(queue), start_at=start_at
        )

    async def run(
        self,
        workflow: AnyWorkflow | str,
        input: Any = None,
        *,
        run_id: str | None = None,
        options: dict[str, Any] | None = None,
    ) -> RunRecord:
        """Run in this process until it ends or waits for a person.

        The workflow's exceptions do not propagate: a failed run is returned with its
        status and error.

        Returns:
            The run's record as it stands then: ended, or waiting for a person or a signal.
        """
        return _masked_run(await self.engine.run_record(workflow, input, run_id=run_id, options=options))

    async def resume(self, run_id: str) -> RunRecord:
        """Drive a run in this process until it ends or waits for a person.

        Its workflow (at the run's version) must be registered with this client.

        Returns:
            The run's record as it stands then.

        Raises:
            RunNotFoundError: no such run.
            WorkflowNotFoundError: its workflow is not registered here.
        """
        run = await self._find_run(run_id)
        return _masked_run(await self.engine.settle(run.run_id))

    async def get(self, run_id: str) -> RunRecord:
        """The run's record.

        Returns:
            The record as stored now.

        Raises:
            RunNotFoundError: no such run.
            InvalidInputError: ``run_id`` is a prefix of several run ids.
        """
        return _masked_run(await self._find_run(run_id))

    async def result(self, run_id: str) -> Any:
        """The output of a succeeded run.

        Returns:
            The run's output.

        Raises:
            RunFailedError: the run failed, died or was cancelled.
            ApprovalRequired: the run waits for a person.
        """
        return outcome(await self.get(run_id))

    async def list(
        self,
        *,
        status: RunStatus | str | Iterable[RunStatus | str] | None = None,
        workflow: str | None = None,
        limit: int = 50,
        values: bool = True,
    ) -> list[RunRecord]:
        """Runs, newest first.

        Args:
            status: one status (``"dead"`` or ``RunStatus.DEAD``), several, or ``None``
                (or none) for every status.
            workflow: only runs of this workflow.
            limit: at most this many runs.
            values: read each run's input and output too; ``False`` leaves them ``None``
                (a summary: what ``orchestrate runs list`` shows, whatever their size).

        Returns:
            The runs' records.

        Raises:
            InvalidInputError: a status is not a run status.
        """
        await self.engine.open()
        runs = await self.store.list_runs(status=_statuses(status), workflow=workflow, limit=limit, values=values)
        return [_masked_run(run) for run in runs]

    async def prune(
        self,
        *,
        older_than: float | str,
        status: RunStatus | str | Iterable[RunStatus | str] | None = None,
        dry_run: bool = False,
        batch: int = 500,
    ) -> int:
        """Delete the runs that ended longer ago than ``older_than``, with all they kept.

        A run goes with its step records, its history and its review items
        (:meth:`~orchestrate.store.Store.prune_runs`); runs that have not ended are never
        deleted. Deleted in batches of ``batch`` runs, one transaction each, so workers
        keep writing in between.

        Args:
            older_than: seconds, or a duration as text (``"30d"``, ``"12h"``): runs whose
                last change (their end) is older are deleted.
            status: the ended statuses to delete (default: succeeded, failed and
                cancelled; dead runs, the dead-letter queue, only when named).
            dry_run: delete nothing; return how many runs would be deleted.
            batch: runs per transaction.

        Returns:
            How many runs were deleted (or, with ``dry_run``, would be).

        Raises:
            InvalidInputError: ``older_than`` is not a positive duration, or a status is
                not an ended one.
        """
        seconds = _duration(older_than)
        statuses = _statuses(status) or list(PRUNED_BY_DEFAULT)
        if not isinstance(batch, int) or batch < 1:
            raise InvalidInputError(f"batch must be an int >= 1, got {batch!r}")
        await self.engine.open()
        before = self.engine.clock.now() - seconds
        if dry_run:
            return await self.store.prune_runs(before=before, status=statuses, dry_run=True)
        pruned = 0
        while True:
            done = await self.store.prune_runs(before=before, status=statuses, limit=batch)
            pruned += done
            if done < batch:
                if pruned:
                    await _blobs.sweep(self.store)  # the pruned runs' blobs go with them
                return pruned

    async def detail(self, run_id: str) -> RunDetail:
        """The run with its steps, its history and its review items.

        Returns:
            A :class:`RunDetail` (what ``orchestrate runs show`` prints).
        """
        run = await self.get(run_id)
        found = run.run_id
        return RunDetail(
            run,
            [
                _masked(await _blobs.readable(step, self.store), "error", "meta")
                for step in await self.store.get_steps(found)
            ],
            [_masked(event, "data") for event in await self.store.list_events(found)],
            [_masked(item, "meta") for item in await self.store.list_reviews(run_id=found, limit=1000)],
        )

    async def cancel(self, run_id: str, *, reason: str = "cancelled by request") -> RunRecord:
        """Cancel a run that has not ended (and its pending review items).

        A worker driving it stops at its next write.

        Returns:
            The cancelled run's record.

        Raises:
            RunStateError: the run has ended.
        """
        found = (await self._find_run(run_id)).run_id
        record = await self.store.cancel_run(found, now=self.engine.clock.now(), reason=reason)
        await _decisions.cancel_items(self.store, found, self.engine.clock.now(), reason)
        return _masked_run(record)

    async def signal(self, run_id: str, key: str, value: Any = None, *, by: str | None = None) -> None:
        """Deliver ``value`` to ``ctx.wait(key)`` of a run, exactly once; the run is due at once.

        Returns:
            Nothing: the signal is recorded. A worker, or :meth:`resume`, continues the run.

        Raises:
            ConflictError: the signal was already delivered (the first delivery stands).
            RunStateError: the run has ended.
        """
        run = await self.get(run_id)
        run_id = run.run_id
        if key.startswith("review:"):
            await check_server(self.store, f"the decision {key!r} on run {run_id}")
        if run.status.terminal:
            raise RunStateError(f"run {run_id!r} is {run.status.value}; it takes no more signals")
        now = self.engine.clock.now()
        marker = new_signal_id()
        step_key = f"wait:{key}"
        record = StepRecord(
            run_id=run_id,
            step_key=step_key,
            name=step_key,
            status=StepStatus.SUCCEEDED,
            output=value,
            attempts=1,
            started_at=now,
            finished_at=now,
            meta={"signal_id": marker, "by": by},
        )
        stored = await self.store.record_step(
            record,
            fence=None,
            now=now,
            event=Event(run_id=run_id, kind="signal_received", at=now, step_key=step_key, data={"by": by}),
        )
        if stored.meta.get("signal_id") != marker:
            raise ConflictError(f"run {run_id!r} already received signal {key!r}")
        await self.store.wake_run(run_id, now=now)

    async def decide(
        self,
        run_id: str,
        step: str,
        *,
        approved: bool,
        payload: Any = None,
        reason: str | None = None,
        by: str | None = None,
        role: str | None = None,
    ) -> None:
        """Approve (optionally with an edited ``payload``) or reject a gated step's output.

        With ``role`` this is a reviewer's decision on the gate's live item, checked like
        :meth:`approve`, :meth:`edit` and :meth:`reject`. Without it, it is an operator's
        override that decides the gate as a whole (roles and required approvals aside),
        recorded as such in the item and the run's history.

        Returns:
            Nothing: the decision is recorded, and the run is due once it is final.

        Raises:
            InvalidInputError: a rejection without a reason.
            ReviewPermissionError: ``role`` may not decide the item.
            ConflictError: the gate was decided already.
        """
        if not approved and not reason:
            raise InvalidInputError("a rejection needs a reason")
        run_id = (await self._find_run(run_id)).run_id
        item = await _decisions.live_item(self.store, run_id, f"review:{step}")
        if item is None or item.status.final:
            decision: dict[str, Any] = {"approved": approved, "by": by}
            if payload is not None:
                decision["payload"] = payload
            if reason is not None:
                decision["reason"] = reason
            await self.signal(run_id, f"review:{step}", decision, by=by)
            return
        action: _decisions.Action = "reject" if not approved else "edit" if payload is not None else "approve"
        await _decisions.decide(
            self.store,
            self.engine.clock.now(),
            item.review_id,
            action=action,
            by=by or "operator",
            role=role,
            reason=reason,
            payload=payload,
            override=role is None,
            hooks=hooks_of(self.engine),
            approvers=self.approvers,
        )

    # reviews ----------------------------------------------------------------------------
    async def list_reviews(
        self,
        *,
        role: str | None = None,
        status: ReviewStatus | str | Sequence[ReviewStatus | str] | None = ReviewStatus.PENDING,
        run_id: str | None = None,
        limit: int = 50,
    ) -> builtins.list[ReviewRecord]:
        """Review items, most urgent first (priority, then deadline, then age).

        Args:
            role: only the items this role may decide (those open to anyone included).
            status: one status, several, or ``None`` for all (default: pending).
            run_id: only this run's items.
            limit: at most this many items.

        Returns:
            The items' records.

        Raises:
            InvalidInputError: a status is not a review status.
            RunNotFoundError: ``run_id`` names no run.
        """
        await self.engine.open()
        if run_id is not None:
            run_id = (await self._find_run(run_id)).run_id
        if status is None:
            statuses = None
        else:
            wanted = [status] if isinstance(status, str) else list(status)
            statuses = [_review_status(s) for s in wanted]
        items = await self.store.list_reviews(status=statuses, role=role, run_id=run_id, limit=limit)
        return [_masked(item, "meta") for item in items]

    async def get_review(self, review_id: str) -> ReviewRecord:
        """The review item.

        Returns:
            The item's record as stored now.

        Raises:
            ReviewNotFoundError: no such item.
            InvalidInputError: ``review_id`` is a prefix of several review ids.
        """
        item = await self.store.get_review(await self._review_id(review_id))
        if item is None:
            raise ReviewNotFoundError(f"review {review_id!r} does not exist")
        return _masked(item, "meta")

    async def approve(
        self, review_id: str, *, by: str, role: str | None = None, comment: str | None = None
    ) -> ReviewRecord:
        """Approve the item as ``by`` in ``role``; the run resumes once every required approval is in.

        Returns:
            The item after the approval: ``approved`` when it was the last one needed,
            else still ``pending``.

        Raises:
            ReviewPermissionError: ``role`` may not decide this item.
            ConflictError: it was decided already, or ``by`` (or ``role``) approved it already.
        """
        review_id = await self._review_id(review_id)
        await refuse_self_approval(self.store, review_id, by=by)
        now = self.engine.clock.now()
        item = await _decisions.decide(
            self.store,
            now,
            review_id,
            action="approve",
            by=by,
            role=role,
            comment=comment,
            hooks=hooks_of(self.engine),
            approvers=self.approvers,
        )
        return _masked(item, "meta")

    async def reject(self, review_id: str, *, by: str, reason: str, role: str | None = None) -> ReviewRecord:
        """Reject the item; the run fails with ``RejectedError`` or goes where the gate routes rejections.

        Returns:
            The item after the decision (``rejected``).

        Raises:
            ReviewPermissionError: ``role`` may not decide this item.
            ConflictError: it was decided already.
        """
        review_id = await self._review_id(review_id)
        now = self.engine.clock.now()
        item = await _decisions.decide(
            self.store,
            now,
            review_id,
            action="reject",
            by=by,
            role=role,
            reason=reason,
            hooks=hooks_of(self.engine),
            approvers=self.approvers,
        )
        return _masked(item, "meta")

    async def edit(
        self, review_id: str, payload: Any, *, by: str, role: str | None = None, comment: str | None = None
    ) -> ReviewRecord:
        """Approve with edits: the run continues with ``payload``; the changes are recorded.

        Returns:
            The item after the edit: ``approved`` when it was the last approval needed,
            else still ``pending`` (with the edited payload).

        Raises:
            ReviewPermissionError: ``role`` may not decide this item.
            ConflictError: it was decided already, or ``by`` (or ``role``) approved it already.
        """
        review_id = await self._review_id(review_id)
        await refuse_self_approval(self.store, review_id, by=by)
        now = self.engine.clock.now()
        item = await _decisions.decide(
            self.store,
            now,
            review_id,
            action="edit",
            by=by,
            role=role,
            payload=payload,
            comment=comment,
            hooks=hooks_of(self.engine),
            approvers=self.approvers,
        )
        return _masked(item, "meta")

    async def review_stats(self) -> ReviewStats:
        """Escalation rate, time to decision and counts over the review items.

        Returns:
            A :class:`~orchestrate.review.ReviewStats`.
        """
        await self.engine.open()
        return await _decisions.stats(self.store, self.engine.clock.now())

    # dead-letter queue ------------------------------------------------------------------
    async def dead_letters(
        self, *, workflow: str | None = None, limit: int = 50, values: bool = True
    ) -> builtins.list[RunRecord]:
        """The dead-letter queue, newest first: dead runs that were not replayed since.

        ``values=False`` leaves each run's input and output unread (``None``), as for
        :meth:`list`.

        Returns:
            The dead runs' records.
        """
        await self.engine.open()
        dead = await self.store.list_dead_letters(workflow=workflow, limit=limit, values=values)
        return [_masked_run(run) for run in dead]

    async def replay(
        self,
        run_id: str,
        *,
        from_step: str | None = None,
        input: Any = None,
        version: str | None = None,
        execute: bool = True,
        options: dict[str, Any] | None = None,
    ) -> RunRecord:
        """Start a new run from a finished one, reusing its recorded steps.

        Without ``from_step`` every succeeded step is reused and execution resumes at the
        failure. With ``from_step`` the steps recorded before it are reused and it runs
        again, with ``input`` (if given) as its input. Without ``from_step``, ``input``
        replaces the run's input and nothing is reused.

        The replayed run leaves the dead-letter queue; its history names the new run.

        Args:
            from_step: the step to run again (the steps recorded before it are reused).
            input: ``from_step``'s new input; without ``from_step``, the new run's input.
            version: the workflow version to use (default: the latest registered here).
            execute: drive the new run in this process before returning.
            options: extra run options recorded on the new run (e.g. the CLI's ``target``).

        Returns:
            The new run's record: as it stands after driving it, or ``pending`` without
            ``execute``.

        Raises:
            RunStateError: the run has not ended.
            InvalidInputError: it has no recorded step ``from_step``.
        """
        source = await self.get(run_id)
        run_id = source.run_id
        if not source.status.terminal:
            raise RunStateError(f"run {run_id!r} is {source.status.value}; only ended runs can be replayed")
        workflow = self.engine.get_workflow(source.workflow, version)
        steps = await self.store.get_steps(run_id)
        keys: list[str] = []
        run_options: dict[str, Any] = {**(options or {}), "replay_of": run_id}
        if from_step is not None:
            names = [s.step_key for s in steps]
            if from_step not in names:
                raise InvalidInputError(
                    f"run {run_id!r} has no recorded step {from_step!r} (recorded: {', '.join(names) or 'none'})"
                )
            keys = [s.step_key for s in steps[: names.index(from_step)] if s.status is StepStatus.SUCCEEDED]
            if input is not None:
                run_options["overrides"] = {from_step: input}
            new_input = source.input
        elif input is not None:
            new_input = input
        else:
            keys = [
                s.step_key for s in steps if s.status is StepStatus.SUCCEEDED and not s.step_key.startswith("wait:")
            ]
            new_input = source.input
        new_id = await self.engine.start(
            workflow, new_input, options=run_options, parent_run_id=run_id, queue=source.queue
        )
        await _blobs.copy_blobs(self.store, [s for s in steps if s.step_key in keys], new_id)  # offloaded values
        await self.store.copy_steps(run_id, new_id, keys)
        now = self.engine.clock.now()
        await self.store.append_event(
            Event(
                run_id=new_id,
                kind="replay_started",
                at=now,
                step_key=from_step,
                data={"source": run_id, "reused": keys},
            )
        )
        # The dead run keeps its record and status (what failed stays on file); its history
        # names the replay, which takes it out of the dead-letter queue.
        await self.store.append_event(
            Event(run_id=run_id, kind=REPLAYED_EVENT, at=now, step_key=from_step, data={"replay": new_id})
        )
        if execute:
            return _masked_run(await self.engine.settle(new_id))
        return await self.get(new_id)


_masked = masked_fields


def _masked_run(run: RunRecord) -> RunRecord:
    return _masked(run, "error")


_QUEUE_NAME_MAX = 100
_QUEUE_NAME = re.compile(rf"[A-Za-z0-9_.:-]{{1,{_QUEUE_NAME_MAX}}}")


def _check_queue_name(queue: object) -> str:
    """Return ``queue`` if it is a valid queue name, else raise ``InvalidInputError``."""
    if isinstance(queue, str) and _QUEUE_NAME.fullmatch(queue):
        return queue
    shown = repr(queue)
    if len(shown) > 60:
        shown = shown[:59] + "…"
    if isinstance(queue, str) and len(queue) > _QUEUE_NAME_MAX:
        shown += f" ({len(queue)} characters)"
    raise InvalidInputError(
        f"invalid queue name {shown}: use 1 to {_QUEUE_NAME_MAX} ASCII letters, digits, '-', '_', '.' or ':'"
    )


def _review_status(value: ReviewStatus | str) -> ReviewStatus:
    if isinstance(value, ReviewStatus):
        return value
    try:
        return ReviewStatus(value)
    except ValueError:
        raise InvalidInputError(
            f"unknown review status {value!r}; use one of {', '.join(s.value for s in ReviewStatus)}"
        ) from None


_CANDIDATES_SHOWN = 3


async def _by_prefix(
    what: str, prefix: str, find: Callable[..., Awaitable[builtins.list[str]]], missing: type[Exception]
) -> str:
    """The one id that starts with ``prefix``; ``missing`` when none does, ``InvalidInputError`` when several do."""
    found = await find(prefix, limit=_CANDIDATES_SHOWN + 1) if prefix else []
    if not found:
        raise missing(f"{what} {prefix!r} does not exist")
    if len(found) == 1:
        return found[0]
    shown = ", ".join(found[:_CANDIDATES_SHOWN]) + (" and more" if len(found) > _CANDIDATES_SHOWN else "")
    raise InvalidInputError(f"{what} id {prefix!r} is ambiguous: {shown} start with it; type more of the id")


def _duration(value: object) -> float:
    """Seconds from a number or a duration's text (``"30d"``); refuses zero, negatives and the rest."""
    if isinstance(value, str):
        try:
            seconds = parse_duration(value, what="older_than")
        except OrchestrateError as exc:
            raise InvalidInputError(str(exc)) from None
    elif isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
    else:
        raise InvalidInputError(f"older_than must be seconds or a duration like '30d', got {value!r}")
    if not seconds > 0 or seconds == float("inf"):
        raise InvalidInputError(f"older_than must be a positive duration, got {value!r}")
    return seconds


def _statuses(status: RunStatus | str | Iterable[RunStatus | str] | None) -> builtins.list[RunStatus] | None:
    """One status or several (a string is one status, not its letters); ``None`` for none."""
    if status is None:
        return None
    wanted = [status] if isinstance(status, str) else builtins.list(status)
    return [_status(s) for s in wanted] or None


def _status(value: RunStatus | str) -> RunStatus:
    if isinstance(value, RunStatus):
        return value
    try:
        return RunStatus(value)
    except ValueError:
        raise InvalidInputError(
            f"unknown run status {value!r}; use one of {', '.join(s.value for s in RunStatus)}"
        ) from None
