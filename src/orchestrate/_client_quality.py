"""The quality, feedback and alerts part of :class:`orchestrate.Client`.

Kept apart from the client's runs and reviews so each module reads as one concern; the
methods are the client's own (``Client`` inherits them).
"""

from __future__ import annotations

import builtins
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from orchestrate._engine.state import new_signal_id
from orchestrate._redact import masked_fields
from orchestrate.errors import InvalidInputError
from orchestrate.store._quality import FEEDBACK_EVENT, AlertRecord, AlertState, FeedbackRecord
from orchestrate.store._quality_sql import quality_for
from orchestrate.store.base import Event

if TYPE_CHECKING:
    from orchestrate._engine.runner import Engine
    from orchestrate.store import Store
    from orchestrate.store.base import RunRecord


class QualityMethods:
    """Step quality records, outcome feedback and durable alerts, for :class:`~orchestrate.Client`."""

    if TYPE_CHECKING:
        engine: Engine
        store: Store

        async def _find_run(self, run_id: str) -> RunRecord: ...

    # quality, feedback and alerts ----------------------------------------------------------
    async def step_results(self, step: str, *, last: int = 100, workflow: str | None = None) -> builtins.list[Any]:
        """The newest ``last`` executions of step ``step`` with their quality metadata, newest first.

        Returns:
            :class:`~orchestrate.observe.quality.StepResult` s (model, input hash,
            confidence, latency, tokens, cost, cached, fallback, drift score...).
        """
        from orchestrate.observe import quality

        await self.engine.open()
        rows = await quality_for(self.store).step_results(step, last=_positive(last, "last"), workflow=workflow)
        return [quality.StepResult.from_record(wf, masked_fields(r, "error", "meta")) for wf, r in rows]

    async def step_stats(
        self, step: str, *, workflow: str | None = None, window: int = 100, windows: int = 10
    ) -> builtins.list[Any]:
        """Step ``step``'s health over its last ``windows`` windows of ``window`` executions, oldest first.

        Returns:
            :class:`~orchestrate.observe.quality.WindowStats` s: p50/p95 latency, error,
            fallback and escalation rates, mean confidence.
        """
        from orchestrate.observe import quality

        results = await self.step_results(
            step, last=_positive(window, "window") * _positive(windows, "windows"), workflow=workflow
        )
        return quality.window_stats(results, window=window)

    async def feedback(
        self,
        run_id: str,
        *,
        by: str,
        outcome: str | None = None,
        score: float | None = None,
        label: str | None = None,
        step: str | None = None,
        data: Mapping[str, Any] | None = None,
        feedback_id: str | None = None,
    ) -> FeedbackRecord:
        """Attach what happened after run ``run_id`` (the loan defaulted, a reviewer corrected it).

        Stored once per ``feedback_id`` (default: a new id; pass your own to make a retry
        safe) and written into the run's history (a ``feedback_recorded`` event) as its
        audit. Outcome monitors (:class:`~orchestrate.observe.alerts.OutcomeMonitor`) watch it.

        Returns:
            The stored entry (the one stored before, for a ``feedback_id`` seen already).

        Raises:
            InvalidInputError: none of ``outcome``, ``score`` and ``label`` given, or ``by`` empty.
        """
        if outcome is None and score is None and label is None:
            raise InvalidInputError("feedback needs outcome=, score= or label=")
        if not by:
            raise InvalidInputError("feedback needs by= (who gives it)")
        if score is not None and (isinstance(score, bool) or not isinstance(score, int | float)):
            raise InvalidInputError(f"feedback score must be a number, got {score!r}")
        run = await self._find_run(run_id)
        now = self.engine.clock.now()
        entry = FeedbackRecord(
            feedback_id=feedback_id or new_signal_id(),
            run_id=run.run_id,
            workflow=run.workflow,
            at=now,
            by=by,
            outcome=outcome,
            score=None if score is None else float(score),
            label=label,
            step=step,
            data=dict(data or {}),
        )
        stored = await quality_for(self.store).add_feedback(entry)
        if stored is entry or stored == entry:
            audit = {"feedback_id": entry.feedback_id, "by": by, "outcome": outcome, "score": entry.score}
            audit.update({"label": label, "step": step})
            await self.store.append_event(Event(run_id=run.run_id, kind=FEEDBACK_EVENT, at=now, data=audit))
        return stored

    async def list_feedback(
        self, *, run_id: str | None = None, workflow: str | None = None, limit: int = 100
    ) -> builtins.list[FeedbackRecord]:
        """Feedback entries, oldest first, of one run or workflow (or all).

        Returns:
            Up to ``limit`` feedback records.
        """
        await self.engine.open()
        if run_id is not None:
            run_id = (await self._find_run(run_id)).run_id
        return await quality_for(self.store).list_feedback(run_id=run_id, workflow=workflow, limit=limit)

    async def alerts(
        self, *, state: str | None = None, workflow: str | None = None, limit: int = 50
    ) -> builtins.list[AlertRecord]:
        """Durable alerts, newest first (``state``: ``firing``, ``acknowledged`` or ``resolved``).

        Returns:
            Up to ``limit`` alert records.
        """
        await self.engine.open()
        try:
            states = None if state is None else [AlertState(state)]
        except ValueError:
            raise InvalidInputError(f"unknown alert state {state!r}; use firing, acknowledged or resolved") from None
        return await quality_for(self.store).list_alerts(states=states, workflow=workflow, limit=limit)

    async def acknowledge_alert(self, alert_id: str, *, by: str) -> AlertRecord:
        """Acknowledge an alert: a person has it, and its action stops diverting its step.

        Returns:
            The alert as it stands after the acknowledgement.

        Raises:
            InvalidInputError: no alert has that id.
        """
        from orchestrate.observe.alerts import acknowledge

        await self.engine.open()
        found = await acknowledge(self.store, alert_id, by=by, now=self.engine.clock.now())
        diversions = getattr(self.engine, "diversions", None)
        if diversions is not None:
            diversions.invalidate()
        return found


def _positive(value: int, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidInputError(f"{name} must be a positive number, got {value!r}")
    return value
