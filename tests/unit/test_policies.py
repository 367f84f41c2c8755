"""Policies validate themselves and return decisions without I/O."""

from __future__ import annotations

import random
from datetime import timedelta
from typing import Any

import pytest

from orchestrate import (
    Cache,
    DefinitionError,
    ExponentialBackoff,
    Fallback,
    FixedRetry,
    NonRetryableError,
    Retry,
    StepPolicy,
    Timeout,
)
from orchestrate.errors import ServerError
from orchestrate.models.reliability import CircuitBreaker
from orchestrate.policies import BreakerRules, BreakerState, Circuit, RateGrant, RateWindow, decide_rate
from orchestrate.policies_shared import SharedCircuitBreaker
from orchestrate.store import InMemoryStore
from orchestrate.testing.clock import FakeClock


class RateLimited(Exception):
    def __init__(self, retry_after: float) -> None:
        super().__init__("429")
        self.retry_after = retry_after


def test_exponential_delays_without_jitter():
    policy = ExponentialBackoff(max_attempts=5, initial_delay=1.0, backoff=2.0, max_delay=5.0, jitter=0.0)
    err = ValueError("x")
    assert [policy.next_delay(a, err) for a in range(1, 6)] == [1.0, 2.0, 4.0, 5.0, None]


def test_jitter_stays_within_its_spread_and_varies():
    policy = Retry(max_attempts=10, initial_delay=10.0, backoff=1.0, jitter=0.2)
    rng = random.Random(7)
    delays = [policy.next_delay(1, ValueError(), rng=rng) for _ in range(200)]
    assert all(d is not None and 8.0 <= d <= 12.0 for d in delays)
    assert len({round(d or 0, 6) for d in delays}) > 100


def test_fixed_retry_counts_attempts():
    policy = FixedRetry(attempts=2, delay=0.5)
    assert policy.next_delay(1, ValueError()) == 0.5
    assert policy.next_delay(2, ValueError()) is None


def test_filters_and_non_retryable():
    policy = Retry(max_attempts=3, jitter=0.0, retry_on=(ConnectionError,), give_up_on=(ConnectionRefusedError,))
    assert policy.next_delay(1, ConnectionResetError()) == 1.0
    assert policy.next_delay(1, ConnectionRefusedError()) is None
    assert policy.next_delay(1, ValueError()) is None
    assert Retry(max_attempts=3).next_delay(1, NonRetryableError("no")) is None


def test_default_cap_follows_a_long_initial_delay():
    assert Retry(max_attempts=2, initial_delay=600, jitter=0).next_delay(1, ValueError()) == 600


def test_retry_after_is_honoured():
    policy = Retry(max_attempts=3, initial_delay=1.0, jitter=0.0)
    assert policy.next_delay(1, RateLimited(retry_after=30.0)) == 30.0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_attempts": 0}, "max_attempts must be >= 1"),
        ({"max_attempts": 1.5}, "max_attempts must be an int"),
        ({"backoff": 0.5}, "backoff must be >= 1"),
        ({"jitter": 2}, "jitter must be within"),
        ({"initial_delay": -1}, "initial_delay must be >= 0"),
        ({"initial_delay": 10, "max_delay": 5}, "max_delay \\(5\\) is below initial_delay \\(10\\)"),
        ({"retry_on": (int,)}, "retry_on must be a tuple of exception types"),
    ],
)
def test_retry_validation(kwargs, message):
    with pytest.raises(DefinitionError, match=message):
        Retry(**kwargs)


def test_policies_are_frozen():
    policy = Retry()
    with pytest.raises(AttributeError):
        policy.max_attempts = 9  # type: ignore[misc]


def test_timeout_accepts_timedelta_and_rejects_nonsense():
    assert Timeout(attempt=timedelta(seconds=3), total=10).attempt == 3.0
    with pytest.raises(DefinitionError, match="Timeout.total must be positive"):
        Timeout(total=-1)
    with pytest.raises(DefinitionError, match="seconds or a timedelta"):
        Timeout(attempt="5")  # type: ignore[arg-type]


def test_fallback_constructors():
    assert Fallback.cached(max_age=60).max_age == 60.0
    assert Fallback.value({"x": 1}, flag="human_review").flag == "human_review"
    assert Fallback.skip().kind == "skip"
    assert Fallback.call(print).label == "call:print"
    assert Fallback("human_review_queue", {"doc": 1}).label == "route:human_review_queue"
    with pytest.raises(DefinitionError, match="needs a step or queue name"):
        Fallback()
    with pytest.raises(DefinitionError, match="needs a callable"):
        Fallback.call(3)  # type: ignore[arg-type]


def test_step_policy_normalises_shorthands():
    policy = StepPolicy.build(retry=2, timeout=30, fallback=Fallback.skip(), cache=60)
    assert policy.retry.max_attempts == 3
    assert policy.timeout.attempt == 30.0
    assert policy.fallback == (Fallback.skip(),)
    assert policy.cache == Cache(60)
    assert StepPolicy.build().retry.max_attempts == 1
    with pytest.raises(DefinitionError, match="max_concurrency must be >= 1"):
        StepPolicy.build(max_concurrency=0)


# circuit breakers: the rules, pure ---------------------------------------------------------

RULES = BreakerRules(failure_threshold=3, window=60.0, recovery_timeout=600.0, half_open_max_requests=2)
T = 1_000.0


def _fail(circuit: Circuit, *times: float, rules: BreakerRules = RULES) -> Circuit:
    for at in times:
        circuit = rules.failed(rules.tick(circuit, at), at)
    return circuit


def test_threshold_failures_within_the_window_open_the_breaker():
    circuit = _fail(Circuit(), T, T + 10)
    assert circuit.state is BreakerState.CLOSED and circuit.failures == (T, T + 10)
    circuit = _fail(circuit, T + 20)
    assert circuit == Circuit(BreakerState.OPEN, opened_at=T + 20)
    assert RULES.allow(circuit) == (False, circuit)
    assert RULES.retry_after(circuit, T + 20) == 600.0


def test_failures_spread_beyond_the_window_leave_it():
    circuit = _fail(Circuit(), T, T + 31, T + 62, T + 93)
    assert circuit.state is BreakerState.CLOSED
    assert circuit.failures == (T + 62, T + 93)  # at most two in any 60 s
    assert RULES.tick(circuit, T + 200).failures == ()


def test_recovery_half_opens_trials_are_limited_and_enough_successes_close():
    opened = _fail(Circuit(), T, T, T)
    assert RULES.tick(opened, T + 599.5) is opened
    half = RULES.tick(opened, T + 600)
    assert half.state is BreakerState.HALF_OPEN and RULES.retry_after(half, T + 600) == 0.0
    granted, half = RULES.allow(half)
    assert granted
    granted, half = RULES.allow(half)
    assert granted
    assert RULES.allow(half) == (False, half)  # a third trial at once is refused
    half = RULES.released(half)  # one trial ended without a verdict: its place is free again
    assert RULES.allow(half)[0]
    half = RULES.succeeded(half)
    assert half.state is BreakerState.HALF_OPEN
    assert RULES.succeeded(half) == Circuit()


def test_a_failed_trial_opens_again():
    half = RULES.tick(_fail(Circuit(), T, T, T), T + 600)
    _, half = RULES.allow(half)
    assert RULES.failed(half, T + 601) == Circuit(BreakerState.OPEN, opened_at=T + 601)


def test_without_a_window_failures_count_until_a_success():
    rules = BreakerRules(failure_threshold=2, window=None)
    circuit = _fail(Circuit(), T, rules=rules)
    assert rules.succeeded(circuit) == Circuit()
    assert _fail(circuit, T + 10**6, rules=rules).state is BreakerState.OPEN


def test_only_listed_failure_codes_count():
    rules = BreakerRules(failure_codes=(503, "timeout", KeyError))
    assert rules.counts(ServerError("unavailable", status_code=503))
    assert rules.counts(TimeoutError())
    assert rules.counts(KeyError("k"))
    assert not rules.counts(ServerError("bad gateway", status_code=502))
    assert not rules.counts(ValueError())


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"failure_threshold": 0}, "failure_threshold must be an int >= 1"),
        ({"failure_threshold": True}, "failure_threshold must be an int >= 1"),
        ({"half_open_max_requests": 0}, "half_open_max_requests must be >= 1"),
        ({"window": -1.0}, "window must be seconds >= 0"),
        ({"recovery_timeout": -1.0}, "recovery_timeout must be seconds >= 0"),
        ({"failure_codes": ("teapot",)}, "failure code 'teapot' is not an HTTP status"),
    ],
)
def test_breaker_rules_validation(kwargs, message):
    with pytest.raises(DefinitionError, match=message):
        BreakerRules(**kwargs)


async def test_the_in_process_and_the_shared_breaker_apply_the_same_rules():
    clock = FakeClock()
    options: dict[str, Any] = {"failure_threshold": 3, "window": 60, "recovery_timeout": 600}
    options["half_open_max_requests"] = 2
    local = CircuitBreaker(clock=clock, **options)
    shared = SharedCircuitBreaker("endpoint", store=InMemoryStore(), clock=clock, **options)
    error = ServerError("unavailable", status_code=503)
    script = [
        ("failure", 0), ("failure", 31), ("failure", 31), ("failure", 1), ("allow", 0),
        ("allow", 599), ("allow", 1), ("allow", 0), ("allow", 0), ("success", 0), ("release", 0),
        ("allow", 0), ("failure", 0), ("allow", 600), ("success", 0), ("allow", 0), ("success", 0),
        ("failure", 0), ("reset", 0), ("failure", 0),
    ]  # fmt: skip
    for action, wait in script:
        clock.advance(wait)
        if action == "allow":
            assert local.allow() == await shared.allow(), (action, clock.now())
        elif action == "failure":
            assert local.record_failure(error) == await shared.record_failure(error)
        elif action == "success":
            local.record_success()
            await shared.record_success()
        elif action == "release":
            local.release()
            await shared.release()
        else:
            local.reset()
            await shared.reset()
        assert local.state is await shared.state(), (action, clock.now())
        assert local.retry_after() == await shared.retry_after()


# rate windows: the arithmetic, pure --------------------------------------------------------


def test_a_rate_window_takes_up_to_its_limit_and_says_how_long_to_wait():
    window = RateWindow(3, 10)
    grants: tuple[tuple[float, float], ...] = ()
    answers = []
    for at in (T, T + 1, T + 2, T + 3):
        grant, grants = window.take(grants, cost=1, now=at)
        answers.append(grant)
    assert answers[:3] == [RateGrant(True, T), RateGrant(True, T + 1), RateGrant(True, T + 2)]
    assert answers[3] == RateGrant(False, T + 3, 7.0)  # the first grant leaves at T + 10
    assert grants == ((T, 1), (T + 1, 1), (T + 2, 1))
    grant, grants = window.take(grants, cost=2, now=T + 10.5)
    assert grant == RateGrant(False, T + 10.5, 0.5)  # the grant of T left; the one of T + 1 leaves at T + 11
    grant, grants = window.take(grants, cost=2, now=T + 12)
    assert grant.granted and grants == ((T + 12, 2),)


def test_a_call_larger_than_the_limit_waits_for_an_empty_window():
    window = RateWindow(3, 10)
    grant, grants = window.take(((T, 1),), cost=5, now=T + 1)
    assert grant == RateGrant(False, T + 1, 9.0)
    grant, _ = window.take(grants, cost=5, now=T + 10)
    assert grant.granted


def test_rate_window_validation():
    with pytest.raises(DefinitionError, match="must be positive"):
        RateWindow(0, 10)
    with pytest.raises(DefinitionError, match="must be positive"):
        RateWindow(5, -1)


def test_decide_rate_is_a_sliding_window() -> None:
    window = [(T, 1.0), (T + 2, 1.0), (T + 4, 1.0)]
    assert decide_rate(window[:2], limit=3, per_seconds=10, cost=1, now=T + 5) == RateGrant(True, T + 5)
    # A caller whose clock lags is stamped at the latest grant, never before it.
    assert decide_rate(window, limit=4, per_seconds=10, cost=1, now=T + 3) == RateGrant(True, T + 4)
    assert decide_rate(window, limit=3, per_seconds=10, cost=1, now=T + 5) == RateGrant(False, T + 5, 5.0)
    assert decide_rate(window, limit=3, per_seconds=10, cost=2, now=T + 5) == RateGrant(False, T + 5, 7.0)
    assert decide_rate([], limit=3, per_seconds=10, cost=50, now=T) == RateGrant(True, T)  # waits, not forever
    assert decide_rate(window, limit=3, per_seconds=10, cost=50, now=T + 5).granted is False
