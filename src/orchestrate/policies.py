"""Step and run policies: retry, timeout, fallback, cache, isolation, circuit breakers, rate limits.

Policies are frozen dataclasses that validate themselves when built and *return
decisions* (``Retry.next_delay(attempt, error)``) without doing any I/O, so they are
testable on their own and usable from Python and from YAML (:mod:`orchestrate.yaml`).
Shorthands are accepted where a step is declared (``retry=3``, ``timeout=30``) and
normalised in one place: :func:`StepPolicy.build`. Durations are read in one place too,
:func:`to_seconds`: seconds, a ``timedelta``, or a text such as ``"30s"`` or ``"1h30m"``.
"""

from __future__ import annotations

import dataclasses
import enum
import math
import random
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Literal

from orchestrate._step_options import check_step_options
from orchestrate.errors import DefinitionError, InvalidOutputError, NonRetryableError, ServerError
from orchestrate.state import StepSchema

_check_step_options = check_step_options  # where the definitions (workflow.py) find it

Seconds = float | int | timedelta | str
"""A duration: seconds (``30``, ``0.25``), a ``timedelta``, or a text such as ``"30s"``,
``"5m"``, ``"1h30m"``, ``"250ms"`` or ``"2d"`` (see :func:`parse_duration`)."""

# One number and its unit, largest unit first; "m" is minutes, never months.
_DURATION_PART = re.compile(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*(ms|d|h|m|s)")
_UNIT_SECONDS: dict[str, tuple[float, float]] = {  # unit -> (multiplier, divisor): 250ms is 250 / 1000
    "d": (86400.0, 1.0),
    "h": (3600.0, 1.0),
    "m": (60.0, 1.0),
    "s": (1.0, 1.0),
    "ms": (1.0, 1000.0),
}
_UNIT_ORDER = ("d", "h", "m", "s", "ms")
_DURATION_HINT = "a duration such as '30s', '5m', '1h30m', '250ms' or '2d'"
_NUMBER_TEXT = re.compile(r"\s*[-+]?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?\s*")


def parse_duration(text: str, *, what: str = "duration") -> float:
    """Seconds in a human duration: ``"30s"``, ``"5m"``, ``"1h30m"``, ``"250ms"``, ``"2d"``.

    Units are ``d``, ``h``, ``m`` (minutes), ``s`` and ``ms``, each at most once and
    largest first; numbers may have decimals (``"1.5h"``) and parts may be separated
    by spaces (``"1h 30m"``). Zero (``"0s"``) parses; whether it is allowed is the
    caller's business (:func:`to_seconds` refuses it).

    Raises:
        DefinitionError: the text is not such a duration (a bare number needs a unit;
            a sign, ``nan`` or ``inf`` are refused), naming ``what``.
    """
    if not isinstance(text, str):
        raise DefinitionError(f"{what} must be {_DURATION_HINT}, got {text!r}")
    stripped = text.strip()
    if stripped.startswith("-") and (_parses(stripped[1:]) or _NUMBER_TEXT.fullmatch(stripped[1:])):
        raise DefinitionError(f"{what} must be positive, got {text!r}")
    if _NUMBER_TEXT.fullmatch(text):
        raise DefinitionError(f"{what} must be {_DURATION_HINT}, got {text!r}; add a unit, e.g. '{stripped}s'")
    seconds = 0.0
    position, last = 0, -1
    while position < len(text) and text[position:].strip():
        found = _DURATION_PART.match(text, position)
        if found is None:
            raise DefinitionError(f"{what} must be {_DURATION_HINT}, got {text!r}")
        number, unit = found.groups()
        rank = _UNIT_ORDER.index(unit)
        if rank <= last:
            raise DefinitionError(f"{what} must be {_DURATION_HINT} (each unit once, largest first), got {text!r}")
        multiplier, divisor = _UNIT_SECONDS[unit]
        seconds += float(number) * multiplier / divisor
        position, last = found.end(), rank
    if last < 0:
        raise DefinitionError(f"{what} must be {_DURATION_HINT}, got {text!r}")
    return seconds


def _parses(text: str) -> bool:
    try:
        parse_duration(text)
    except DefinitionError:
        return False
    return True


def to_seconds(value: Seconds | None, *, what: str) -> float | None:
    """Normalise a duration given as seconds, a ``timedelta`` or a text (``"1h30m"``); ``None`` stays ``None``.

    This is the one place where durations are read: step and run timeouts, cache TTLs,
    fallback ages, review SLAs and escalations all accept the same forms.

    Raises:
        DefinitionError: not a duration, not finite (``nan``, ``inf``), or not > 0.
    """
    if value is None:
        return None
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, str):
        try:
            seconds = parse_duration(value, what=what)
        except DefinitionError as exc:
            if " must be positive" in str(exc):
                raise
            raise DefinitionError(
                f"{what} must be seconds or a timedelta (or {_DURATION_HINT}), got {value!r}"
                + ("; add a unit, e.g. " + repr(value.strip() + "s") if _NUMBER_TEXT.fullmatch(value) else "")
            ) from None
    elif isinstance(value, bool) or not isinstance(value, int | float):
        raise DefinitionError(f"{what} must be seconds or a timedelta (or {_DURATION_HINT}), got {value!r}")
    else:
        seconds = _as_float(value)
    if not math.isfinite(seconds):
        raise DefinitionError(f"{what} must be a finite number of seconds > 0, got {value!r}")
    if seconds <= 0:
        raise DefinitionError(f"{what} must be positive, got {value if isinstance(value, str) else seconds!r}")
    return seconds


def _delay(value: Any, what: str) -> Any:
    """A retry delay given as a text or a ``timedelta``, as seconds; numbers stay as given.

    Numbers are left as they are (``1`` stays an ``int``) so that a definition's version
    fingerprint does not change; :func:`_number` checks them afterwards.
    """
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, str):
        if _NUMBER_TEXT.fullmatch(value):
            raise DefinitionError(f"{what} must be a number of seconds, got {value!r}")
        try:
            return parse_duration(value, what=what)
        except DefinitionError:
            raise DefinitionError(f"{what} must be a number of seconds or {_DURATION_HINT}, got {value!r}") from None
    return value


def _as_float(value: int | float) -> float:
    try:
        return float(value)
    except OverflowError:  # an int beyond the float range is as unusable as inf
        return math.inf


def _number(value: Any, what: str, *, at_least: float, at_most: float | None = None, unit: str = "") -> float:
    """``value`` as a float, refusing bools, non-numbers, ``nan``/``inf`` and values out of range."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise DefinitionError(f"{what} must be a number{unit}, got {value!r}")
    number = _as_float(value)
    if not math.isfinite(number):
        raise DefinitionError(f"{what} must be a finite number{unit}, got {value!r}")
    if number < at_least or (at_most is not None and number > at_most):
        bounds = f">= {at_least:g}" if at_most is None else f"within [{at_least:g}, {at_most:g}]"
        raise DefinitionError(f"{what} must be {bounds}, got {value!r}")
    return number


@dataclass(frozen=True)
class Retry:
    """When and how often to retry a failed attempt.

    Args:
        max_attempts: attempts in total, the first included (1 means no retry).
            ``None`` means no limit: the step is retried until it succeeds, fails with
            an error this policy does not retry, or runs out of time (``Timeout.total``
            or the run's budget). The delay settles at ``max_delay``.
        initial_delay: seconds before the second attempt.
        backoff: multiplier applied to the delay after each failed attempt (1 = fixed).
        max_delay: ceiling of a single delay, before jitter (default: 60 s, or
            ``initial_delay`` when that is longer).
        jitter: spread of the random jitter as a fraction of the delay (0.2 → ±20 %),
            so that many runs failing together do not retry in lock-step.
        retry_on: only errors of these types are retried.
        give_up_on: errors of these types are never retried (checked first).

    :class:`~orchestrate.errors.NonRetryableError` is never retried. An error carrying a
    ``retry_after`` attribute (seconds, e.g. from an HTTP 429) delays the next attempt at
    least that long.
    """

    max_attempts: int | None = 3
    initial_delay: float = 1.0
    backoff: float = 2.0
    max_delay: float | None = None
    jitter: float = 0.2
    retry_on: tuple[type[BaseException], ...] = (Exception,)
    give_up_on: tuple[type[BaseException], ...] = ()

    def __init__(
        self,
        max_attempts: int | None = 3,
        initial_delay: Seconds = 1.0,
        backoff: float = 2.0,
        max_delay: Seconds | None = None,
        jitter: float = 0.2,
        retry_on: tuple[type[BaseException], ...] = (Exception,),
        give_up_on: tuple[type[BaseException], ...] = (),
    ) -> None:
        # Delays may be texts ("500ms", "1m") or timedeltas; they are kept as seconds.
        object.__setattr__(self, "max_attempts", max_attempts)
        object.__setattr__(self, "initial_delay", _delay(initial_delay, "Retry.initial_delay"))
        object.__setattr__(self, "backoff", backoff)
        object.__setattr__(self, "max_delay", _delay(max_delay, "Retry.max_delay"))
        object.__setattr__(self, "jitter", jitter)
        object.__setattr__(self, "retry_on", retry_on)
        object.__setattr__(self, "give_up_on", give_up_on)
        self.__post_init__()

    def __post_init__(self) -> None:
        attempts = self.max_attempts
        if attempts is not None and (isinstance(attempts, bool) or not isinstance(attempts, int)):
            raise DefinitionError(f"Retry.max_attempts must be an int (or None for no limit), got {attempts!r}")
        if attempts is not None and attempts < 1:
            raise DefinitionError(f"Retry.max_attempts must be >= 1 (or None for no limit), got {attempts}")
        initial = _number(self.initial_delay, "Retry.initial_delay", at_least=0, unit=" of seconds")
        if self.max_delay is None:
            object.__setattr__(self, "max_delay", max(60.0, initial))
        cap = _number(self.max_delay, "Retry.max_delay", at_least=0, unit=" of seconds")
        if cap < initial:
            raise DefinitionError(
                f"Retry.max_delay ({cap:g}) is below initial_delay ({initial:g}); raise max_delay or leave it out"
            )
        _number(self.backoff, "Retry.backoff", at_least=1)
        _number(self.jitter, "Retry.jitter", at_least=0, at_most=1)
        for name in ("retry_on", "give_up_on"):
            types = getattr(self, name)
            if not isinstance(types, tuple) or not all(
                isinstance(t, type) and issubclass(t, BaseException) for t in types
            ):
                raise DefinitionError(
                    f"Retry.{name} must be a tuple of exception types, e.g. {name}=(TimeoutError,), got {types!r}"
                )

    def should_retry(self, error: BaseException) -> bool:
        """Whether ``error`` is of a kind this policy retries at all."""
        if isinstance(error, (NonRetryableError, *self.give_up_on)):
            return False
        return isinstance(error, self.retry_on)

    def next_delay(self, attempt: int, error: BaseException, *, rng: random.Random | None = None) -> float | None:
        """Seconds to wait before the attempt after ``attempt`` (1-based), or ``None`` to give up."""
        if (self.max_attempts is not None and attempt >= self.max_attempts) or not self.should_retry(error):
            return None
        base = self._backoff_delay(attempt)
        if self.jitter:
            base *= 1 + (rng or random).uniform(-self.jitter, self.jitter)
        retry_after = getattr(error, "retry_after", None)
        if (
            isinstance(retry_after, int | float)
            and not isinstance(retry_after, bool)
            and math.isfinite(_as_float(retry_after))
            and retry_after > base
        ):
            base = float(retry_after)
        return max(base, 0.0)

    def _backoff_delay(self, attempt: int) -> float:
        """The delay after failed attempt ``attempt`` (1-based), before jitter: at most ``max_delay``.

        Never computes a power beyond the cap, so any attempt number (``10**9`` with
        ``max_attempts=None``) gives ``max_delay`` rather than an overflow.
        """
        cap = self.max_delay if self.max_delay is not None else 60.0
        steps = attempt - 1
        if self.initial_delay <= 0 or self.backoff == 1 or steps <= 0:
            return float(min(self.initial_delay, cap))
        # initial * backoff**steps reaches the cap once steps >= log(cap/initial) / log(backoff);
        # comparing exponents keeps huge attempt numbers away from float overflow.
        if steps >= math.log(cap / self.initial_delay) / math.log(self.backoff):
            return float(cap)
        return float(min(self.initial_delay * self.backoff**steps, cap))


NO_RETRY = Retry(max_attempts=1)


def ExponentialBackoff(  # noqa: N802 - reads as a policy name, as in the seeds
    max_attempts: int | None = 3,
    *,
    initial_delay: Seconds = 1.0,
    backoff: float = 2.0,
    max_delay: Seconds | None = None,
    jitter: float = 0.2,
    retry_on: tuple[type[BaseException], ...] = (Exception,),
    give_up_on: tuple[type[BaseException], ...] = (),
) -> Retry:
    """A :class:`Retry` whose delay doubles (by default) after each failed attempt (``None``: no limit)."""
    return Retry(max_attempts, initial_delay, backoff, max_delay, jitter, retry_on, give_up_on)


def FixedRetry(  # noqa: N802 - reads as a policy name, as in the seeds
    attempts: int | None = 3,
    *,
    delay: Seconds = 1.0,
    jitter: float = 0.0,
    retry_on: tuple[type[BaseException], ...] = (Exception,),
    give_up_on: tuple[type[BaseException], ...] = (),
) -> Retry:
    """A :class:`Retry` with ``attempts`` attempts in total (``None``: no limit) and a fixed delay between them."""
    return Retry(attempts, delay, 1.0, delay, jitter, retry_on, give_up_on)


@dataclass(frozen=True)
class Timeout:
    """Time limits of a step.

    Args:
        attempt: seconds one attempt may take.
        total: seconds the step may take across all its attempts and backoffs.
    """

    attempt: float | None = None
    total: float | None = None

    def __init__(self, attempt: Seconds | None = None, total: Seconds | None = None) -> None:
        object.__setattr__(self, "attempt", to_seconds(attempt, what="Timeout.attempt"))
        object.__setattr__(self, "total", to_seconds(total, what="Timeout.total"))


FallbackKind = Literal["cached", "call", "value", "skip", "route"]
_FALLBACK_KINDS: tuple[FallbackKind, ...] = ("cached", "call", "value", "skip", "route")


@dataclass(frozen=True)
class Fallback:
    """One fallback of a step, or a fallback decision returned by a step.

    Build fallback chains with the constructors: :meth:`cached`, :meth:`call`,
    :meth:`value` and :meth:`skip`. A step may also *return*
    ``Fallback("human_review_queue", doc)``: the run goes to the step of that name with
    ``doc`` as its input, or, when no step has that name, parks waiting for a person on
    that queue.

    Args:
        target: for a returned decision, the step or queue to go to.
        payload: for a returned decision, the value handed over.
    """

    target: str | None = None
    payload: Any = None
    kind: FallbackKind = "route"
    fn: Callable[..., Any] | None = None
    max_age: float | None = None
    flag: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in _FALLBACK_KINDS:
            raise DefinitionError(
                f"Fallback kind must be one of {', '.join(map(repr, _FALLBACK_KINDS))}, got {self.kind!r}; "
                "build it with Fallback.cached/call/value/skip"
            )
        if self.kind == "route" and not (isinstance(self.target, str) and self.target):
            raise DefinitionError("Fallback(target, value) needs a step or queue name as target")
        if self.kind == "call" and not callable(self.fn):
            raise DefinitionError(f"Fallback.call needs a callable, got {self.fn!r}")
        if self.flag is not None and not (isinstance(self.flag, str) and self.flag):
            raise DefinitionError(f"Fallback flag must be a non-empty string or None, got {self.flag!r}")
        object.__setattr__(self, "max_age", to_seconds(self.max_age, what="Fallback.max_age"))

    @classmethod
    def cached(cls, *, max_age: Seconds | None = None, flag: str | None = None) -> Fallback:
        """Use the last successful output of this step for the same input, if any.

        Args:
            max_age: ignore cached outputs older than this.
            flag: a label recorded on the step (e.g. ``"human_review"``).
        """
        return cls(kind="cached", max_age=max_age, flag=flag)  # type: ignore[arg-type]

    @classmethod
    def call(cls, fn: Callable[..., Any], *, flag: str | None = None) -> Fallback:
        """Call ``fn`` with the step's input (e.g. a cheaper model or a local one)."""
        return cls(kind="call", fn=fn, flag=flag)

    @classmethod
    def value(cls, value: Any, *, flag: str | None = None) -> Fallback:
        """Use ``value`` as the step's output; ``flag`` marks the run for attention."""
        return cls(kind="value", payload=value, flag=flag)

    @classmethod
    def skip(cls, *, flag: str | None = None) -> Fallback:
        """Mark the step skipped; downstream steps get :data:`MISSING` and see it in ``ctx.missing``."""
        return cls(kind="skip", flag=flag)

    @property
    def label(self) -> str:
        """Short description recorded in the step's metadata."""
        if self.kind == "call":
            return f"call:{getattr(self.fn, '__qualname__', repr(self.fn))}"
        if self.kind == "route":
            return f"route:{self.target}"
        return self.kind


@dataclass(frozen=True)
class Cache:
    """Keep successful outputs keyed by step, step version and input hash.

    A fresh entry (younger than ``ttl``) is returned without running the step; entries of
    any age feed :meth:`Fallback.cached`.
    """

    ttl: float

    def __init__(self, ttl: Seconds) -> None:
        if ttl is None:
            raise DefinitionError("Cache.ttl must be seconds or a timedelta, got None; leave cache= out for no cache")
        object.__setattr__(self, "ttl", to_seconds(ttl, what="Cache.ttl"))


# circuit breakers -------------------------------------------------------------------------
FailureCode = int | str | type[BaseException]
"""An error a breaker counts: an HTTP status, ``"timeout"``, ``"connection"``,
``"invalid_output"``, or an exception class (see :func:`failure_code_matches`)."""

DEFAULT_FAILURE_CODES: tuple[FailureCode, ...] = (429, 500, 502, 503, 504, "timeout", "connection")
"""What a breaker counts unless told otherwise: errors that say the endpoint is unwell."""


class BreakerState(enum.Enum):
    """Where a circuit breaker stands."""

    CLOSED = "closed"  # calls go through; failures are counted
    OPEN = "open"  # calls are refused (or sent to the fallback) until recovery_timeout passes
    HALF_OPEN = "half_open"  # a few trial calls decide between closed and open


def failure_code_matches(error: BaseException, codes: Sequence[FailureCode]) -> bool:
    """Whether ``error`` is one of ``codes``.

    Codes are HTTP statuses (``500``, ``429``), ``"timeout"`` (any ``TimeoutError``),
    ``"connection"`` (a :class:`~orchestrate.errors.ServerError` without a status),
    ``"invalid_output"``, or exception classes.
    """
    status = getattr(error, "status_code", None)
    for code in codes:
        if isinstance(code, type):
            if isinstance(error, code):
                return True
        elif isinstance(code, bool):
            continue
        elif isinstance(code, int):
            if status == code:
                return True
        elif code == "timeout":
            if isinstance(error, TimeoutError):
                return True
        elif code == "connection":
            if isinstance(error, ServerError) and status is None:
                return True
        elif code == "invalid_output" and isinstance(error, InvalidOutputError):
            return True
    return False


@dataclass(frozen=True)
class Circuit:
    """One breaker's state as :class:`BreakerRules` read and write it (a value: never changed in place).

    Attributes:
        state: closed, open or half-open.
        failures: times of the counted failures still inside the window (closed), oldest first.
        opened_at: when the breaker last opened.
        trials: trial calls granted while half-open.
        successes: trial calls that succeeded while half-open.
    """

    state: BreakerState = BreakerState.CLOSED
    failures: tuple[float, ...] = ()
    opened_at: float | None = None
    trials: int = 0
    successes: int = 0


@dataclass(frozen=True)
class BreakerRules:
    """The circuit breaker's state machine: every transition, pure, written once.

    Closed, a breaker counts failures; ``failure_threshold`` of them within ``window``
    seconds open it. Open, it refuses calls for ``recovery_timeout`` seconds, then
    half-opens: up to ``half_open_max_requests`` trial calls run; when that many succeed
    it closes, and a counted failure re-opens it. Each method takes a :class:`Circuit`
    and the time and returns the new one; the holders keep the state: in the process
    (:class:`~orchestrate.models.reliability.CircuitBreaker`) or in the store, shared by
    every worker (:class:`~orchestrate.policies_shared.SharedCircuitBreaker`). A holder
    applies :meth:`tick` before every other transition.

    Args:
        failure_threshold: failures within ``window`` that open the breaker.
        window: seconds over which failures are counted (``None``: consecutive failures;
            a success resets the count).
        recovery_timeout: seconds the breaker stays open.
        half_open_max_requests: trial calls allowed (and successes needed) while half-open.
        failure_codes: which errors count (see :func:`failure_code_matches`).
    """

    failure_threshold: int = 5
    window: float | None = 60.0
    recovery_timeout: float = 30.0
    half_open_max_requests: int = 1
    failure_codes: tuple[FailureCode, ...] = DEFAULT_FAILURE_CODES

    def __post_init__(self) -> None:
        threshold = self.failure_threshold
        if isinstance(threshold, bool) or not isinstance(threshold, int) or threshold < 1:
            raise DefinitionError(f"failure_threshold must be an int >= 1, got {threshold!r}")
        if self.window is not None and not self.window >= 0:
            raise DefinitionError(f"window must be seconds >= 0 or None, got {self.window!r}")
        if not self.recovery_timeout >= 0:
            raise DefinitionError(f"recovery_timeout must be seconds >= 0, got {self.recovery_timeout!r}")
        if self.half_open_max_requests < 1:
            raise DefinitionError(f"half_open_max_requests must be >= 1, got {self.half_open_max_requests!r}")
        for code in self.failure_codes:
            if not (
                (isinstance(code, int) and not isinstance(code, bool))
                or code in ("timeout", "connection", "invalid_output")
                or (isinstance(code, type) and issubclass(code, BaseException))
            ):
                raise DefinitionError(
                    f"failure code {code!r} is not an HTTP status, 'timeout', 'connection', "
                    "'invalid_output' or an exception class"
                )

    def counts(self, error: BaseException) -> bool:
        """Whether ``error`` counts against the resource (others say nothing about its health)."""
        return failure_code_matches(error, self.failure_codes)

    def tick(self, circuit: Circuit, now: float) -> Circuit:
        """Time passing: an open breaker past its recovery timeout half-opens; old failures leave the window."""
        if circuit.state is BreakerState.OPEN and now - (circuit.opened_at or 0.0) >= self.recovery_timeout:
            return Circuit(BreakerState.HALF_OPEN, opened_at=circuit.opened_at)
        if circuit.state is BreakerState.CLOSED and circuit.failures and self._expired(circuit.failures[0], now):
            kept = tuple(t for t in circuit.failures if not self._expired(t, now))
            return dataclasses.replace(circuit, failures=kept)
        return circuit

    def allow(self, circuit: Circuit) -> tuple[bool, Circuit]:
        """Whether a call may go through now, and the state after granting it."""
        if circuit.state is BreakerState.CLOSED:
            return True, circuit
        if circuit.state is BreakerState.HALF_OPEN and circuit.trials < self.half_open_max_requests:
            return True, dataclasses.replace(circuit, trials=circuit.trials + 1)
        return False, circuit

    def succeeded(self, circuit: Circuit) -> Circuit:
        """A granted call succeeded: enough trial successes close a half-open breaker."""
        if circuit.state is BreakerState.HALF_OPEN:
            if circuit.successes + 1 >= self.half_open_max_requests:
                return Circuit()
            return dataclasses.replace(circuit, successes=circuit.successes + 1)
        if circuit.state is BreakerState.CLOSED and self.window is None and circuit.failures:
            return Circuit()  # counting consecutive failures: a success ends the streak
        return circuit

    def failed(self, circuit: Circuit, now: float) -> Circuit:
        """A granted call failed with an error that :meth:`counts`."""
        if circuit.state is BreakerState.HALF_OPEN:
            return Circuit(BreakerState.OPEN, opened_at=now)
        if circuit.state is BreakerState.CLOSED:
            kept = [t for t in circuit.failures if not self._expired(t, now)]
            failures = (*kept, now)[-self.failure_threshold :]
            if len(failures) >= self.failure_threshold:
                return Circuit(BreakerState.OPEN, opened_at=now)
            return dataclasses.replace(circuit, failures=failures)
        return circuit

    def released(self, circuit: Circuit) -> Circuit:
        """A granted call ended without a verdict (cancelled, or an error that does not count)."""
        if circuit.state is BreakerState.HALF_OPEN and circuit.trials > circuit.successes:
            return dataclasses.replace(circuit, trials=circuit.trials - 1)
        return circuit

    def retry_after(self, circuit: Circuit, now: float) -> float:
        """Seconds until an open breaker lets a trial call through (0 when not open)."""
        if circuit.state is not BreakerState.OPEN:
            return 0.0
        return max((circuit.opened_at or 0.0) + self.recovery_timeout - now, 0.0)

    def _expired(self, failed_at: float, now: float) -> bool:
        return self.window is not None and now - failed_at > self.window


# rate limits ------------------------------------------------------------------------------
@dataclass(frozen=True)
class RateGrant:
    """The answer to a rate-limited call: go now, or how long to wait.

    Attributes:
        granted: whether the cost was taken from the window.
        at: the time of the decision (on PostgreSQL, the database clock's): when granted,
            the time the grant counts at.
        wait_seconds: when refused, how long until the cost would fit (0 when granted).
    """

    granted: bool
    at: float
    wait_seconds: float = 0.0


def decide_rate(
    window: Sequence[tuple[float, float]], *, limit: float, per_seconds: float, cost: float, now: float
) -> RateGrant:
    """Decide a sliding-window rate request: the arithmetic every rate limit applies.

    Args:
        window: ``(at, cost)`` of the grants with ``at > now - per_seconds``, oldest first.
        limit: what the grants of one window may sum to.
        per_seconds: the window's length.
        cost: what this call takes.
        now: the time of the decision.

    A call costing more than ``limit`` is granted once the window is empty, so that it
    waits instead of waiting forever. A grant is never stamped before the latest one (a
    caller's clock may lag behind another's): the grants' times only move forward.
    """
    if window and window[-1][0] > now:
        now = window[-1][0]
    used = sum(c for _, c in window)
    if used + cost <= limit or not window:
        return RateGrant(True, now)
    excess = used + cost - limit
    freed = 0.0
    frees_at = window[-1][0]
    for at, spent in window:
        freed += spent
        if freed >= excess:
            frees_at = at
            break
    # The grant at ``frees_at`` leaves the window once ``now - per_seconds >= frees_at``.
    return RateGrant(False, now, max(frees_at + per_seconds - now, 0.0))


@dataclass(frozen=True)
class RateWindow:
    """At most ``limit`` calls (or cost units) in any ``per_seconds``: every rate limit's rule.

    A sliding window over the grants, not a token bucket: the grants of *any* interval of
    ``per_seconds`` never sum above ``limit``, which is how providers count "50 calls per
    10 s" or "90,000 tokens a minute". A bucket of the same rate lets up to twice that
    through one window (a full bucket's burst on top of its refill) and earns 429s. The
    sustained rate is the same. The in-process
    :class:`~orchestrate.models.reliability.RateLimiter` keeps its grants in memory; the
    stores keep them for :class:`~orchestrate.policies_shared.SharedRateLimiter`.

    Args:
        limit: what the grants of one window may sum to.
        per_seconds: the window's length.
    """

    limit: float
    per_seconds: float

    def __post_init__(self) -> None:
        if not (self.limit > 0 and self.per_seconds > 0):
            raise DefinitionError(
                f"limit and per_seconds must be positive, got {self.limit!r} per {self.per_seconds!r}s"
            )

    def take(
        self, grants: Sequence[tuple[float, float]], *, cost: float, now: float
    ) -> tuple[RateGrant, tuple[tuple[float, float], ...]]:
        """Decide a call of ``cost`` at ``now`` against ``grants`` (``(at, cost)``, oldest first).

        Returns:
            the decision, and the grants that count from now on: those still inside the
            window, with this one appended when granted.
        """
        start = now - self.per_seconds
        kept = tuple(g for g in grants if g[0] > start)
        grant = decide_rate(kept, limit=self.limit, per_seconds=self.per_seconds, cost=cost, now=now)
        return grant, ((*kept, (grant.at, cost)) if grant.granted else kept)


Isolation = Literal["auto", "thread", "process", "inline"]
"""Where a sync step runs: ``"auto"`` (the default: on the event loop once its calls have
proved quick, else a thread), ``"thread"`` (always a thread), ``"process"`` (a process, killed
on timeout), ``"inline"`` (always on the loop). Async steps run on the loop whatever it says."""


@dataclass(frozen=True)
class StepPolicy:
    """Everything that governs how one step executes. Build it with :meth:`build`."""

    retry: Retry = NO_RETRY
    timeout: Timeout = field(default_factory=Timeout)
    fallback: tuple[Fallback, ...] = ()
    cache: Cache | None = None
    max_concurrency: int | None = None
    isolation: Isolation = "auto"
    min_budget: float | None = None
    schema: StepSchema | None = None  # the fields of the output kept (orchestrate.state)

    def __post_init__(self) -> None:
        # Built directly (or by replace) rather than by build(): check the normalised types,
        # so that a shorthand here fails now instead of inside a run.
        hint = "; StepPolicy.build() accepts the shorthands"
        if not isinstance(self.retry, Retry):
            raise DefinitionError(f"StepPolicy.retry must be a Retry, got {self.retry!r}{hint}")
        if not isinstance(self.timeout, Timeout):
            raise DefinitionError(f"StepPolicy.timeout must be a Timeout, got {self.timeout!r}{hint}")
        if not isinstance(self.fallback, tuple) or not all(isinstance(f, Fallback) for f in self.fallback):
            raise DefinitionError(f"StepPolicy.fallback must be a tuple of Fallback, got {self.fallback!r}{hint}")
        if self.cache is not None and not isinstance(self.cache, Cache):
            raise DefinitionError(f"StepPolicy.cache must be a Cache or None, got {self.cache!r}{hint}")
        _check_max_concurrency(self.max_concurrency)
        _check_isolation(self.isolation)
        if self.min_budget is not None:
            to_seconds(self.min_budget, what="StepPolicy.min_budget")
        if self.schema is not None and not isinstance(self.schema, StepSchema):
            raise DefinitionError(f"StepPolicy.schema must be a StepSchema or None, got {self.schema!r}")

    @classmethod
    def build(
        cls,
        *,
        retry: int | Retry | None = None,
        timeout: Seconds | Timeout | None = None,
        fallback: Fallback | Sequence[Fallback] | None = None,
        cache: Seconds | Cache | None = None,
        max_concurrency: int | None = None,
        isolation: Isolation = "auto",
        min_budget: Seconds | None = None,
        schema: StepSchema | None = None,
        where: str = "step",
    ) -> StepPolicy:
        """Normalise the shorthands accepted by ``Step``, ``@step`` and ``ctx.step``.

        ``retry=3`` means three retries after the first attempt (four attempts in all);
        ``timeout=30`` is a per-attempt timeout in seconds.
        """
        try:
            if retry is None:
                retry_policy = NO_RETRY
            elif isinstance(retry, Retry):
                retry_policy = retry
            elif isinstance(retry, int) and not isinstance(retry, bool) and retry >= 0:
                retry_policy = Retry(max_attempts=retry + 1)
            else:
                raise DefinitionError(f"retry must be a Retry or a count >= 0, got {retry!r}")
            if timeout is None:
                timeout_policy = Timeout()
            elif isinstance(timeout, Timeout):
                timeout_policy = timeout
            else:
                timeout_policy = Timeout(attempt=to_seconds(timeout, what="timeout"))
            if fallback is None:
                chain: tuple[Fallback, ...] = ()
            elif isinstance(fallback, Fallback):
                chain = (fallback,)
            elif isinstance(fallback, Sequence) and not isinstance(fallback, str):
                chain = tuple(fallback)
            else:
                raise DefinitionError(
                    f"fallback must be a Fallback or a list of them, got {fallback!r}; "
                    "to call a function on failure use fallback=Fallback.call(fn)"
                )
            for item in chain:
                if not isinstance(item, Fallback) or item.kind == "route":
                    raise DefinitionError(f"fallback must be built with Fallback.cached/call/value/skip, got {item!r}")
            cache_policy = (
                cache if isinstance(cache, Cache) or cache is None else Cache(to_seconds(cache, what="cache") or 0.0)
            )
            _check_max_concurrency(max_concurrency)
            _check_isolation(isolation)
            if schema is not None and not isinstance(schema, StepSchema):
                raise DefinitionError(f"schema must be a StepSchema(keep=[...], discard=[...]), got {schema!r}")
            return cls(
                retry=retry_policy,
                timeout=timeout_policy,
                fallback=chain,
                cache=cache_policy,
                max_concurrency=max_concurrency,
                isolation=isolation,
                min_budget=to_seconds(min_budget, what="min_budget"),
                schema=schema,
            )
        except DefinitionError as exc:
            raise DefinitionError(f"{where}: {exc}") from None

    def replace(self, **changes: Any) -> StepPolicy:
        """A copy with some fields changed."""
        return dataclasses.replace(self, **changes)


def _check_max_concurrency(value: Any) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise DefinitionError(f"max_concurrency must be >= 1 (an int, or None for no limit), got {value!r}")


def _check_isolation(value: Any) -> None:
    if value not in ("auto", "thread", "process", "inline"):
        raise DefinitionError(f"isolation must be 'auto', 'thread', 'process' or 'inline', got {value!r}")


class _Missing:
    """Marker handed to steps whose input came from a skipped step."""

    _instance: _Missing | None = None

    def __new__(cls) -> _Missing:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "MISSING"

    def __bool__(self) -> bool:
        return False


MISSING: Any = _Missing()
"""What a step receives in place of a skipped step's output (falsy)."""
