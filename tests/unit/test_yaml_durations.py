"""Human durations ("30s", "1h30m") are read by policies.to_seconds, the one place for durations."""

from __future__ import annotations

from datetime import timedelta

import pytest

from orchestrate import (
    Cache,
    DefinitionError,
    Escalate,
    ExponentialBackoff,
    Fallback,
    FixedRetry,
    HumanReviewGate,
    Retry,
    Step,
    Timeout,
    Workflow,
)
from orchestrate.policies import parse_duration, to_seconds


def one(x):
    return x


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("30s", 30.0),
        ("5m", 300.0),
        ("1h30m", 5400.0),
        ("1h 30m", 5400.0),
        ("24h", 86400.0),
        ("250ms", 0.25),
        ("2d", 172800.0),
        ("1.5h", 5400.0),
        ("1d2h3m4s5ms", 93784.005),
        (" 45s ", 45.0),
    ],
)
def test_human_durations_parse(text, seconds):
    assert parse_duration(text) == pytest.approx(seconds)
    assert to_seconds(text, what="timeout") == pytest.approx(seconds)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("soon", "timeout must be seconds or a timedelta (or a duration such as '30s'"),
        ("5 minutes", "timeout must be seconds or a timedelta"),
        ("30m1h", "timeout must be seconds or a timedelta"),
        ("1h1h", "timeout must be seconds or a timedelta"),
        ("5M", "timeout must be seconds or a timedelta"),
        ("", "timeout must be seconds or a timedelta"),
        ("nan", "timeout must be seconds or a timedelta"),
        ("inf", "timeout must be seconds or a timedelta"),
        ("-5s", "timeout must be positive, got '-5s'"),
        ("-5", "timeout must be positive, got '-5'"),
        ("0s", "timeout must be positive, got '0s'"),
    ],
)
def test_bad_durations_are_refused_with_the_setting_named(text, expected):
    with pytest.raises(DefinitionError) as exc:
        to_seconds(text, what="timeout")
    assert str(exc.value).startswith(expected)


def test_a_bare_number_in_a_string_needs_a_unit():
    with pytest.raises(DefinitionError, match=r"got '30'; add a unit, e.g. '30s'"):
        to_seconds("30", what="timeout")


def test_an_overflowing_duration_is_not_finite():
    with pytest.raises(DefinitionError, match="must be a finite number of seconds > 0"):
        to_seconds("9" * 400 + "d", what="timeout")


def test_parse_duration_allows_zero_and_reports_the_order_rule():
    assert parse_duration("0s") == 0.0
    with pytest.raises(DefinitionError, match="each unit once, largest first"):
        parse_duration("5s1m", what="delay")


def test_every_place_that_takes_seconds_takes_a_duration_text():
    step = Step("fetch", one, timeout="5s", cache="1h", min_budget="250ms")
    assert step.policy.timeout.attempt == 5.0
    assert step.policy.cache is not None and step.policy.cache.ttl == 3600.0
    assert step.policy.min_budget == 0.25
    assert Timeout(attempt="2s", total="1m") == Timeout(attempt=2, total=60)
    assert Cache("1d").ttl == 86400.0
    assert Fallback.cached(max_age="10m").max_age == 600.0
    assert Workflow("w", [Step("a", one)], timeout="1h30m").timeout == 5400.0
    gate = HumanReviewGate(timeout="30m", warn_before="5m", on_timeout=Escalate("lead", timeout="1h"))
    assert (gate.timeout, gate.warn_before) == (1800.0, 300.0)
    assert isinstance(gate.on_timeout, Escalate) and gate.on_timeout.timeout == 3600.0


def test_retry_delays_take_durations_and_zero():
    assert Retry(initial_delay="500ms", max_delay="1m") == Retry(initial_delay=0.5, max_delay=60.0)
    assert Retry(initial_delay="0s", max_delay="0s").initial_delay == 0.0
    assert Retry(initial_delay=timedelta(seconds=2)).initial_delay == 2.0
    assert ExponentialBackoff(4, initial_delay="1s", max_delay="30s") == ExponentialBackoff(
        4, initial_delay=1.0, max_delay=30.0
    )
    assert FixedRetry(3, delay="2s") == FixedRetry(3, delay=2.0)


def test_retry_numbers_keep_their_type_so_versions_do_not_change():
    assert Retry(initial_delay=1).initial_delay == 1
    assert type(Retry(initial_delay=1).initial_delay) is int


def test_retry_refuses_a_text_that_is_no_duration():
    with pytest.raises(DefinitionError) as exc:
        Retry(initial_delay="soon")
    assert str(exc.value) == (
        "Retry.initial_delay must be a number of seconds or a duration such as '30s', '5m', '1h30m', "
        "'250ms' or '2d', got 'soon'"
    )
    with pytest.raises(DefinitionError, match="Retry.max_delay must be"):
        Retry(max_delay="-1s")


def test_yaml_durations_reach_the_python_api_as_written():
    from orchestrate.yaml import loads

    wf = loads(
        """
name: w
timeout: 1h30m
steps:
  - step: a
    call: a
    timeout: {attempt: 2s, total: 1m}
    cache: 1d
    retry: {initial_delay: 250ms, max_delay: 10s}
    gate:
      timeout: 30m
      warn_before: 0
      on_timeout: {escalate: {to: lead, timeout: 1h, warn_before: 0s}}
""",
        components={"a": one},
    )
    step = wf.nodes[0]
    assert wf.timeout == 5400.0
    assert step.policy.timeout == Timeout(attempt=2, total=60)  # type: ignore[attr-defined]
    assert step.policy.cache == Cache(86400)  # type: ignore[attr-defined]
    assert step.policy.retry == Retry(initial_delay=0.25, max_delay=10)  # type: ignore[attr-defined]
    gate = step.gate  # type: ignore[attr-defined]
    assert (gate.timeout, gate.warn_before) == (1800.0, None)  # 0: no warning
    assert gate.on_timeout == Escalate("lead", timeout=3600, warn_before=0)
