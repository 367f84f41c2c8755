"""Policies refuse, when built, every number and type that would misbehave later."""

from __future__ import annotations

import math
from datetime import timedelta

import pytest

from orchestrate import (
    Cache,
    DefinitionError,
    ExponentialBackoff,
    Fallback,
    FixedRetry,
    Retry,
    Step,
    StepPolicy,
    Timeout,
)

NAN, INF = float("nan"), float("inf")


def one(x):
    return x


def message(exc: pytest.ExceptionInfo[DefinitionError]) -> str:
    text = str(exc.value)
    assert "\n" not in text  # one line, for logs and the CLI
    return text


# non-finite and out-of-range durations ---------------------------------------------------


@pytest.mark.parametrize("bad", [NAN, INF, -INF, 10**400])
@pytest.mark.parametrize(
    ("build", "place"),
    [
        (lambda v: Step("fetch", one, timeout=v), "step 'fetch': timeout"),
        (lambda v: Step("fetch", one, min_budget=v), "step 'fetch': min_budget"),
        (lambda v: Step("fetch", one, cache=v), "step 'fetch': cache"),
        (lambda v: Timeout(attempt=v), "Timeout.attempt"),
        (lambda v: Timeout(attempt=1, total=v), "Timeout.total"),
        (lambda v: Cache(ttl=v), "Cache.ttl"),
        (lambda v: Fallback.cached(max_age=v), "Fallback.max_age"),
        (lambda v: StepPolicy.build(timeout=v, where="step 'x'"), "step 'x': timeout"),
    ],
)
def test_durations_must_be_finite(build, place, bad):
    with pytest.raises(DefinitionError) as exc:
        build(bad)
    assert message(exc).startswith(f"{place} must be a finite number of seconds > 0, got ")


def test_the_message_names_the_step_and_the_value():
    with pytest.raises(DefinitionError) as exc:
        Step("fetch", one, timeout=NAN)
    assert message(exc) == "step 'fetch': timeout must be a finite number of seconds > 0, got nan"


@pytest.mark.parametrize("bad", [0, -1, timedelta(0), timedelta(seconds=-3)])
def test_durations_must_be_positive(bad):
    with pytest.raises(DefinitionError, match="step 'fetch': timeout must be positive"):
        Step("fetch", one, timeout=bad)


@pytest.mark.parametrize("bad", [True, "5", [5], None])
def test_cache_ttl_must_be_seconds(bad):
    with pytest.raises(DefinitionError, match="Cache.ttl must be seconds or a timedelta"):
        Cache(ttl=bad)


def test_valid_durations_still_build():
    assert Step("a", one, timeout=timedelta(seconds=2), cache=60, min_budget=0.5).policy.timeout.attempt == 2.0
    assert Timeout(attempt=1, total=10**6).total == 1e6


# retry numbers ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"initial_delay": INF}, "Retry.initial_delay must be a finite number of seconds, got inf"),
        ({"initial_delay": NAN}, "Retry.initial_delay must be a finite number of seconds, got nan"),
        ({"initial_delay": -0.5}, "Retry.initial_delay must be >= 0, got -0.5"),
        ({"initial_delay": "1"}, "Retry.initial_delay must be a number of seconds, got '1'"),
        ({"initial_delay": True}, "Retry.initial_delay must be a number of seconds, got True"),
        ({"max_delay": NAN}, "Retry.max_delay must be a finite number of seconds, got nan"),
        ({"max_delay": INF}, "Retry.max_delay must be a finite number of seconds, got inf"),
        ({"max_delay": -1}, "Retry.max_delay must be >= 0, got -1"),
        ({"backoff": INF}, "Retry.backoff must be a finite number, got inf"),
        ({"backoff": NAN}, "Retry.backoff must be a finite number, got nan"),
        ({"backoff": 0}, "Retry.backoff must be >= 1, got 0"),
        ({"backoff": "2"}, "Retry.backoff must be a number, got '2'"),
        ({"jitter": NAN}, "Retry.jitter must be a finite number, got nan"),
        ({"jitter": -0.1}, "Retry.jitter must be within [0, 1], got -0.1"),
        ({"jitter": 1.5}, "Retry.jitter must be within [0, 1], got 1.5"),
        ({"jitter": "0.2"}, "Retry.jitter must be a number, got '0.2'"),
        ({"max_attempts": True}, "Retry.max_attempts must be an int (or None for no limit), got True"),
        ({"max_attempts": -3}, "Retry.max_attempts must be >= 1 (or None for no limit), got -3"),
        ({"max_attempts": 2.0}, "Retry.max_attempts must be an int (or None for no limit), got 2.0"),
    ],
)
def test_retry_numbers_are_checked(kwargs, expected):
    with pytest.raises(DefinitionError) as exc:
        Retry(**kwargs)
    assert message(exc) == expected


def test_retry_error_types_must_be_a_tuple():
    with pytest.raises(DefinitionError, match=r"retry_on must be a tuple of exception types, e.g. retry_on=\("):
        Retry(retry_on=ValueError)  # type: ignore[arg-type]
    with pytest.raises(DefinitionError, match="give_up_on must be a tuple of exception types"):
        Retry(give_up_on=[KeyError])  # type: ignore[arg-type]


def test_shorthand_constructors_are_checked_too():
    with pytest.raises(DefinitionError, match="Retry.initial_delay must be a finite number"):
        ExponentialBackoff(initial_delay=INF)
    with pytest.raises(DefinitionError, match="Retry.initial_delay must be a finite number"):
        FixedRetry(delay=NAN)


def test_a_retry_after_that_is_not_a_finite_number_is_ignored():
    class Throttled(Exception):
        def __init__(self, retry_after: object) -> None:
            super().__init__("429")
            self.retry_after = retry_after

    policy = Retry(max_attempts=3, initial_delay=2.0, jitter=0.0)
    assert policy.next_delay(1, Throttled(INF)) == 2.0
    assert policy.next_delay(1, Throttled(NAN)) == 2.0
    assert policy.next_delay(1, Throttled(True)) == 2.0
    assert policy.next_delay(1, Throttled(30)) == 30.0


# unlimited retries -----------------------------------------------------------------------


def test_unlimited_retries_never_give_up_on_a_retryable_error():
    policy = Retry(max_attempts=None, jitter=0.0)
    assert policy.max_attempts is None
    assert policy.next_delay(1, ValueError()) == 1.0
    assert policy.next_delay(10_000, ValueError()) == 60.0


@pytest.mark.parametrize("attempt", [1_025, 1_100, 10_000, 10**9, 10**30])
def test_exponential_delay_clips_to_max_delay_without_overflow(attempt):
    policy = Retry(max_attempts=None, initial_delay=0.5, backoff=2.0, max_delay=300, jitter=0.0)
    assert policy.next_delay(attempt, ValueError()) == 300.0
    jittered = Retry(max_attempts=None, initial_delay=0.5, max_delay=300, jitter=0.2).next_delay(attempt, ValueError())
    assert jittered is not None and 240.0 <= jittered <= 360.0


def test_steep_backoff_reaches_the_cap_and_early_attempts_keep_their_delays():
    policy = ExponentialBackoff(max_attempts=None, initial_delay=1e-9, backoff=1e6, max_delay=10.0, jitter=0.0)
    delays = [policy.next_delay(a, ValueError()) for a in (1, 2, 3, 10_000, 10**9)]
    assert delays[0] == pytest.approx(1e-9)
    assert delays[1] == pytest.approx(1e-3)
    assert delays[2:] == [10.0, 10.0, 10.0]
    assert all(d is not None and math.isfinite(d) for d in delays)


def test_unlimited_retries_still_honour_the_error_filters():
    policy = Retry(max_attempts=None, retry_on=(ConnectionError,), give_up_on=(ConnectionRefusedError,))
    assert policy.next_delay(10**9, ConnectionRefusedError()) is None
    assert policy.next_delay(10**9, ValueError()) is None
    assert FixedRetry(attempts=None, delay=0.5).next_delay(10**9, ConnectionError()) == 0.5


def test_a_capped_policy_still_gives_up_at_its_cap():
    assert Retry(max_attempts=3).next_delay(10**9, ValueError()) is None


# types of the other policy arguments -------------------------------------------------------


def test_fallback_kind_and_flag_are_checked():
    with pytest.raises(DefinitionError, match="Fallback kind must be one of 'cached', 'call'"):
        Fallback(kind="block")  # type: ignore[arg-type]
    with pytest.raises(DefinitionError, match="Fallback flag must be a non-empty string or None, got 3"):
        Fallback.value("x", flag=3)  # type: ignore[arg-type]
    with pytest.raises(DefinitionError, match="Fallback flag must be a non-empty string"):
        Fallback.skip(flag="")


def test_a_function_given_as_fallback_points_at_fallback_call():
    with pytest.raises(DefinitionError) as exc:
        Step("a", one, fallback=one)  # type: ignore[arg-type]
    assert message(exc).startswith("step 'a': fallback must be a Fallback or a list of them, got <function one")
    assert message(exc).endswith("use fallback=Fallback.call(fn)")


@pytest.mark.parametrize("bad", [True, 0, -2, 1.5, "4"])
def test_max_concurrency_must_be_a_positive_int(bad):
    with pytest.raises(DefinitionError, match=r"step 'a': max_concurrency must be >= 1 \(an int"):
        Step("a", one, max_concurrency=bad)


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"retry": 3}, "StepPolicy.retry must be a Retry, got 3; StepPolicy.build() accepts the shorthands"),
        ({"timeout": 5}, "StepPolicy.timeout must be a Timeout, got 5"),
        ({"fallback": [Fallback.skip()]}, "StepPolicy.fallback must be a tuple of Fallback"),
        ({"cache": 60}, "StepPolicy.cache must be a Cache or None, got 60"),
        ({"max_concurrency": True}, "max_concurrency must be >= 1"),
        ({"isolation": "fork"}, "isolation must be 'auto', 'thread', 'process' or 'inline', got 'fork'"),
        ({"min_budget": NAN}, "StepPolicy.min_budget must be a finite number of seconds > 0, got nan"),
    ],
)
def test_a_step_policy_built_directly_is_checked(kwargs, expected):
    with pytest.raises(DefinitionError, match=expected.replace("(", r"\(").replace(")", r"\)")):
        StepPolicy(**kwargs)


def test_step_policy_replace_is_checked():
    with pytest.raises(DefinitionError, match="StepPolicy.retry must be a Retry"):
        StepPolicy().replace(retry=2)
    assert StepPolicy().replace(max_concurrency=2).max_concurrency == 2
