"""The step policy's decisions, with no store, no clock and no engine: numbers in, values out."""

from __future__ import annotations

import dataclasses

import pytest

from orchestrate._codec import TYPE_KEY
from orchestrate._engine import decisions as decide
from orchestrate.errors import DeadlineExceededError, StepTimeoutError
from orchestrate.policies import Fallback, Retry, StepPolicy, Timeout
from orchestrate.types import StepStatus


class Flaky(Exception):
    pass


# attempt timeouts ------------------------------------------------------------------------
def test_no_limit_anywhere_means_no_timeout() -> None:
    assert decide.attempt_timeout(Timeout(), now=100.0, first_started=100.0, deadline_at=None) is None


def test_the_attempt_limit_is_clipped_by_the_total_left_and_the_deadline() -> None:
    policy = Timeout(attempt=10, total=25)
    # 20 s of the total spent: 5 left, less than the attempt's own 10
    assert decide.attempt_timeout(policy, now=120.0, first_started=100.0, deadline_at=None) == 5.0
    # the run's deadline 2 s away is nearer still
    assert decide.attempt_timeout(policy, now=120.0, first_started=100.0, deadline_at=122.0) == 2.0
    # nothing spent, deadline far: the attempt's own limit
    assert decide.attempt_timeout(policy, now=100.0, first_started=100.0, deadline_at=1000.0) == 10.0


def test_an_attempt_past_its_budget_still_gets_a_millisecond_to_name_the_limit() -> None:
    assert decide.attempt_timeout(Timeout(total=5), now=200.0, first_started=100.0, deadline_at=None) == 0.001


def test_the_total_timeout_gives_up_before_another_attempt() -> None:
    policy = Timeout(total=30)
    assert decide.before_attempt(policy, "s", now=129.0, first_started=100.0) is None
    gave_up = decide.before_attempt(policy, "s", now=130.0, first_started=100.0)
    assert isinstance(gave_up, decide.GiveUp)
    assert isinstance(gave_up.error, StepTimeoutError)
    assert "step 's' exceeded its total timeout of 30s" in str(gave_up.error)


# retry or give up ------------------------------------------------------------------------
def _policy(**kwargs: object) -> StepPolicy:
    return StepPolicy.build(**kwargs, where="step 's'")  # type: ignore[arg-type]


def test_a_failed_attempt_is_retried_at_the_policy_s_delay() -> None:
    policy = _policy(retry=Retry(max_attempts=3, initial_delay=2, backoff=2, jitter=0))
    error = Flaky("boom")
    first = decide.after_failure(policy, 1, error, finished=50.0, first_started=40.0, deadline_at=None)
    assert first == decide.Retry(at=52.0, delay=2.0)
    second = decide.after_failure(policy, 2, error, finished=60.0, first_started=40.0, deadline_at=None)
    assert second == decide.Retry(at=64.0, delay=4.0)
    third = decide.after_failure(policy, 3, error, finished=70.0, first_started=40.0, deadline_at=None)
    assert third == decide.GiveUp(error)


def test_a_retry_that_would_start_past_the_total_timeout_or_the_deadline_is_not_made() -> None:
    error = Flaky("boom")
    retry = Retry(max_attempts=5, initial_delay=10, jitter=0)
    total = _policy(retry=retry, timeout=Timeout(total=30))
    # 25 s spent, the retry would start at 35 s: past the total of 30
    assert decide.after_failure(total, 1, error, finished=125.0, first_started=100.0, deadline_at=None) == (
        decide.GiveUp(error)
    )
    assert isinstance(
        decide.after_failure(total, 1, error, finished=110.0, first_started=100.0, deadline_at=None), decide.Retry
    )
    plain = _policy(retry=retry)
    assert decide.after_failure(plain, 1, error, finished=100.0, first_started=100.0, deadline_at=110.0) == (
        decide.GiveUp(error)
    )
    assert decide.after_failure(plain, 1, error, finished=100.0, first_started=100.0, deadline_at=110.5) == (
        decide.Retry(at=110.0, delay=10.0)
    )


def test_an_error_the_policy_gives_up_on_is_not_retried() -> None:
    policy = _policy(retry=Retry(max_attempts=5, give_up_on=(ValueError,)))
    error = ValueError("bad input")
    assert decide.after_failure(policy, 1, error, finished=1.0, first_started=0.0, deadline_at=None) == (
        decide.GiveUp(error)
    )


# budget ----------------------------------------------------------------------------------
def test_too_little_budget_goes_to_the_fallback_only_when_there_is_one() -> None:
    with_fallback = _policy(min_budget=10, fallback=Fallback.value("cheap"))
    gave_up = decide.check_budget(with_fallback, now=95.0, deadline_at=100.0)
    assert isinstance(gave_up, decide.GiveUp) and gave_up.reason == "budget"
    assert isinstance(gave_up.error, DeadlineExceededError)
    assert "5.000s of budget left, step needs 10s" in str(gave_up.error)
    assert decide.check_budget(with_fallback, now=80.0, deadline_at=100.0) is None  # enough left
    assert decide.check_budget(with_fallback, now=95.0, deadline_at=None) is None  # no deadline
    assert decide.check_budget(_policy(min_budget=10), now=95.0, deadline_at=100.0) is None  # nothing to take


def test_no_step_starts_at_or_after_the_deadline() -> None:
    assert not decide.deadline_passed(None, 10.0)
    assert not decide.deadline_passed(10.5, 10.0)
    assert decide.deadline_passed(10.0, 10.0)


# fallbacks -------------------------------------------------------------------------------
def test_fallbacks_are_taken_in_order_until_none_is_left() -> None:
    chain = (Fallback.cached(), Fallback.value(0), Fallback.skip())
    taken = []
    use = decide.next_fallback(chain, -1)
    while use is not None:
        taken.append((use.index, use.fallback.kind))
        use = decide.next_fallback(chain, use.index)
    assert taken == [(0, "cached"), (1, "value"), (2, "skip")]
    assert decide.next_fallback((), -1) is None


def test_a_cached_output_older_than_the_fallback_s_max_age_is_not_used() -> None:
    assert decide.cached_usable(Fallback.cached(), stored_at=0.0, now=1e9)
    aged = Fallback.cached(max_age=60)
    assert decide.cached_usable(aged, stored_at=100.0, now=160.0)
    assert not decide.cached_usable(aged, stored_at=100.0, now=160.5)


def test_outputs_are_cached_for_the_cache_or_for_a_cached_fallback() -> None:
    assert not decide.wants_cache(_policy())
    assert decide.wants_cache(_policy(cache=60))
    assert decide.wants_cache(_policy(fallback=[Fallback.value(1), Fallback.cached()]))
    assert not decide.wants_cache(_policy(fallback=Fallback.value(1)))


# records ---------------------------------------------------------------------------------
def test_a_success_records_its_latency_failed_attempts_route_and_type() -> None:
    log = [decide.attempt_entry(1, "Flaky", 100.0, 100.25)]
    model = {"model": "small", "tokens_in": 3}
    meta = decide.success_meta(100.0, 101.5, "app.Ticket", model, log, "review")
    assert meta == {
        "latency_ms": 1500.0,
        "model": model,
        "attempt_log": [{"attempt": 1, "error": "Flaky", "ms": 250.0}],
        "route": "review",
        TYPE_KEY: "app.Ticket",
    }
    assert decide.success_meta(0.0, 0.001, None, None, [], None) == {"latency_ms": 1.0}


def test_a_cached_answer_records_no_attempt() -> None:
    record = decide.cached({"eta": "Friday"}, now=50.0, type_name=None)
    assert record.status is StepStatus.SUCCEEDED and record.attempts == 0
    assert (record.started_at, record.finished_at) == (50.0, 50.0)
    assert record.meta == {"cached": True, "latency_ms": 0.0} and record.fallback is None


def test_a_fallback_records_why_and_what_failed_before_it() -> None:
    error = {"name": "Flaky", "message": "boom", "type": "tests.Flaky"}
    tried = [{"fallback": "cached", "error": "no cached output"}]
    record = decide.fell_back(
        Fallback.value("default", flag="human_review"),
        "default",
        skipped=False,
        error=error,
        reason=None,
        attempts=3,
        first_started=10.0,
        finished=12.0,
        type_name=None,
        attempt_log=[],
        tried=tried,
    )
    assert record.status is StepStatus.SUCCEEDED and record.output == "default"
    assert record.error == error and record.fallback == "value"
    assert record.meta == {
        "latency_ms": 2000.0,
        "fallback_reason": "Flaky",
        "error_class": "Flaky",
        "flag": "human_review",
        "fallbacks_failed": tried,
    }
    skipped = decide.fell_back(
        Fallback.skip(),
        None,
        skipped=True,
        error=error,
        reason="budget",
        attempts=1,
        first_started=0.0,
        finished=0.0,
        type_name=None,
        attempt_log=[],
        tried=[],
    )
    assert skipped.status is StepStatus.SKIPPED and skipped.output is None
    assert skipped.meta["fallback_reason"] == "budget"


def test_a_failure_records_the_error_and_no_output() -> None:
    error = {"name": "Flaky", "message": "boom", "type": "tests.Flaky"}
    record = decide.failed(error=error, attempts=3, first_started=0.0, finished=0.5, attempt_log=[], tried=[])
    assert record.status is StepStatus.FAILED and record.output is None and record.error == error
    assert record.meta == {"latency_ms": 500.0, "error_class": "Flaky"}


@pytest.mark.parametrize(
    "decision", [decide.Retry(1.0, 1.0), decide.GiveUp(Flaky()), decide.UseFallback(0, Fallback.skip())]
)
def test_decisions_are_immutable_values(decision: object) -> None:
    first = dataclasses.fields(decision)[0].name  # type: ignore[arg-type]
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(decision, first, None)


def test_a_record_is_an_immutable_value() -> None:
    record = decide.failed(error={"name": "E"}, attempts=1, first_started=0.0, finished=0.0, attempt_log=[], tried=[])
    with pytest.raises(AttributeError):
        record.attempts = 2  # type: ignore[misc]
