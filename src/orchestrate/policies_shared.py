"""Rate limits and circuit breakers shared by every worker of a store.

The in-process :class:`~orchestrate.models.reliability.RateLimiter` and
:class:`~orchestrate.models.reliability.CircuitBreaker` keep their state in one process.
With several workers, a provider's limit ("50 calls per 10 s") and an endpoint's health
are facts about the world, not about a process: these variants keep that state in the
store (:class:`~orchestrate.store.base.LimitsStore`), so every worker sees the same
window and the same breaker. On PostgreSQL their time is the database clock.

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
import copy
import random
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import TypeVar

from orchestrate._engine.context import current_run
from orchestrate.errors import CircuitOpenError, DefinitionError, InvalidInputError, RateLimitedError, StoreError
from orchestrate.models.base import Model, ModelRequest, ModelResult, WrapperModel
from orchestrate.models.reliability import BreakerState, FailureCode, failure_code_matches
from orchestrate.observe import get_logger
from orchestrate.store.base import BreakerRecord, LimitsStore, Store

T = TypeVar("T")

log = get_logger()

_CAS_ATTEMPTS = 64


def _resolve(store: Store | None, what: str) -> LimitsStore:
    if store is None:
        ctx = current_run.get()
        if ctx is None:
            raise InvalidInputError(f"{what} needs a store: pass store=..., or use it inside a step run by an engine")
        store = ctx.engine.store
    if not isinstance(store, LimitsStore):
        raise InvalidInputError(f"{what}: store {store.url!r} keeps no shared limits (it is not a LimitsStore)")
    return store


class SharedRateLimiter:
    """At most ``limit`` calls (or cost units) in any ``per_seconds`` window, across workers.

    A sliding window, not a token bucket: the grants of *any* window of ``per_seconds``
    never sum above ``limit`` (a bucket of the same rate lets a burst through on top of
    its refill). Calls beyond the limit queue: :meth:`acquire` sleeps until the window
    has room, with a little jitter so that waiting workers do not all retry at once.

    Args:
        resource: what is limited, e.g. ``"openai:gpt-4o"``; one window per resource.
        limit: calls (cost units) allowed per window.
        per_seconds: the window's length.
        store: where the window lives; default: the store of the engine running the
            current step.
        max_wait: give up after waiting this long with
            :class:`~orchestrate.errors.RateLimitedError` (``None``: wait as long as it takes).
    """

    def __init__(
        self,
        resource: str,
        *,
        limit: float,
        per_seconds: float,
        store: Store | None = None,
        max_wait: float | None = None,
    ) -> None:
        if not resource:
            raise DefinitionError("a SharedRateLimiter needs a resource name")
        if limit <= 0 or per_seconds <= 0:
            raise DefinitionError(f"limit and per_seconds must be positive, got {limit!r} per {per_seconds!r}s")
        if max_wait is not None and max_wait < 0:
            raise DefinitionError(f"max_wait must be >= 0, got {max_wait!r}")
        self.resource = resource
        self.limit = float(limit)
        self.per_seconds = float(per_seconds)
        self.store = store
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
        store = _resolve(self.store, f"SharedRateLimiter({self.resource!r})")
        started = time.monotonic()
        while True:
            grant = await store.acquire_rate(
                self.resource, limit=self.limit, per_seconds=self.per_seconds, cost=cost, now=time.time()
            )
            if grant.granted:
                self.last_grant_at = grant.at
                waited = time.monotonic() - started
                self.waited += waited
                return waited
            # Jitter: the waiters of many workers should not all come back at the same instant.
            wait = grant.wait_seconds + 0.002 + random.random() * min(0.05, grant.wait_seconds * 0.1)
            if self.max_wait is not None and time.monotonic() - started + wait > self.max_wait:
                raise RateLimitedError(
                    f"rate limit {self.resource!r} ({self.limit:g} per {self.per_seconds:g}s) had no room "
                    f"within {self.max_wait:g}s",
                    retry_after=grant.wait_seconds,
                )
            await asyncio.sleep(wait)

    async def __aenter__(self) -> SharedRateLimiter:
        await self.acquire()
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None

    def __repr__(self) -> str:
        return f"SharedRateLimiter({self.resource!r}, {self.limit:g} per {self.per_seconds:g}s)"


class SharedCircuitBreaker:
    """A closed / open / half-open breaker whose state every worker shares.

    The same rules as :class:`~orchestrate.models.reliability.CircuitBreaker`:
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
            :func:`~orchestrate.models.reliability.failure_code_matches`).
        store: where the state lives; default: the store of the engine running the step.
    """

    def __init__(
        self,
        resource: str,
        *,
        failure_threshold: int = 5,
        window: float = 60.0,
        recovery_timeout: float = 30.0,
        half_open_max_requests: int = 1,
        failure_codes: Sequence[FailureCode] = (429, 500, 502, 503, 504, "timeout", "connection"),
        store: Store | None = None,
    ) -> None:
        if not resource:
            raise DefinitionError("a SharedCircuitBreaker needs a resource name")
        if isinstance(failure_threshold, bool) or not isinstance(failure_threshold, int) or failure_threshold < 1:
            raise DefinitionError(f"failure_threshold must be an int >= 1, got {failure_threshold!r}")
        if window <= 0 or recovery_timeout <= 0:
            raise DefinitionError("window and recovery_timeout must be positive seconds")
        if half_open_max_requests < 1:
            raise DefinitionError(f"half_open_max_requests must be >= 1, got {half_open_max_requests!r}")
        self.resource = resource
        self.failure_threshold = failure_threshold
        self.window = float(window)
        self.recovery_timeout = float(recovery_timeout)
        self.half_open_max_requests = half_open_max_requests
        self.failure_codes = tuple(failure_codes)
        self.store = store

    # state changes ------------------------------------------------------------------------
    async def _change(self, change: Callable[[BreakerRecord, float], T]) -> T:
        """Apply ``change`` to the current state with compare-and-set, retrying on conflict."""
        store = _resolve(self.store, f"SharedCircuitBreaker({self.resource!r})")
        for _ in range(_CAS_ATTEMPTS):
            record, now = await store.load_breaker(self.resource, now=time.time())
            before = copy.deepcopy(record)
            self._tick(record, now)
            result = change(record, now)
            if record == before:
                return result
            if await store.save_breaker(record, expected_version=before.version):
                if record.state != before.state:
                    log.warning("circuit_breaker_" + record.state, breaker=self.resource, previous=before.state)
                return result
            await asyncio.sleep(random.random() * 0.01)
        raise StoreError(f"breaker {self.resource!r}: {_CAS_ATTEMPTS} conflicting updates in a row")

    def _tick(self, record: BreakerRecord, now: float) -> None:
        if record.state == BreakerState.OPEN.value and now - (record.opened_at or 0.0) >= self.recovery_timeout:
            record.state = BreakerState.HALF_OPEN.value
            record.trials = record.successes = 0
        if record.state == BreakerState.CLOSED.value:
            record.failures = [t for t in record.failures if now - t <= self.window]

    @staticmethod
    def _open(record: BreakerRecord, now: float) -> None:
        record.state = BreakerState.OPEN.value
        record.opened_at = now
        record.failures = []
        record.trials = record.successes = 0

    async def allow(self) -> bool:
        """Ask to make a call; ``True`` grants it (then record its outcome)."""

        def change(record: BreakerRecord, _now: float) -> bool:
            if record.state == BreakerState.CLOSED.value:
                return True
            if record.state == BreakerState.HALF_OPEN.value and record.trials < self.half_open_max_requests:
                record.trials += 1
                return True
            return False

        return await self._change(change)

    async def record_success(self) -> None:
        """A granted call succeeded."""

        def change(record: BreakerRecord, _now: float) -> None:
            if record.state == BreakerState.HALF_OPEN.value:
                record.successes += 1
                if record.successes >= self.half_open_max_requests:
                    record.state = BreakerState.CLOSED.value
                    record.failures = []
                    record.trials = record.successes = 0

        await self._change(change)

    async def record_failure(self, error: BaseException) -> bool:
        """A granted call failed; return whether the error counted against the resource."""
        if not failure_code_matches(error, self.failure_codes):
            await self.release()
            return False

        def change(record: BreakerRecord, now: float) -> None:
            if record.state == BreakerState.HALF_OPEN.value:
                self._open(record, now)
            elif record.state == BreakerState.CLOSED.value:
                record.failures = [*record.failures, now][-self.failure_threshold :]
                if len(record.failures) >= self.failure_threshold:
                    self._open(record, now)

        await self._change(change)
        return True

    async def release(self) -> None:
        """A granted call ended without a verdict (cancelled, or an error that does not count)."""

        def change(record: BreakerRecord, _now: float) -> None:
            if record.state == BreakerState.HALF_OPEN.value and record.trials > record.successes:
                record.trials -= 1

        await self._change(change)

    async def state(self) -> BreakerState:
        """The current state (an open breaker past its timeout reads half-open)."""
        return BreakerState(await self._change(lambda record, _now: record.state))

    async def retry_after(self) -> float:
        """Seconds until an open breaker lets a trial call through (0 when not open)."""

        def change(record: BreakerRecord, now: float) -> float:
            if record.state != BreakerState.OPEN.value:
                return 0.0
            return max((record.opened_at or 0.0) + self.recovery_timeout - now, 0.0)

        return await self._change(change)

    async def reset(self) -> None:
        """Close the breaker and forget past failures."""

        def change(record: BreakerRecord, _now: float) -> None:
            record.state = BreakerState.CLOSED.value
            record.failures = []
            record.trials = record.successes = 0

        await self._change(change)

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
