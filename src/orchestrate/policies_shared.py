"""Rate limits and circuit breakers shared by every worker of a store.

The in-process :class:`~orchestrate.models.reliability.RateLimiter` and
:class:`~orchestrate.models.reliability.CircuitBreaker` keep their state in one process.
With several workers, a provider's limit ("50 calls per 10 s") and an endpoint's health
are facts about the world, not about a process: these variants keep that state in the
store (:class:`~orchestrate.store.base.LimitsStore`), so every worker sees the same
window and the same breaker. The rules are the same as in-process: the sliding window
of :class:`~orchestrate.policies.RateWindow` and the transitions of
:class:`~orchestrate.policies.BreakerRules`; only where the state lives differs. On
PostgreSQL their time is the database clock; elsewhere it is the ``clock`` given, by
default the clock of the engine running the step (a
:class:`~orchestrate.testing.FakeClock` in tests).

Use them inside steps (the store defaults to the one of the engine running the step)::

    limit = SharedRateLimiter("openai:gpt-4o", limit=50, per_seconds=10)
    breaker = SharedCircuitBreaker("openai:gpt-4o", failure_threshold=3, window=60, recovery_timeout=600)

    async def summarise(text: str) -> str:
        async with breaker.guard():   # CircuitOpenError while open: the step's fallback runs
            await limit.acquire()     # queues until the shared window has room
            return await call_model(text)

or wrap a model: ``SharedRateLimitedModel(SharedBreakerModel(gpt4, breaker, fallback=mini), limit)``.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import TypeVar

from orchestrate._engine.clock import Clock, SystemClock
from orchestrate._engine.state import current_run
from orchestrate.errors import CircuitOpenError, DefinitionError, InvalidInputError, RateLimitedError, StoreError
from orchestrate.models.base import Model, ModelRequest, ModelResult, WrapperModel
from orchestrate.observe import get_logger
from orchestrate.policies import (
    DEFAULT_FAILURE_CODES,
    BreakerRules,
    BreakerState,
    Circuit,
    FailureCode,
    RateWindow,
)
from orchestrate.store.base import BreakerRecord, LimitsStore, Store

T = TypeVar("T")

log = get_logger()

_CAS_ATTEMPTS = 64


def _resolve(store: Store | None, clock: Clock | None, what: str) -> tuple[LimitsStore, Clock]:
    """The store and clock to use: those given, else those of the engine running the current step."""
    ctx = current_run.get() if store is None or clock is None else None
    if store is None:
        if ctx is None:
            raise InvalidInputError(f"{what} needs a store: pass store=..., or use it inside a step run by an engine")
        store = ctx.engine.store
    if not isinstance(store, LimitsStore):
        raise InvalidInputError(f"{what}: store {store.url!r} keeps no shared limits (it is not a LimitsStore)")
    if clock is None:
        clock = ctx.engine.clock if ctx is not None else _SYSTEM_CLOCK
    return store, clock


_SYSTEM_CLOCK = SystemClock()


def _circuit(record: BreakerRecord) -> Circuit:
    return Circuit(
        BreakerState(record.state),
        tuple(record.failures),
        record.opened_at,
        record.trials,
        record.successes,
    )


def _store(circuit: Circuit, record: BreakerRecord) -> None:
    record.state = circuit.state.value
    record.failures = list(circuit.failures)
    record.opened_at = circuit.opened_at
    record.trials = circuit.trials
    record.successes = circuit.successes


class SharedRateLimiter:
    """At most ``limit`` calls (or cost units) in any ``per_seconds`` window, across workers.

    The sliding window of :class:`~orchestrate.policies.RateWindow` (the in-process
    :class:`~orchestrate.models.reliability.RateLimiter`'s rule too): the grants of *any*
    window of ``per_seconds`` never sum above ``limit``. Calls beyond the limit queue:
    :meth:`acquire` sleeps until the window has room, with a little jitter so that
    waiting workers do not all retry at once.

    Args:
        resource: what is limited, e.g. ``"openai:gpt-4o"``; one window per resource.
        limit: calls (cost units) allowed per window.
        per_seconds: the window's length.
        store: where the window lives; default: the store of the engine running the
            current step.
        max_wait: give up after waiting this long with
            :class:`~orchestrate.errors.RateLimitedError` (``None``: wait as long as it takes).
        clock: the time asked of the store and slept on; default: the clock of the engine
            running the current step, else the system clock.
    """

    def __init__(
        self,
        resource: str,
        *,
        limit: float,
        per_seconds: float,
        store: Store | None = None,
        max_wait: float | None = None,
        clock: Clock | None = None,
    ) -> None:
        if not resource:
            raise DefinitionError("a SharedRateLimiter needs a resource name")
        if max_wait is not None and max_wait < 0:
            raise DefinitionError(f"max_wait must be >= 0, got {max_wait!r}")
        self.resource = resource
        self.window = RateWindow(float(limit), float(per_seconds))
        """The rule the store applies to this resource's grants."""
        self.limit = self.window.limit
        self.per_seconds = self.window.per_seconds
        self.store = store
        self.clock = clock
        self.max_wait = max_wait
        self.last_grant_at: float | None = None
        """The store's time of this limiter's last grant (the database clock on PostgreSQL)."""
        self.waited = 0.0
        """Seconds this limiter's callers spent queueing, in total."""

    async def acquire(self, cost: float = 1.0) -> float:
        """Take ``cost`` from the shared window, waiting for room; return the seconds waited.

        Raises:
            RateLimitedError: ``max_wait`` passed without room.
        """
        store, clock = _resolve(self.store, self.clock, f"SharedRateLimiter({self.resource!r})")
        started = clock.now()
        while True:
            grant = await store.acquire_rate(
                self.resource, limit=self.limit, per_seconds=self.per_seconds, cost=cost, now=clock.now()
            )
            if grant.granted:
                self.last_grant_at = grant.at
                waited = max(clock.now() - started, 0.0)
                self.waited += waited
                return waited
            # Jitter: the waiters of many workers should not all come back at the same instant.
            wait = grant.wait_seconds + 0.002 + random.random() * min(0.05, grant.wait_seconds * 0.1)
            if self.max_wait is not None and clock.now() - started + wait > self.max_wait:
                raise RateLimitedError(
                    f"rate limit {self.resource!r} ({self.limit:g} per {self.per_seconds:g}s) had no room "
                    f"within {self.max_wait:g}s",
                    retry_after=grant.wait_seconds,
                )
            await clock.sleep(wait)

    async def __aenter__(self) -> SharedRateLimiter:
        await self.acquire()
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None

    def __repr__(self) -> str:
        return f"SharedRateLimiter({self.resource!r}, {self.limit:g} per {self.per_seconds:g}s)"


class SharedCircuitBreaker:
    """A closed / open / half-open breaker whose state every worker shares.

    The transitions of :class:`~orchestrate.policies.BreakerRules`, the same as the
    in-process :class:`~orchestrate.models.reliability.CircuitBreaker`'s:
    ``failure_threshold`` counted failures within ``window`` seconds open it; open, it
    refuses calls for ``recovery_timeout`` seconds, then half-opens and lets up to
    ``half_open_max_requests`` trial calls through (across all workers); that many
    successes close it and a counted failure re-opens it. Each change is a
    compare-and-set on the stored state, retried on conflict, so concurrent workers
    never lose each other's failures.

    Args:
        resource: what the breaker guards, e.g. a model endpoint.
        failure_threshold: failures within ``window`` that open the breaker.
        window: seconds over which failures are counted.
        recovery_timeout: seconds the breaker stays open.
        half_open_max_requests: trial calls (and successes needed) while half-open.
        failure_codes: which errors count (see
            :func:`~orchestrate.policies.failure_code_matches`).
        store: where the state lives; default: the store of the engine running the step.
        clock: the time asked of the store (which keeps its own on PostgreSQL); default:
            the clock of the engine running the current step, else the system clock.
    """

    def __init__(
        self,
        resource: str,
        *,
        failure_threshold: int = 5,
        window: float = 60.0,
        recovery_timeout: float = 30.0,
        half_open_max_requests: int = 1,
        failure_codes: Sequence[FailureCode] = DEFAULT_FAILURE_CODES,
        store: Store | None = None,
        clock: Clock | None = None,
    ) -> None:
        if not resource:
            raise DefinitionError("a SharedCircuitBreaker needs a resource name")
        if window <= 0 or recovery_timeout <= 0:
            raise DefinitionError("window and recovery_timeout must be positive seconds")
        self.resource = resource
        self.rules = BreakerRules(
            failure_threshold=failure_threshold,
            window=float(window),
            recovery_timeout=float(recovery_timeout),
            half_open_max_requests=half_open_max_requests,
            failure_codes=tuple(failure_codes),
        )
        """The transitions this breaker applies (the same as an in-process breaker's)."""
        self.failure_threshold = failure_threshold
        self.window = float(window)
        self.recovery_timeout = float(recovery_timeout)
        self.half_open_max_requests = half_open_max_requests
        self.failure_codes = self.rules.failure_codes
        self.store = store
        self.clock = clock

    # state changes ------------------------------------------------------------------------
    async def _change(self, change: Callable[[Circuit, float], tuple[T, Circuit]]) -> T:
        """Apply ``change`` to the current state with compare-and-set, retrying on conflict."""
        store, clock = _resolve(self.store, self.clock, f"SharedCircuitBreaker({self.resource!r})")
        for _ in range(_CAS_ATTEMPTS):
            record, now = await store.load_breaker(self.resource, now=clock.now())
            before = _circuit(record)
            result, after = change(self.rules.tick(before, now), now)
            if after == before:
                return result
            version = record.version
            _store(after, record)
            if await store.save_breaker(record, expected_version=version):
                if after.state is not before.state:
                    log.warning(
                        "circuit_breaker_" + after.state.value, breaker=self.resource, previous=before.state.value
                    )
                return result
            await asyncio.sleep(random.random() * 0.01)  # not the clock's: spreads out real contention
        raise StoreError(f"breaker {self.resource!r}: {_CAS_ATTEMPTS} conflicting updates in a row")

    async def allow(self) -> bool:
        """Ask to make a call; ``True`` grants it (then record its outcome)."""
        return await self._change(lambda circuit, _now: self.rules.allow(circuit))

    async def record_success(self) -> None:
        """A granted call succeeded."""
        await self._change(lambda circuit, _now: (None, self.rules.succeeded(circuit)))

    async def record_failure(self, error: BaseException) -> bool:
        """A granted call failed; return whether the error counted against the resource."""
        if not self.rules.counts(error):
            await self.release()
            return False
        await self._change(lambda circuit, now: (None, self.rules.failed(circuit, now)))
        return True

    async def release(self) -> None:
        """A granted call ended without a verdict (cancelled, or an error that does not count)."""
        await self._change(lambda circuit, _now: (None, self.rules.released(circuit)))

    async def state(self) -> BreakerState:
        """The current state (an open breaker past its timeout reads half-open)."""
        return await self._change(lambda circuit, _now: (circuit.state, circuit))

    async def retry_after(self) -> float:
        """Seconds until an open breaker lets a trial call through (0 when not open)."""
        return await self._change(lambda circuit, now: (self.rules.retry_after(circuit, now), circuit))

    async def reset(self) -> None:
        """Close the breaker and forget past failures."""
        await self._change(lambda _circuit, _now: (None, Circuit()))

    @asynccontextmanager
    async def guard(self) -> AsyncIterator[None]:
        """Run the block as one call through the breaker.

        Raises:
            CircuitOpenError: the breaker refuses calls now (``retry_after`` says how long).
        """
        if not await self.allow():
            raise CircuitOpenError(f"circuit {self.resource!r} is open (shared)", retry_after=await self.retry_after())
        try:
            yield
        except Exception as exc:
            await self.record_failure(exc)
            raise
        except BaseException:
            await asyncio.shield(self.release())
            raise
        await self.record_success()

    def __repr__(self) -> str:
        return f"SharedCircuitBreaker({self.resource!r})"


class SharedBreakerModel(WrapperModel):
    """Calls ``wrapped`` while the shared breaker allows; otherwise ``fallback``, or fails fast.

    Like :class:`~orchestrate.models.reliability.CircuitBreakerModel`, with the breaker's
    state shared by every worker of the store.
    """

    def __init__(self, wrapped: Model, breaker: SharedCircuitBreaker, *, fallback: Model | None = None) -> None:
        super().__init__(wrapped)
        self.breaker = breaker
        self.fallback = fallback

    async def request(self, request: ModelRequest) -> ModelResult:
        """Answer through the guarded model, or the fallback while the breaker is open."""
        if not await self.breaker.allow():
            if self.fallback is None:
                raise CircuitOpenError(
                    f"circuit {self.breaker.resource!r} is open for {self.wrapped.model_id!r}",
                    model=self.wrapped.model_id,
                    retry_after=await self.breaker.retry_after(),
                )
            result = await self.fallback.request(request)
            return result.with_meta(breaker=self.breaker.resource, breaker_state=(await self.breaker.state()).value)
        try:
            result = await self.wrapped.request(request)
        except Exception as exc:
            await self.breaker.record_failure(exc)
            raise
        except BaseException:
            await asyncio.shield(self.breaker.release())
            raise
        await self.breaker.record_success()
        return result


class SharedRateLimitedModel(WrapperModel):
    """Calls ``wrapped`` within a :class:`SharedRateLimiter` (one grant per request)."""

    def __init__(self, wrapped: Model, limiter: SharedRateLimiter) -> None:
        super().__init__(wrapped)
        self.limiter = limiter

    async def request(self, request: ModelRequest) -> ModelResult:
        """Wait for room in the shared window, then call."""
        waited = await self.limiter.acquire()
        result = await self.wrapped.request(request)
        return result.with_meta(rate_limit_wait_s=round(waited, 6)) if waited > 0 else result
