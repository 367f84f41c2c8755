"""Reliability wrappers for models: circuit breaker, rate limiter, hedging, failover.

Each is a :class:`~orchestrate.models.base.WrapperModel` (or a model over several models),
so they stack in any order. The seeds' two recipes::

    # "three LLM errors in one minute -> cheaper model for ten minutes"
    breaker = CircuitBreaker(failure_threshold=3, window=60, recovery_timeout=600,
                             failure_codes=[500, 503, 429, "timeout"])
    model = CircuitBreakerModel(gpt4, breaker, fallback=gpt4_mini)

    # "a limit per endpoint; queue when the limit is hit; never blindly retry a 429"
    model = RateLimitedModel(gpt4, RateLimiter(requests_per_second=5, tokens_per_minute=90_000))

The state here lives in the process. Durability (retries that survive a restart, a
breaker shared by many workers) is the engine's business: it wraps these models in steps.
All timing goes through a :class:`~orchestrate.models.base.Clock`, so tests drive them
with a virtual clock instead of sleeping.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any

from orchestrate.errors import (
    CircuitOpenError,
    DefinitionError,
    InvalidOutputError,
    ModelError,
    ModelTimeoutError,
    RateLimitedError,
    ServerError,
)
from orchestrate.models.base import (
    Clock,
    EmbeddingResult,
    Model,
    ModelRequest,
    ModelResult,
    MonotonicClock,
    WrapperModel,
    _ModelAPI,
    estimate_tokens,
)
from orchestrate.observe.logging import get_logger
from orchestrate.policies import (
    DEFAULT_FAILURE_CODES,
    BreakerRules,
    BreakerState,
    Circuit,
    FailureCode,
    RateWindow,
    Seconds,
    failure_code_matches,
    to_seconds,
)

__all__ = [
    "BreakerState",
    "CircuitBreaker",
    "CircuitBreakerModel",
    "FailoverModel",
    "FailureCode",
    "HedgedModel",
    "RateLimitedModel",
    "RateLimiter",
    "failure_code_matches",
]

log = get_logger()


class CircuitBreaker:
    """A closed / open / half-open breaker for one resource (e.g. a model endpoint), in this process.

    Closed, it counts failures whose code is in ``failure_codes``; ``failure_threshold``
    of them within ``window`` seconds open it. Open, it refuses calls for
    ``recovery_timeout`` seconds, then half-opens: up to ``half_open_max_requests`` trial
    calls run; when that many succeed it closes, and any counted failure re-opens it.
    The transitions are :class:`~orchestrate.policies.BreakerRules`, the same as
    :class:`~orchestrate.policies_shared.SharedCircuitBreaker`'s; this one keeps the state
    in memory.

    Args:
        failure_threshold: failures within ``window`` that open the breaker.
        window: seconds over which failures are counted (``None``: count consecutive
            failures; a success resets the count).
        recovery_timeout: seconds the breaker stays open before trying again.
        half_open_max_requests: trial calls allowed (and successes needed) while half-open.
        failure_codes: which errors count, see :func:`failure_code_matches`. Others (a
            400, a content filter) say nothing about the endpoint's health.
        clock: time source (monotonic seconds).
        name: label used in logs and errors.
        on_change: called with ``(breaker, old_state, new_state)`` on every transition.
    """

    def __init__(
        self,
        *,
        failure_threshold: int = 5,
        window: Seconds | None = 60.0,
        recovery_timeout: Seconds = 30.0,
        half_open_max_requests: int = 1,
        failure_codes: Sequence[FailureCode] = DEFAULT_FAILURE_CODES,
        clock: Clock | None = None,
        name: str = "breaker",
        on_change: Callable[[CircuitBreaker, BreakerState, BreakerState], None] | None = None,
    ) -> None:
        # Durations as numbers of seconds, timedeltas or text ("30s", as seed 002 writes it).
        window = to_seconds(window, what=f"breaker {name!r}: window")
        recovery = to_seconds(recovery_timeout, what=f"breaker {name!r}: recovery_timeout")
        if recovery is None:
            raise DefinitionError(f"breaker {name!r}: recovery_timeout must be a duration, got None")
        self.rules = BreakerRules(
            failure_threshold=failure_threshold,
            window=window,
            recovery_timeout=float(recovery),
            half_open_max_requests=half_open_max_requests,
            failure_codes=tuple(failure_codes),
        )
        """The transitions this breaker applies (the same as a shared breaker's)."""
        self.clock: Clock = clock or MonotonicClock()
        self.name = name
        self.on_change = on_change
        self._circuit = Circuit()

    @property
    def failure_threshold(self) -> int:
        """Failures within ``window`` that open the breaker."""
        return self.rules.failure_threshold

    @property
    def window(self) -> float | None:
        """Seconds over which failures are counted (``None``: consecutive failures)."""
        return self.rules.window

    @property
    def recovery_timeout(self) -> float:
        """Seconds the breaker stays open."""
        return self.rules.recovery_timeout

    @property
    def half_open_max_requests(self) -> int:
        """Trial calls allowed (and successes needed) while half-open."""
        return self.rules.half_open_max_requests

    @property
    def failure_codes(self) -> tuple[FailureCode, ...]:
        """Which errors count."""
        return self.rules.failure_codes

    @property
    def state(self) -> BreakerState:
        """The current state (an open breaker past its timeout reads half-open)."""
        self._tick()
        return self._circuit.state

    def retry_after(self) -> float:
        """Seconds until an open breaker lets a trial call through (0 when not open)."""
        return self.rules.retry_after(self._circuit, self._tick())

    def allow(self) -> bool:
        """Ask to make a call; ``True`` grants it (the caller must then record its outcome)."""
        self._tick()
        granted, circuit = self.rules.allow(self._circuit)
        self._set(circuit)
        return granted

    def record_success(self) -> None:
        """A granted call succeeded."""
        self._tick()
        self._set(self.rules.succeeded(self._circuit))

    def record_failure(self, error: BaseException) -> bool:
        """A granted call failed; return whether the error counted against the endpoint."""
        if not self.rules.counts(error):
            self.release()
            return False
        now = self._tick()
        self._set(self.rules.failed(self._circuit, now))
        return True

    def release(self) -> None:
        """A granted call ended without a verdict (cancelled, or an error that does not count)."""
        self._tick()
        self._set(self.rules.released(self._circuit))

    def reset(self) -> None:
        """Close the breaker and forget past failures."""
        self._set(Circuit())

    # internals ------------------------------------------------------------------------
    def _tick(self) -> float:
        """Let time pass (see :meth:`BreakerRules.tick`); return the time."""
        now = self.clock.now()
        self._set(self.rules.tick(self._circuit, now))
        return now

    def _set(self, circuit: Circuit) -> None:
        old = self._circuit.state
        self._circuit = circuit
        if circuit.state is not old:
            log.warning("circuit_breaker_" + circuit.state.value, breaker=self.name, previous=old.value)
            if self.on_change is not None:
                self.on_change(self, old, circuit.state)

    def __repr__(self) -> str:
        return f"CircuitBreaker({self.name!r}, state={self.state.value})"


class CircuitBreakerModel(WrapperModel):
    """Calls ``wrapped`` while its breaker allows; otherwise the fallback, or fails fast.

    Args:
        wrapped: the guarded model.
        breaker: its breaker (one per endpoint; share it between wrappers of one endpoint).
        fallback: the model used while the breaker is open (a cheaper or local one). With
            none, an open breaker raises :class:`~orchestrate.errors.CircuitOpenError`
            whose ``retry_after`` is the time until it half-opens.
    """

    def __init__(self, wrapped: Model, breaker: CircuitBreaker, *, fallback: Model | None = None) -> None:
        super().__init__(wrapped)
        self.breaker = breaker
        self.fallback = fallback

    async def request(self, request: ModelRequest) -> ModelResult:
        """Answer through the guarded model, or the fallback while the breaker is open."""
        if not self.breaker.allow():
            if self.fallback is not None:
                result = await self.fallback.request(request)
                return result.with_meta(breaker=self.breaker.name, breaker_state=self.breaker.state.value)
            raise CircuitOpenError(
                f"circuit {self.breaker.name!r} is open for {self.wrapped.model_id!r}",
                model=self.wrapped.model_id,
                retry_after=self.breaker.retry_after(),
            )
        try:
            result = await self.wrapped.request(request)
        except Exception as exc:
            self.breaker.record_failure(exc)
            raise
        except BaseException:
            self.breaker.release()
            raise
        self.breaker.record_success()
        return result


_EPSILON = 1e-6


class _Limit:
    """One dimension of a :class:`RateLimiter` (requests or tokens): its window and grants."""

    def __init__(self, window: RateWindow) -> None:
        self.window = window
        self.grants: tuple[tuple[float, float], ...] = ()

    def wait_for(self, amount: float, now: float) -> float:
        grant, self.grants = self.window.take(self.grants, cost=amount, now=now)
        if grant.granted:  # asked only: the grant is taken by ``take_now`` once every dimension agrees
            self.grants = self.grants[:-1]
        return grant.wait_seconds

    def take_now(self, amount: float, now: float) -> None:
        self.grants = (*self.grants, (now, amount))

    def settle(self, estimated: float, actual: float, now: float) -> None:
        # Replace the newest grant of the estimate by the real usage; a grant gone from the
        # window already can only still count what it took beyond the estimate.
        for i in range(len(self.grants) - 1, -1, -1):
            at, cost = self.grants[i]
            if cost == estimated and at > now - self.window.per_seconds:
                self.grants = (*self.grants[:i], (at, max(actual, 0.0)), *self.grants[i + 1 :])
                return
        if actual > estimated:
            self.grants = (*self.grants, (now, actual - estimated))


class RateLimiter:
    """Limits on requests and on model tokens for one endpoint; callers queue in order.

    Each limit is a sliding window (:class:`~orchestrate.policies.RateWindow`, the rule
    :class:`~orchestrate.policies_shared.SharedRateLimiter` applies across workers): at
    most ``burst`` requests in any ``burst / rate`` seconds, and at most ``token_burst``
    tokens in any ``token_burst / token rate`` seconds. The sustained rate is the one
    given; no window of that length ever sees more (a token bucket of the same rate lets
    up to twice the burst through one). :meth:`acquire` waits (on the clock) until both
    windows have room, then takes from them: a burst beyond the limit queues instead of
    failing. After a call, :meth:`settle` replaces the token estimate by the real usage.
    :meth:`pause` holds every caller back, e.g. for a 429's ``Retry-After``.

    Args:
        requests_per_second: sustained request rate (or give ``requests_per_minute``).
        requests_per_minute: the same, per minute.
        burst: requests allowed at once (default: one second's worth, at least 1).
        tokens_per_minute: sustained model-token rate (input plus output).
        token_burst: tokens available at once (default: one minute's worth).
        clock: time source.
        name: label used in logs.
    """

    def __init__(
        self,
        *,
        requests_per_second: float | None = None,
        requests_per_minute: float | None = None,
        burst: int | None = None,
        tokens_per_minute: float | None = None,
        token_burst: int | None = None,
        clock: Clock | None = None,
        name: str = "limiter",
    ) -> None:
        if requests_per_second is not None and requests_per_minute is not None:
            raise DefinitionError("give requests_per_second or requests_per_minute, not both")
        rps = requests_per_second if requests_per_minute is None else requests_per_minute / 60.0
        if rps is None and tokens_per_minute is None:
            raise DefinitionError("a RateLimiter needs a request rate, a token rate, or both")
        if rps is not None and rps <= 0:
            raise DefinitionError(f"the request rate must be positive, got {rps!r}")
        if tokens_per_minute is not None and tokens_per_minute <= 0:
            raise DefinitionError(f"tokens_per_minute must be positive, got {tokens_per_minute!r}")
        if burst is not None and burst < 1:
            raise DefinitionError(f"burst must be >= 1, got {burst!r}")
        self.clock: Clock = clock or MonotonicClock()
        self.name = name
        self._requests: _Limit | None = None
        if rps is not None:
            size = float(burst or max(1.0, rps))
            # The window's length from the rate as given, so that it is exact for round numbers.
            per = size * 60.0 / requests_per_minute if requests_per_minute is not None else size / rps
            self._requests = _Limit(RateWindow(size, per))
        self._tokens: _Limit | None = None
        if tokens_per_minute is not None:
            size = float(token_burst or tokens_per_minute)
            self._tokens = _Limit(RateWindow(size, size * 60.0 / tokens_per_minute))
        self._paused_until = self.clock.now()
        self._lock: asyncio.Lock | None = None
        self._lock_loop: asyncio.AbstractEventLoop | None = None
        self.waited = 0.0

    def _fifo(self) -> asyncio.Lock:
        loop = asyncio.get_running_loop()
        if self._lock is None or self._lock_loop is not loop:
            self._lock, self._lock_loop = asyncio.Lock(), loop
        return self._lock

    async def acquire(self, tokens: int = 0) -> float:
        """Wait for a request slot and ``tokens`` model tokens; return the seconds waited."""
        started = self.clock.now()
        # asyncio.Lock wakes waiters in arrival order: the queue is first come, first served.
        async with self._fifo():
            while True:
                now = self.clock.now()
                wait = self._paused_until - now
                for limit, amount in ((self._requests, 1), (self._tokens, tokens)):
                    if limit is not None and amount:
                        wait = max(wait, limit.wait_for(amount, now))
                # Below a microsecond a wait is float noise (clock values near 1e9 cannot
                # even represent it) and sleeping on it would spin.
                if wait <= _EPSILON:
                    if self._requests is not None:
                        self._requests.take_now(1, now)
                    if self._tokens is not None and tokens:
                        self._tokens.take_now(tokens, now)
                    break
                await self.clock.sleep(wait)
        waited = self.clock.now() - started
        self.waited += waited
        return waited

    def settle(self, estimated: int, actual: int) -> None:
        """Correct the token window once a call's real usage is known."""
        if self._tokens is not None:
            self._tokens.settle(estimated, actual, self.clock.now())

    def pause(self, seconds: float) -> None:
        """Let no call start for ``seconds`` (a 429 said so)."""
        until = self.clock.now() + max(seconds, 0.0)
        if until > self._paused_until:
            self._paused_until = until
            log.warning("rate_limiter_paused", limiter=self.name, seconds=round(seconds, 3))


class RateLimitedModel(WrapperModel):
    """Calls ``wrapped`` within a :class:`RateLimiter`; a 429 pauses the limiter.

    The token estimate of a request is its text's estimated tokens plus ``max_tokens``
    (or ``default_output_tokens``); the bucket is corrected with the real usage after the
    call. A :class:`~orchestrate.errors.RateLimitedError` is re-raised after pausing the
    limiter for its ``retry_after`` (or ``default_pause``), so that the engine's retry
    waits and the other callers queue instead of hammering the endpoint.
    """

    def __init__(
        self,
        wrapped: Model,
        limiter: RateLimiter,
        *,
        default_output_tokens: int = 256,
        default_pause: float = 1.0,
    ) -> None:
        super().__init__(wrapped)
        self.limiter = limiter
        self.default_output_tokens = default_output_tokens
        self.default_pause = default_pause

    async def request(self, request: ModelRequest) -> ModelResult:
        """Wait for the limiter, then call."""
        estimate = estimate_tokens(request.text()) + (request.settings.max_tokens or self.default_output_tokens)
        waited = await self.limiter.acquire(estimate)
        try:
            result = await self.wrapped.request(request)
        except RateLimitedError as exc:
            self.limiter.settle(estimate, 0)
            self.limiter.pause(exc.retry_after if exc.retry_after is not None else self.default_pause)
            raise
        except ModelError:
            self.limiter.settle(estimate, 0)
            raise
        self.limiter.settle(estimate, result.usage.total_tokens)
        return result.with_meta(rate_limit_wait_s=round(waited, 6)) if waited > 0 else result


class HedgedModel(WrapperModel):
    """Sends a backup request when the first is slow; the first answer wins.

    The primary call starts at once; if it has not answered after ``delay`` seconds, the
    same request goes to ``backup`` (the same model by default). The first success is
    returned and the other call is cancelled. An error before the hedge is raised as is
    (use :class:`FailoverModel` for errors); after it, the other call still may win.
    Hedging trades cost for tail latency: a hedged call may be paid twice.

    Args:
        wrapped: the primary model.
        delay: seconds before the backup starts (e.g. the primary's p95 latency).
        backup: the model for the backup call (default: ``wrapped``).
        clock: time source for the delay.
    """

    def __init__(
        self, wrapped: Model, *, delay: float, backup: Model | None = None, clock: Clock | None = None
    ) -> None:
        super().__init__(wrapped)
        if delay < 0:
            raise DefinitionError(f"hedge delay must be >= 0, got {delay!r}")
        self.delay = delay
        self.backup = backup or wrapped
        self.clock: Clock = clock or MonotonicClock()
        self.hedges = 0

    async def request(self, request: ModelRequest) -> ModelResult:
        """Answer with the first of the primary and (if slow) the backup call to succeed."""
        primary = asyncio.ensure_future(self.wrapped.request(request))
        timer = asyncio.ensure_future(self.clock.sleep(self.delay))
        names: dict[asyncio.Future[Any], str] = {primary: "primary"}
        pending: set[asyncio.Future[Any]] = {primary}
        try:
            await asyncio.wait({primary, timer}, return_when=asyncio.FIRST_COMPLETED)
            if primary.done():
                return primary.result().with_meta(hedged=False)
            self.hedges += 1
            backup = asyncio.ensure_future(self.backup.request(request))
            names[backup] = "backup"
            pending.add(backup)
            last_error: BaseException | None = None
            while pending:
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    if task.exception() is None:
                        result: ModelResult = task.result()
                        return result.with_meta(hedged=True, hedge_winner=names[task])
                    last_error = task.exception()
            assert last_error is not None
            raise last_error
        finally:
            timer.cancel()
            for task in (primary, *names):
                if not task.done():
                    task.cancel()
            await asyncio.gather(timer, *names, return_exceptions=True)


_TRANSIENT: tuple[type[BaseException], ...] = (
    RateLimitedError,
    ModelTimeoutError,
    ServerError,
    CircuitOpenError,
    InvalidOutputError,
)


class FailoverModel(_ModelAPI):
    """Tries each model in order (primary → secondary → local) until one answers.

    Args:
        models: the chain, first preferred.
        failover_on: errors that move on to the next model; others are raised at once
            (by default a bad request or a content filter is raised: another model would
            most likely refuse it too, and it costs a call to find out).

    When every model fails, a :class:`~orchestrate.errors.ModelError` naming each
    failure is raised (from the last error), with the smallest ``retry_after`` any of
    them gave. The result's ``meta["failover"]`` lists the models that failed first.
    """

    def __init__(self, models: Sequence[Model], *, failover_on: tuple[type[BaseException], ...] = _TRANSIENT) -> None:
        if not models:
            raise DefinitionError("FailoverModel needs at least one model")
        self.models = tuple(models)
        self.failover_on = failover_on

    @property
    def model_id(self) -> str:
        """The primary model's id."""
        return self.models[0].model_id

    async def request(self, request: ModelRequest) -> ModelResult:
        """Answer with the first model that succeeds."""
        failures: list[dict[str, str]] = []
        errors: list[BaseException] = []
        for model in self.models:
            try:
                result = await model.request(request)
            except self.failover_on as exc:
                failures.append({"model": model.model_id, "error": f"{type(exc).__qualname__}: {exc}"})
                errors.append(exc)
                log.warning("model_failover", model=model.model_id, error_class=type(exc).__qualname__)
                continue
            return result.with_meta(failover=failures) if failures else result
        raise self._exhausted(failures, errors)

    async def embed(self, texts: Sequence[str]) -> EmbeddingResult:
        """Embed with the first model that succeeds."""
        failures: list[dict[str, str]] = []
        errors: list[BaseException] = []
        for model in self.models:
            try:
                return await model.embed(texts)
            except self.failover_on as exc:
                failures.append({"model": model.model_id, "error": f"{type(exc).__qualname__}: {exc}"})
                errors.append(exc)
        raise self._exhausted(failures, errors)

    def _exhausted(self, failures: list[dict[str, str]], errors: list[BaseException]) -> ModelError:
        waits: list[float] = []
        for e in errors:
            wait = getattr(e, "retry_after", None)
            if isinstance(wait, int | float):
                waits.append(float(wait))
        summary = "; ".join(f"{f['model']}: {f['error']}" for f in failures)
        error = ModelError(
            f"all {len(self.models)} models failed: {summary}",
            model=self.model_id,
            retry_after=min(waits) if waits else None,
        )
        error.__cause__ = errors[-1]
        return error

    def __repr__(self) -> str:
        return f"FailoverModel({[m.model_id for m in self.models]!r})"
