"""Quality records, outcome feedback and alerts kept in the store (schema 8).

Three things the observation layer keeps beside the runs:

* **step results**: the step records of one step's name, newest first, with the run's
  workflow (read through the ``orchestrate_steps_name`` index, ``(name, finished_at)``);
* **feedback**: what happened after a run (the loan defaulted, the reviewer corrected
  it), one :class:`FeedbackRecord` per ``feedback_id`` (insert-if-absent: a retried
  write records once);
* **alerts**: one :class:`AlertRecord` per incident of a monitor, inserted if absent under
  ``(workflow, monitor, incident)`` and moved through its states with compare-and-set on
  ``version``, so that several workers evaluating the same monitor make one alert.

:func:`orchestrate.store._quality_sql.quality_for` gives the :class:`QualityStore` of a
store: the SQL stores keep these in ``orchestrate_feedback`` and ``orchestrate_alerts``;
the memory store keeps them in this process's memory beside it.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from orchestrate.store.base import EventKind, StepRecord
from orchestrate.types import StepStatus

FEEDBACK_EVENT = EventKind.FEEDBACK_RECORDED
"""The kind of the event that records feedback in its run's history (data: feedback_id, by, outcome, score...)."""


class AlertState(enum.StrEnum):
    """Where an alert stands."""

    FIRING = "firing"  # the monitor is abnormal and nobody has taken the alert yet
    ACKNOWLEDGED = "acknowledged"  # still abnormal, and a person has taken it (its action is lifted)
    RESOLVED = "resolved"  # the monitor is normal again; a new incident makes a new alert


@dataclass(kw_only=True, frozen=True)
class FeedbackRecord:
    """What happened after a run, attached to it.

    Attributes:
        feedback_id: the entry's id (a retried write with the same id records once).
        run_id: the run it is about.
        workflow: the run's workflow.
        at: when it was given.
        by: who gave it (a person, a system).
        outcome: what happened (``"defaulted"``, ``"complained"``, ``"fraud"``...).
        score: a number (a rating, a loss, 1/0 for right/wrong).
        label: the correct answer, or a tag (``"corrected"``).
        step: the step it judges, if one (``"fraud_check"``).
        data: anything else, JSON.
    """

    feedback_id: str
    run_id: str
    workflow: str
    at: float
    by: str
    outcome: str | None = None
    score: float | None = None
    label: str | None = None
    step: str | None = None
    data: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The entry as a JSON-ready dict."""
        return dataclasses.asdict(self)


@dataclass(kw_only=True)
class AlertRecord:
    """One incident of a monitor: fired once, acknowledged and resolved at most once.

    Attributes:
        alert_id: ``<workflow>:<monitor>#<incident>``.
        workflow: the workflow whose step is watched.
        monitor: the monitor's name.
        step: the step watched (``None`` for an outcome monitor of the whole workflow).
        incident: 1 for the monitor's first incident in this workflow, then 2...
        state: where it stands.
        value: the reading that fired it.
        reason: why it fired.
        action: what it does to the step while it holds (``"fallback"``, ``"review"``) or ``None``.
        fired_at: when it fired.
        updated_at: its last change.
        resolved_at: when the monitor was normal again.
        acked_at: when a person acknowledged it (lifting its action).
        acked_by: who.
        version: compare-and-set counter, incremented by every update.
    """

    alert_id: str
    workflow: str
    monitor: str
    step: str | None
    incident: int
    state: AlertState
    value: float
    reason: str
    action: str | None = None
    fired_at: float = 0.0
    updated_at: float = 0.0
    resolved_at: float | None = None
    acked_at: float | None = None
    acked_by: str | None = None
    version: int = 0

    @property
    def diverting(self) -> bool:
        """Whether its action holds: it has one and nobody acknowledged it (resolving alone does not lift it)."""
        return self.action is not None and self.acked_at is None

    def to_dict(self) -> dict[str, Any]:
        """The alert as a JSON-ready dict (webhooks, the CLI's ``--json``)."""
        data = dataclasses.asdict(self)
        data["state"] = self.state.value
        return data


def _due_at(status: str, wake_at: float | None, created_at: float, now: float) -> float | None:
    """When a run became due for a claim, or ``None`` when it is not due at ``now``."""
    if status == "pending" and (wake_at is None or wake_at <= now):
        return created_at if wake_at is None else wake_at
    if status == "waiting" and wake_at is not None and wake_at <= now:
        return wake_at
    return None


def alert_id(workflow: str, monitor: str, incident: int) -> str:
    """The id of ``monitor``'s ``incident``-th alert in ``workflow``."""
    return f"{workflow}:{monitor}#{incident}"


@dataclass(frozen=True, kw_only=True)
class QueueDepth:
    """The runs of one queue that are due and wait for a worker to claim them.

    Attributes:
        queue: the queue's name.
        due: pending runs due now (created, or their delayed start passed) and waiting
            runs whose timer or signal made them due.
        oldest_due_at: when the longest-waiting of them became due (``None``: none is).
    """

    queue: str
    due: int
    oldest_due_at: float | None


class QualityStore(Protocol):
    """Step results, feedback and alerts of one store."""

    async def queue_depths(self, *, now: float) -> list[QueueDepth]:
        """Each queue with runs due at ``now``, by name."""

    async def step_results(
        self, name: str, *, last: int, workflow: str | None = None, before: float | None = None
    ) -> list[tuple[str, StepRecord]]:
        """The newest ``last`` records of step ``name`` (finished before ``before``), newest first, with workflows."""

    async def steps_since(self, names: Sequence[str], *, after: float, limit: int) -> list[tuple[str, StepRecord]]:
        """Records of steps ``names`` finished at or after ``after``, oldest first, at most ``limit``."""

    async def add_feedback(self, record: FeedbackRecord) -> FeedbackRecord:
        """Insert unless its id exists; return the stored entry."""

    async def list_feedback(
        self,
        *,
        run_id: str | None = None,
        workflow: str | None = None,
        after: float | None = None,
        limit: int = 100,
    ) -> list[FeedbackRecord]:
        """Entries, oldest first (given at or after ``after``), optionally of one run or workflow."""

    async def insert_alert(self, record: AlertRecord) -> bool:
        """Insert the alert unless its id exists; whether it was inserted (``False``: another writer did)."""

    async def update_alert(self, record: AlertRecord, *, expected_version: int) -> bool:
        """Compare-and-set its state fields; on success ``record.version`` is ``expected_version + 1``."""

    async def get_alert(self, alert_id: str) -> AlertRecord | None:
        """The alert, or ``None``."""

    async def list_alerts(
        self,
        *,
        states: Sequence[AlertState] | None = None,
        workflow: str | None = None,
        diverting: bool = False,
        limit: int = 100,
    ) -> list[AlertRecord]:
        """Alerts, newest first; ``diverting``: only those whose action holds."""

    async def last_alert(self, workflow: str, monitor: str) -> AlertRecord | None:
        """The monitor's latest incident in ``workflow``, or ``None``."""


class MemoryQualityStore:
    """Feedback and alerts in this process's memory; step results read from an :class:`InMemoryStore`'s records."""

    def __init__(self, store: Any) -> None:
        self._store = store
        self._feedback: dict[str, FeedbackRecord] = {}
        self._alerts: dict[str, AlertRecord] = {}

    async def queue_depths(self, *, now: float) -> list[QueueDepth]:
        """Due runs per queue, from the memory store's runs."""
        oldest: dict[str, list[float]] = {}
        for run in self._store._runs.values():
            due = _due_at(run.status.value, run.wake_at, run.created_at, now)
            if due is not None:
                oldest.setdefault(run.queue, []).append(due)
        return [QueueDepth(queue=q, due=len(at), oldest_due_at=min(at)) for q, at in sorted(oldest.items())]

    def _steps(self, names: Sequence[str], workflow: str | None = None) -> list[tuple[str, StepRecord]]:
        runs = self._store._runs
        found: list[tuple[str, StepRecord]] = []
        for run_id, steps in self._store._steps.items():
            run = runs.get(run_id)
            wf = run.workflow if run is not None else ""
            if workflow is not None and wf != workflow:
                continue
            found.extend((wf, s) for s in steps.values() if s.name in names)
        return found

    async def step_results(
        self, name: str, *, last: int, workflow: str | None = None, before: float | None = None
    ) -> list[tuple[str, StepRecord]]:
        """Newest first."""
        rows = [r for r in self._steps([name], workflow) if before is None or r[1].finished_at < before]
        rows.sort(key=lambda r: (r[1].finished_at, r[1].run_id, r[1].step_key), reverse=True)
        return [(wf, dataclasses.replace(s, meta=dict(s.meta))) for wf, s in rows[:last]]

    async def steps_since(self, names: Sequence[str], *, after: float, limit: int) -> list[tuple[str, StepRecord]]:
        """Oldest first."""
        rows = [r for r in self._steps(names) if r[1].finished_at >= after]
        rows.sort(key=lambda r: (r[1].finished_at, r[1].run_id, r[1].step_key))
        return rows[:limit]

    async def add_feedback(self, record: FeedbackRecord) -> FeedbackRecord:
        """Insert unless present."""
        return self._feedback.setdefault(record.feedback_id, record)

    async def list_feedback(
        self,
        *,
        run_id: str | None = None,
        workflow: str | None = None,
        after: float | None = None,
        limit: int = 100,
    ) -> list[FeedbackRecord]:
        """Oldest first."""
        found = [
            f
            for f in self._feedback.values()
            if (run_id is None or f.run_id == run_id)
            and (workflow is None or f.workflow == workflow)
            and (after is None or f.at >= after)
        ]
        found.sort(key=lambda f: (f.at, f.feedback_id))
        return found[:limit]

    async def insert_alert(self, record: AlertRecord) -> bool:
        """Insert unless present."""
        if record.alert_id in self._alerts:
            return False
        record.version = 1
        self._alerts[record.alert_id] = dataclasses.replace(record)
        return True

    async def update_alert(self, record: AlertRecord, *, expected_version: int) -> bool:
        """Compare-and-set on the version."""
        stored = self._alerts.get(record.alert_id)
        if stored is None or stored.version != expected_version:
            return False
        record.version = expected_version + 1
        self._alerts[record.alert_id] = dataclasses.replace(record)
        return True

    async def get_alert(self, alert_id: str) -> AlertRecord | None:
        """A copy, or ``None``."""
        found = self._alerts.get(alert_id)
        return None if found is None else dataclasses.replace(found)

    async def list_alerts(
        self,
        *,
        states: Sequence[AlertState] | None = None,
        workflow: str | None = None,
        diverting: bool = False,
        limit: int = 100,
    ) -> list[AlertRecord]:
        """Newest first."""
        found = [
            dataclasses.replace(a)
            for a in self._alerts.values()
            if (states is None or a.state in states)
            and (workflow is None or a.workflow == workflow)
            and (not diverting or a.diverting)
        ]
        found.sort(key=lambda a: (a.fired_at, a.alert_id), reverse=True)
        return found[:limit]

    async def last_alert(self, workflow: str, monitor: str) -> AlertRecord | None:
        """The highest incident."""
        found = [a for a in self._alerts.values() if a.workflow == workflow and a.monitor == monitor]
        return dataclasses.replace(max(found, key=lambda a: a.incident)) if found else None


def is_fallback(record: StepRecord) -> bool:
    """Whether a fallback answered the step (a returned route is the step's own answer)."""
    return record.fallback is not None and not record.fallback.startswith("route:")


def failed(record: StepRecord) -> bool:
    """Whether the step failed for good."""
    return record.status is StepStatus.FAILED
