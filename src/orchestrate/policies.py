"""Step and run policies: retry, timeout, fallback, cache, isolation.

Policies are frozen dataclasses that validate themselves when built and *return
decisions* (``Retry.next_delay(attempt, error)``) without doing any I/O, so they are
testable on their own and usable from Python now and from YAML later. Shorthands are
accepted where a step is declared (``retry=3``, ``timeout=30``) and normalised in one
place: :func:`StepPolicy.build`.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Literal

from orchestrate.errors import DefinitionError, NonRetryableError

Seconds = float | int | timedelta


def to_seconds(value: Seconds | None, *, what: str) -> float | None:
    """Normalise a duration given as seconds or ``timedelta``; ``None`` stays ``None``."""
    if value is None:
        return None
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, bool) or not isinstance(value, int | float):
        raise DefinitionError(f"{what} must be seconds or a timedelta, got {value!r}")
    else:
        seconds = float(value)
    if seconds <= 0:
        raise DefinitionError(f"{what} must be positive, got {seconds!r}")
    return seconds


@dataclass(frozen=True)
class Retry:
    """When and how often to retry a failed attempt.

    Args:
        max_attempts: attempts in total, the first included (1 means no retry).
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

    max_attempts: int = 3
    initial_delay: float = 1.0
    backoff: float = 2.0
    max_delay: float | None = None
    jitter: float = 0.2
    retry_on: tuple[type[BaseException], ...] = (Exception,)
    give_up_on: tuple[type[BaseException], ...] = ()

    def __post_init__(self) -> None:
        if self.max_delay is None:
            object.__setattr__(self, "max_delay", max(60.0, float(self.initial_delay)))
        if isinstance(self.max_attempts, bool) or not isinstance(self.max_attempts, int):
            raise DefinitionError(f"Retry.max_attempts must be an int, got {self.max_attempts!r}")
        if self.max_attempts < 1:
            raise DefinitionError(f"Retry.max_attempts must be >= 1, got {self.max_attempts}")
        assert self.max_delay is not None
        if self.initial_delay < 0 or self.max_delay < 0:
            raise DefinitionError("Retry delays must be >= 0")
        if self.max_delay < self.initial_delay:
            raise DefinitionError(
                f"Retry.max_delay ({self.max_delay:g}) is below initial_delay ({self.initial_delay:g})"
            )
        if self.backoff < 1:
            raise DefinitionError(f"Retry.backoff must be >= 1, got {self.backoff}")
        if not 0 <= self.jitter <= 1:
            raise DefinitionError(f"Retry.jitter must be within [0, 1], got {self.jitter}")
        for name in ("retry_on", "give_up_on"):
            types = getattr(self, name)
            if not isinstance(types, tuple) or not all(
                isinstance(t, type) and issubclass(t, BaseException) for t in types
            ):
                raise DefinitionError(f"Retry.{name} must be a tuple of exception types")

    def should_retry(self, error: BaseException) -> bool:
        """Whether ``error`` is of a kind this policy retries at all."""
        if isinstance(error, (NonRetryableError, *self.give_up_on)):
            return False
        return isinstance(error, self.retry_on)

    def next_delay(self, attempt: int, error: BaseException, *, rng: random.Random | None = None) -> float | None:
        """Seconds to wait before the attempt after ``attempt`` (1-based), or ``None`` to give up."""
        if attempt >= self.max_attempts or not self.should_retry(error):
            return None
        cap = self.max_delay if self.max_delay is not None else 60.0
        base = min(self.initial_delay * self.backoff ** (attempt - 1), cap)
        if self.jitter:
            base *= 1 + (rng or random).uniform(-self.jitter, self.jitter)
        retry_after = getattr(error, "retry_after", None)
        if isinstance(retry_after, int | float) and retry_after > base:
            base = float(retry_after)
        return max(base, 0.0)


NO_RETRY = Retry(max_attempts=1)


def ExponentialBackoff(  # noqa: N802 - reads as a policy name, as in the seeds
    max_attempts: int = 3,
    *,
    initial_delay: float = 1.0,
    backoff: float = 2.0,
    max_delay: float | None = None,
    jitter: float = 0.2,
    retry_on: tuple[type[BaseException], ...] = (Exception,),
    give_up_on: tuple[type[BaseException], ...] = (),
) -> Retry:
    """A :class:`Retry` whose delay doubles (by default) after each failed attempt."""
    return Retry(max_attempts, initial_delay, backoff, max_delay, jitter, retry_on, give_up_on)


def FixedRetry(  # noqa: N802 - reads as a policy name, as in the seeds
    attempts: int = 3,
    *,
    delay: float = 1.0,
    jitter: float = 0.0,
    retry_on: tuple[type[BaseException], ...] = (Exception,),
    give_up_on: tuple[type[BaseException], ...] = (),
) -> Retry:
    """A :class:`Retry` with ``attempts`` attempts in total and a fixed delay between them."""
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

    def __post_init__(self) -> None:
        object.__setattr__(self, "attempt", to_seconds(self.attempt, what="Timeout.attempt"))
        object.__setattr__(self, "total", to_seconds(self.total, what="Timeout.total"))


FallbackKind = Literal["cached", "call", "value", "skip", "route"]


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
        if self.kind == "route" and not (isinstance(self.target, str) and self.target):
            raise DefinitionError("Fallback(target, value) needs a step or queue name as target")
        if self.kind == "call" and not callable(self.fn):
            raise DefinitionError(f"Fallback.call needs a callable, got {self.fn!r}")
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

    def __post_init__(self) -> None:
        object.__setattr__(self, "ttl", to_seconds(self.ttl, what="Cache.ttl"))


Isolation = Literal["thread", "process", "inline"]


@dataclass(frozen=True)
class StepPolicy:
    """Everything that governs how one step executes. Build it with :meth:`build`."""

    retry: Retry = NO_RETRY
    timeout: Timeout = field(default_factory=Timeout)
    fallback: tuple[Fallback, ...] = ()
    cache: Cache | None = None
    max_concurrency: int | None = None
    isolation: Isolation = "thread"
    min_budget: float | None = None

    @classmethod
    def build(
        cls,
        *,
        retry: int | Retry | None = None,
        timeout: Seconds | Timeout | None = None,
        fallback: Fallback | Sequence[Fallback] | None = None,
        cache: Seconds | Cache | None = None,
        max_concurrency: int | None = None,
        isolation: Isolation = "thread",
        min_budget: Seconds | None = None,
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
            else:
                chain = tuple(fallback)
            for item in chain:
                if not isinstance(item, Fallback) or item.kind == "route":
                    raise DefinitionError(f"fallback must be built with Fallback.cached/call/value/skip, got {item!r}")
            cache_policy = (
                cache if isinstance(cache, Cache) or cache is None else Cache(to_seconds(cache, what="cache") or 0.0)
            )
            if max_concurrency is not None and (
                isinstance(max_concurrency, bool) or not isinstance(max_concurrency, int) or max_concurrency < 1
            ):
                raise DefinitionError(f"max_concurrency must be >= 1, got {max_concurrency!r}")
            if isolation not in ("thread", "process", "inline"):
                raise DefinitionError(f"isolation must be 'thread', 'process' or 'inline', got {isolation!r}")
            return cls(
                retry=retry_policy,
                timeout=timeout_policy,
                fallback=chain,
                cache=cache_policy,
                max_concurrency=max_concurrency,
                isolation=isolation,
                min_budget=to_seconds(min_budget, what="min_budget"),
            )
        except DefinitionError as exc:
            raise DefinitionError(f"{where}: {exc}") from None

    def replace(self, **changes: Any) -> StepPolicy:
        """A copy with some fields changed."""
        return dataclasses.replace(self, **changes)


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
