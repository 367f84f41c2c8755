"""CUSUM and Page-Hinkley: quiet on noise, quick on a lasting shift, resolved when it ends."""

from __future__ import annotations

import random

import pytest

from orchestrate.errors import InvalidInputError
from orchestrate.observe.change import ChangeRule, Cusum, PageHinkley
from orchestrate.observe.monitors import Deviation


def feed(rule: ChangeRule, values: list[float]) -> list[str | None]:
    state = rule.start()
    reasons = []
    for value in values:
        state, reason = rule.update(state, value)
        reasons.append(reason)
    return reasons


def noise(seed: int, n: int, mean: float = 0.0) -> list[float]:
    rng = random.Random(seed)
    return [rng.gauss(mean, 1.0) for _ in range(n)]


RULES = [Cusum(), PageHinkley()]


@pytest.mark.parametrize("rule", RULES, ids=["cusum", "page-hinkley"])
def test_a_lasting_one_sd_shift_fires_within_a_few_values(rule: ChangeRule) -> None:
    delays, early = [], 0
    for seed in range(20):
        values = noise(seed, 100) + noise(seed + 1000, 60, mean=1.0)
        fired = [i for i, r in enumerate(feed(rule, values)) if r is not None]
        if fired and fired[0] < 100:
            early += 1  # a false alarm on noise (the baseline comes from 20 values)
            continue
        assert fired, f"seed {seed}: never fired on a lasting shift"
        delays.append(fired[0] - 100)
    assert early <= 2
    assert sorted(delays)[len(delays) // 2] <= 15


@pytest.mark.parametrize("rule", RULES, ids=["cusum", "page-hinkley"])
def test_change_detectors_raise_far_fewer_false_alarms_than_a_two_sigma_rule(rule: ChangeRule) -> None:
    values = noise(42, 3000)
    reasons = feed(rule, values)
    change_alarms = sum(1 for before, now in zip([None, *reasons], reasons, strict=False) if now and not before)
    two_sigma = Deviation(sigmas=2, baseline=50, min_windows=20)
    history: list[float] = []
    deviation_alarms = 0
    for value in values:
        if two_sigma.decide(value, history[-50:]) is not None:
            deviation_alarms += 1
        else:
            history.append(value)
    assert deviation_alarms > 60  # about 1 value in 22
    assert change_alarms * 5 < deviation_alarms


def test_an_alarm_holds_until_values_return_then_resolves() -> None:
    rule = Cusum(resolve=3, direction="up")
    reasons = feed(rule, [0.0, 1.0] * 10 + [5.0] * 5 + [0.5] * 5)
    after = reasons[20:]
    assert after[0] is not None and "shifted up" in after[0]
    assert all(r is not None for r in after[:5])  # still shifted
    assert after[5:7] == [after[0], after[0]]  # two calm values are not enough
    assert after[7:] == [None, None, None]


def test_direction_limits_what_fires() -> None:
    down = [0.0, 1.0] * 10 + [-5.0] * 5
    assert all(r is None for r in feed(Cusum(direction="up"), down))
    assert any(r is not None and "shifted down" in r for r in feed(PageHinkley(direction="down"), down))


def test_a_steady_metric_fires_on_any_change_unless_given_a_floor() -> None:
    steady = [1.0] * 20 + [1.001] * 10
    assert any(r is not None for r in feed(Cusum(), steady))
    assert all(r is None for r in feed(Cusum(min_sd=0.01), steady))


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: Cusum(h=0), "h > 0"),
        (lambda: Cusum(warmup=1), "warmup >= 2"),
        (lambda: PageHinkley(threshold=-1), "threshold > 0"),
        (lambda: PageHinkley(direction="sideways"), "direction"),  # type: ignore[arg-type]
        (lambda: Cusum(resolve=0), "resolve >= 1"),
    ],
)
def test_bad_settings_are_refused(build, message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        build()
