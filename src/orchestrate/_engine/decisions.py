"""What a step's policy decides, as pure functions of numbers and outcomes.

No store, no clock, no I/O: the step executor (``steps.py``) reads the time, asks here,
and carries the answer out. Each decision is a small immutable value:

* :func:`attempt_timeout`: how long the next attempt may take (the attempt's limit,
  clipped by what is left of the step's total timeout and of the run's deadline);
* :func:`before_attempt`: :class:`GiveUp` when the step's total timeout has passed;
* :func:`after_failure`: :class:`Retry` ``(at, delay)`` or :class:`GiveUp` ``(error)``
  once an attempt raised: the retry policy's delay, refused when it would end past the
  total timeout or the run's deadline;
* :func:`check_budget`: :class:`GiveUp` ``(reason="budget")`` when less of the run's
  time budget is left than the step needs and it has a fallback to take instead;
* :func:`next_fallback`: :class:`UseFallback` ``(index)``, the next link of the chain to
  try, or ``None`` when none is left; :func:`cached_usable` for a cached one;
* :func:`success_meta`, :func:`cached`, :func:`fell_back` and :func:`failed`: what a
  step's record holds (a :class:`Record`: status, output, attempts, times, fallback,
  quality metadata; for a success, the metadata filed with its output).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from orchestrate._codec import TYPE_KEY
from orchestrate.errors import DeadlineExceededError, StepTimeoutError
from orchestrate.policies import Fallback, StepPolicy, Timeout
from orchestrate.types import StepStatus

_MIN_TIMEOUT = 0.001
"""The shortest timeout an attempt is given, even when its budget is spent: it still
starts, and the engine's timer names the limit it hit."""


@dataclass(frozen=True, slots=True)
class Retry:
    """Try again at ``at`` (``delay`` seconds after the failed attempt ended)."""

    at: float
    delay: float


@dataclass(frozen=True, slots=True)
class GiveUp:
    """No more attempts: take the fallbacks with ``error`` (``reason`` says why, when it
    was not the error itself: ``"budget"``)."""

    error: BaseException
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class UseFallback:
    """Try the fallback at ``index`` of the step's chain."""

    index: int
    fallback: Fallback


class Record(NamedTuple):
    """What a step's record holds, besides the run, key, name and input hash it is filed under.

    A named tuple, not a dataclass: one is made per step on the hot path.
    """

    status: StepStatus
    output: Any
    attempts: int
    started_at: float
    finished_at: float
    meta: dict[str, Any]
    fallback: str | None = None
    error: dict[str, Any] | None = None


# timeouts and retries ------------------------------------------------------------------
def attempt_timeout(policy: Timeout, *, now: float, first_started: float, deadline_at: float | None) -> float | None:
    """Seconds the attempt starting at ``now`` may run, or ``None`` for no limit.

    The smallest of the attempt's own limit, what is left of the step's total timeout
    (counted from its first attempt) and what is left of the run's deadline; never
    below a millisecond.
    """
    if policy.attempt is None and policy.total is None and deadline_at is None:
        return None  # the common case, without building a list
    limits = []
    if policy.attempt is not None:
        limits.append(policy.attempt)
    if policy.total is not None:
        limits.append(policy.total - (now - first_started))
    if deadline_at is not None:
        limits.append(deadline_at - now)
    return max(min(limits), _MIN_TIMEOUT)


def before_attempt(policy: Timeout, key: str, *, now: float, first_started: float) -> GiveUp | None:
    """:class:`GiveUp` when the step's total timeout has passed before another attempt."""
    if policy.total is not None and now - first_started >= policy.total:
        return GiveUp(StepTimeoutError(f"step {key!r} exceeded its total timeout of {policy.total:g}s"))
    return None


def after_failure(
    policy: StepPolicy,
    attempt: int,
    error: BaseException,
    *,
    finished: float,
    first_started: float,
    deadline_at: float | None,
) -> Retry | GiveUp:
    """Retry or give up after attempt number ``attempt`` raised ``error`` at ``finished``.

    The retry policy gives the delay (``None``: give up); a retry that would start at or
    past the end of the step's total timeout or the run's deadline is not made.
    """
    delay = policy.retry.next_delay(attempt, error)
    if delay is None:
        return GiveUp(error)
    total = policy.timeout.total
    if total is not None and finished + delay - first_started >= total:
        return GiveUp(error)
    if deadline_at is not None and finished + delay >= deadline_at:
        return GiveUp(error)
    return Retry(finished + delay, delay)


def check_budget(policy: StepPolicy, *, now: float, deadline_at: float | None) -> GiveUp | None:
    """:class:`GiveUp` (``reason="budget"``) when the run has less time left than the step's
    ``min_budget`` and the step has a fallback to take instead of starting."""
    if policy.min_budget is None or deadline_at is None or not policy.fallback:
        return None
    remaining = deadline_at - now
    if remaining >= policy.min_budget:
        return None
    error = DeadlineExceededError(f"{remaining:.3f}s of budget left, step needs {policy.min_budget:g}s")
    return GiveUp(error, reason="budget")


def deadline_passed(deadline_at: float | None, now: float) -> bool:
    """Whether the run's deadline has come (no step starts after it)."""
    return deadline_at is not None and now >= deadline_at


# fallbacks ----------------------------------------------------------------------------------
def next_fallback(chain: Sequence[Fallback], after: int) -> UseFallback | None:
    """The link of ``chain`` after index ``after`` (``-1`` for the first), or ``None``."""
    index = after + 1
    if index >= len(chain):
        return None
    return UseFallback(index, chain[index])


def cached_usable(fallback: Fallback, *, stored_at: float, now: float) -> bool:
    """Whether a cached output stored at ``stored_at`` is young enough for ``fallback``."""
    return fallback.max_age is None or now - stored_at <= fallback.max_age


def wants_cache(policy: StepPolicy) -> bool:
    """Whether the step's outputs are cached: for its cache, or for a cached fallback."""
    return policy.cache is not None or any(f.kind == "cached" for f in policy.fallback)


# records ------------------------------------------------------------------------------------
def _latency_ms(first_started: float, finished: float) -> float:
    return round((finished - first_started) * 1000, 3)


def attempt_entry(attempt: int, error_name: str, started: float, finished: float) -> dict[str, Any]:
    """One failed attempt, as the record's ``attempt_log`` lists it."""
    return {"attempt": attempt, "error": error_name, "ms": round((finished - started) * 1000, 3)}


def success_meta(
    first_started: float,
    finished: float,
    type_name: str | None,
    model: dict[str, Any] | None,
    attempt_log: list[dict[str, Any]],
    route: str | None,
    output: Any = None,
    drift_score: float | None = None,
) -> dict[str, Any]:
    """What the record of a step whose attempt returned holds besides its output: latency,
    the model's usage, the failed attempts before it, the route a returned
    :class:`~orchestrate.Fallback` decision took, the output's declared type, and its
    quality where known: ``confidence`` (the output's ``confidence`` field or attribute, a
    model result's included) and ``drift_score`` (a drift monitor's latest score of the step).

    The one record decision on the path of every step: a dict, positional arguments,
    no :class:`Record` around it (the executor files the output with it).
    """
    meta: dict[str, Any] = {"latency_ms": round((finished - first_started) * 1000, 3)}
    if model is not None:
        meta["model"] = model
    if attempt_log:
        meta["attempt_log"] = attempt_log
    if route is not None:
        meta["route"] = route
    if type_name is not None:
        meta[TYPE_KEY] = type_name
    # quality: the output's confidence and the step's drift score, kept with the record
    # (the output may be trimmed or offloaded); nothing when the output has no confidence.
    confidence = output.get("confidence") if type(output) is dict else getattr(output, "confidence", None)
    if confidence is not None and type(confidence) in (float, int) and confidence == confidence:
        meta["confidence"] = float(confidence)
    if drift_score is not None:
        meta["drift_score"] = round(drift_score, 6)
    return meta


def cached(output: Any, *, now: float, type_name: str | None) -> Record:
    """The record of a step answered from its cache (no attempt made)."""
    meta: dict[str, Any] = {"cached": True, "latency_ms": 0.0}
    if type_name is not None:
        meta[TYPE_KEY] = type_name
    return Record(StepStatus.SUCCEEDED, output, 0, now, now, meta)


def fell_back(
    fallback: Fallback,
    output: Any,
    *,
    skipped: bool,
    error: dict[str, Any],
    reason: str | None,
    attempts: int,
    first_started: float,
    finished: float,
    type_name: str | None,
    attempt_log: list[dict[str, Any]],
    tried: list[dict[str, Any]],
) -> Record:
    """The record of a step that gave up and took ``fallback`` (``skipped``: no output)."""
    meta: dict[str, Any] = {
        "latency_ms": _latency_ms(first_started, finished),
        "fallback_reason": reason or error["name"],
        "error_class": error["name"],
    }
    if fallback.flag:
        meta["flag"] = fallback.flag
    if type_name is not None:
        meta[TYPE_KEY] = type_name
    if attempt_log:
        meta["attempt_log"] = attempt_log
    if tried:
        meta["fallbacks_failed"] = tried
    status = StepStatus.SKIPPED if skipped else StepStatus.SUCCEEDED
    return Record(status, None if skipped else output, attempts, first_started, finished, meta, fallback.label, error)


def failed(
    *,
    error: dict[str, Any],
    attempts: int,
    first_started: float,
    finished: float,
    attempt_log: list[dict[str, Any]],
    tried: list[dict[str, Any]],
) -> Record:
    """The record of a step that gave up with no fallback left."""
    meta: dict[str, Any] = {"latency_ms": _latency_ms(first_started, finished), "error_class": error["name"]}
    if attempt_log:
        meta["attempt_log"] = attempt_log
    if tried:
        meta["fallbacks_failed"] = tried
    return Record(StepStatus.FAILED, None, attempts, first_started, finished, meta, None, error)
