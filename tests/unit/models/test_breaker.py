"""Circuit breaker: closed -> open -> half-open -> closed (or open again)."""

from __future__ import annotations

import pytest

from orchestrate.errors import BadRequestError, CircuitOpenError, DefinitionError, ModelTimeoutError, ServerError
from orchestrate.models import BreakerState, CircuitBreaker, CircuitBreakerModel
from orchestrate.testing.models import Fail, FakeModel, Reply, ServerFailure, TimedOut


def breaker(clock, **options) -> CircuitBreaker:
    defaults = {"failure_threshold": 3, "window": 60, "recovery_timeout": 600, "clock": clock}
    return CircuitBreaker(**{**defaults, **options})


def test_opens_after_threshold_failures_within_the_window(clock) -> None:
    cb = breaker(clock)
    for _ in range(2):
        assert cb.allow()
        cb.record_failure(ServerError("boom", status_code=500))
    assert cb.state is BreakerState.CLOSED
    assert cb.allow()
    cb.record_failure(ModelTimeoutError("slow"))
    assert cb.state is BreakerState.OPEN
    assert not cb.allow()
    assert cb.retry_after() == 600


def test_failures_spread_beyond_the_window_do_not_open(clock) -> None:
    cb = breaker(clock)
    for _ in range(5):
        cb.record_failure(ServerError("boom", status_code=500))
        clock.advance(31)  # at most two failures fall in any 60 s window
    assert cb.state is BreakerState.CLOSED


def test_only_listed_failure_codes_count(clock) -> None:
    cb = breaker(clock, failure_codes=[500, 503, 429, "timeout"])
    for _ in range(5):
        assert cb.record_failure(BadRequestError("bad", status_code=400)) is False
        assert cb.record_failure(ServerError("bad gateway", status_code=502)) is False
    assert cb.state is BreakerState.CLOSED
    for _ in range(3):
        cb.record_failure(ServerError("unavailable", status_code=503))
    assert cb.state is BreakerState.OPEN


def test_half_opens_after_recovery_and_limits_trials(clock) -> None:
    cb = breaker(clock, half_open_max_requests=2)
    for _ in range(3):
        cb.record_failure(ServerError("x", status_code=500))
    clock.advance(599)
    assert cb.state is BreakerState.OPEN and not cb.allow()
    clock.advance(1)
    assert cb.state is BreakerState.HALF_OPEN
    assert cb.allow() and cb.allow()
    assert not cb.allow()  # a third concurrent trial is refused
    cb.record_success()
    assert cb.state is BreakerState.HALF_OPEN
    cb.record_success()
    assert cb.state is BreakerState.CLOSED and cb.allow()


def test_a_failed_trial_reopens_for_a_full_recovery_timeout(clock) -> None:
    cb = breaker(clock)
    for _ in range(3):
        cb.record_failure(ServerError("x", status_code=500))
    clock.advance(600)
    assert cb.allow()
    cb.record_failure(ModelTimeoutError("still slow"))
    assert cb.state is BreakerState.OPEN and cb.retry_after() == 600


def test_consecutive_mode_resets_on_success(clock) -> None:
    cb = breaker(clock, window=None)
    for _ in range(10):
        cb.record_failure(ServerError("x", status_code=500))
        cb.record_failure(ServerError("x", status_code=500))
        cb.record_success()
    assert cb.state is BreakerState.CLOSED


@pytest.mark.parametrize(
    "options",
    [{"failure_threshold": 0}, {"recovery_timeout": 0}, {"half_open_max_requests": 0}, {"failure_codes": ["teapot"]}],
)
def test_invalid_configuration_is_refused(clock, options) -> None:
    with pytest.raises(DefinitionError):
        breaker(clock, **options)


async def test_three_errors_in_a_minute_send_traffic_to_the_cheaper_model_for_ten_minutes(clock) -> None:
    # Seed 001: "if the LLM returns errors three times in one minute, it routes to a
    # cheaper fallback model for 10 minutes".
    primary = FakeModel([ServerFailure(500), TimedOut(latency=5), ServerFailure(503), Reply("big again")], clock=clock)
    cheap = FakeModel(["cheap"], repeat_last=True, model_id="cheap", clock=clock)
    transitions = []
    cb = breaker(clock, on_change=lambda _, old, new: transitions.append((old.value, new.value)))
    model = CircuitBreakerModel(primary, cb, fallback=cheap)

    for _ in range(3):
        with pytest.raises((ServerError, ModelTimeoutError)):
            await model.chat("hi")
        clock.advance(10)
    assert cb.state is BreakerState.OPEN

    served = [(await model.chat("hi")).model for _ in range(4)]
    assert served == ["cheap"] * 4 and len(primary.calls) == 3
    result = await model.chat("hi")
    assert result.meta["breaker_state"] == "open"

    clock.advance(600)
    assert (await model.chat("hi")).text == "big again"  # the half-open trial succeeds
    assert cb.state is BreakerState.CLOSED
    assert transitions == [("closed", "open"), ("open", "half_open"), ("half_open", "closed")]


async def test_open_breaker_without_fallback_fails_fast_with_retry_after(clock) -> None:
    primary = FakeModel([ServerFailure(500)] * 3, clock=clock)
    model = CircuitBreakerModel(primary, breaker(clock))
    for _ in range(3):
        with pytest.raises(ServerError):
            await model.chat("x")
    clock.advance(100)
    with pytest.raises(CircuitOpenError) as refused:
        await model.chat("x")
    assert refused.value.retry_after == 500 and len(primary.calls) == 3


async def test_a_non_counted_error_in_half_open_frees_its_trial_slot(clock) -> None:
    primary = FakeModel(
        [ServerFailure(500)] * 3 + [Fail(BadRequestError("too long", status_code=400)), Reply("ok")], clock=clock
    )
    cb = breaker(clock)
    model = CircuitBreakerModel(primary, cb)
    for _ in range(3):
        with pytest.raises(ServerError):
            await model.chat("x")
    clock.advance(600)
    with pytest.raises(BadRequestError):
        await model.chat("x")
    assert cb.state is BreakerState.HALF_OPEN
    assert (await model.chat("x")).text == "ok" and cb.state is BreakerState.CLOSED


def test_durations_are_taken_as_seed_002_writes_them() -> None:
    breaker = CircuitBreaker(failure_threshold=3, recovery_timeout="30s", window="1m")
    assert (breaker.recovery_timeout, breaker.window) == (30.0, 60.0)
    with pytest.raises(DefinitionError, match="recovery_timeout"):
        CircuitBreaker(recovery_timeout="soon")
