"""Policies validate themselves and return decisions without I/O."""

from __future__ import annotations

import random
from datetime import timedelta

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
