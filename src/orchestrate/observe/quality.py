"""Step quality records as a user reads them, and a step's health over windows.

Every step record carries quality metadata (seed 000's JSON): model and version, input
hash, confidence, latency, tokens, cost, cached, fallback taken, validation, drift score.
:class:`StepResult` is one record read that way (``Client.step_results``);
:func:`window_stats` sums windows of them up (``orchestrate stats``): p50 and p95 latency,
error, fallback and escalation rates, mean confidence; :func:`sparkline` draws a series.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from orchestrate.store._quality import failed, is_fallback
from orchestrate.store.base import StepRecord

_BARS = "▁▂▃▄▅▆▇█"


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


def confidence_of(output: Any, meta: dict[str, Any]) -> float | None:
    """A step's confidence: ``meta["confidence"]``, else the output's ``confidence`` field
    (a dict's key or an attribute), else its model result's; ``None`` when it has none."""
    found = _number(meta.get("confidence"))
    if found is not None:
        return found
    if isinstance(output, dict):
        return _number(output.get("confidence"))
    return _number(getattr(output, "confidence", None))


@dataclass(frozen=True, kw_only=True)
class StepResult:
    """One execution of a step, with its quality metadata.

    Attributes:
        workflow: the run's workflow.
        run_id: the run.
        step_key: the step's key in the run (``fraud_check``, ``items[3]``).
        name: the step's name.
        status: ``succeeded``, ``failed`` or ``skipped``.
        finished_at: when it was recorded.
        latency_ms: from its first attempt's start to its end.
        attempts: attempts made.
        input_hash: hash of its input.
        model: the model that answered (a step returning a model result).
        model_version: that model's version.
        tokens_in: prompt tokens.
        tokens_out: completion tokens.
        cost: the model call's cost.
        confidence: the output's confidence (``confidence`` field or the model result's).
        cached: answered from the step's cache.
        fallback: the fallback that answered (``None``: the step itself did).
        diverted: the action of an alert that diverted the step (``fallback``, ``review``).
        escalated: whether it went to people (a flagged fallback, a diversion to review).
        validation: the validation result recorded with it, if any.
        drift_score: the drift score a monitor recorded for it, if any.
        error_class: the error that made it fail or fall back.
        output: its output as stored (JSON).
    """

    workflow: str
    run_id: str
    step_key: str
    name: str
    status: str
    finished_at: float
    latency_ms: float | None
    attempts: int
    input_hash: str | None
    model: str | None
    model_version: str | None
    tokens_in: int | None
    tokens_out: int | None
    cost: float | None
    confidence: float | None
    cached: bool
    fallback: str | None
    diverted: str | None
    escalated: bool
    validation: Any
    drift_score: float | None
    error_class: str | None
    output: Any

    @property
    def failed(self) -> bool:
        """Whether it failed for good."""
        return self.status == "failed"

    @classmethod
    def from_record(cls, workflow: str, record: StepRecord) -> StepResult:
        """Read a step record's quality metadata."""
        meta = record.meta
        found = meta.get("model")
        model: dict[str, Any] = found if isinstance(found, dict) else {}
        fallback = record.fallback if is_fallback(record) else None
        diverted = meta.get("diverted") or ("fallback" if meta.get("fallback_reason") == "alert" else None)
        return cls(
            workflow=workflow,
            run_id=record.run_id,
            step_key=record.step_key,
            name=record.name,
            status=record.status.value,
            finished_at=record.finished_at,
            latency_ms=_number(meta.get("latency_ms")),
            attempts=record.attempts,
            input_hash=record.input_hash,
            model=model.get("model"),
            model_version=model.get("version"),
            tokens_in=model.get("tokens_in"),
            tokens_out=model.get("tokens_out"),
            cost=_number(model.get("cost")),
            confidence=confidence_of(record.output, meta),
            cached=bool(meta.get("cached")),
            fallback=fallback,
            diverted=diverted,
            escalated=bool(meta.get("flag")) or diverted == "review",
            validation=meta.get("validation"),
            drift_score=_number(meta.get("drift_score")),
            error_class=meta.get("error_class") if (failed(record) or fallback) else None,
            output=record.output,
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready, as seed 000's quality record reads."""
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


@dataclass(frozen=True, kw_only=True)
class WindowStats:
    """A step's health over a window of executions (oldest first in a list of them)."""

    executions: int
    first_at: float
    last_at: float
    latency_p50_ms: float | None
    latency_p95_ms: float | None
    error_rate: float
    fallback_rate: float
    escalation_rate: float
    confidence_mean: float | None


def percentile(values: Sequence[float], q: float) -> float | None:
    """The nearest-rank ``q``-th percentile (``0 < q <= 100``); ``None`` of nothing."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, math.ceil(q / 100 * len(ordered)) - 1))]


def summarise(results: Sequence[StepResult]) -> WindowStats:
    """The health of ``results`` taken together."""
    n = len(results) or 1
    latencies = [r.latency_ms for r in results if r.latency_ms is not None and not r.cached]
    confidences = [r.confidence for r in results if r.confidence is not None]
    return WindowStats(
        executions=len(results),
        first_at=min((r.finished_at for r in results), default=0.0),
        last_at=max((r.finished_at for r in results), default=0.0),
        latency_p50_ms=percentile(latencies, 50),
        latency_p95_ms=percentile(latencies, 95),
        error_rate=sum(r.failed for r in results) / n,
        fallback_rate=sum(r.fallback is not None for r in results) / n,
        escalation_rate=sum(r.escalated for r in results) / n,
        confidence_mean=statistics.fmean(confidences) if confidences else None,
    )


def window_stats(results: Sequence[StepResult], *, window: int) -> list[WindowStats]:
    """``results`` (in any order) cut into windows of ``window`` executions, oldest first.

    The oldest window may hold fewer: the newest windows are the full ones.
    """
    if window < 1:
        raise ValueError("a window holds at least one execution")
    ordered = sorted(results, key=lambda r: (r.finished_at, r.run_id, r.step_key))
    cuts = list(range(len(ordered), 0, -window))[::-1]
    return [summarise(ordered[max(0, end - window) : end]) for end in cuts]


def sparkline(values: Sequence[float | None]) -> str:
    """One bar per value, scaled between the series' least and greatest (a space for ``None``)."""
    known = [v for v in values if v is not None]
    if not known:
        return " " * len(values)
    low, high = min(known), max(known)
    span = high - low
    bars = []
    for value in values:
        if value is None:
            bars.append(" ")
        elif span <= 0:
            bars.append(_BARS[0])
        else:
            bars.append(_BARS[min(len(_BARS) - 1, int((value - low) / span * (len(_BARS) - 1) + 0.5))])
    return "".join(bars)
