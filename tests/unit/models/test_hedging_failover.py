"""Hedged requests (first answer wins) and failover chains (primary -> secondary -> local)."""

from __future__ import annotations

import pytest

from orchestrate.errors import (
    BadRequestError,
    CircuitOpenError,
    ContentFilteredError,
    ModelError,
    ModelTimeoutError,
    RateLimitedError,
    ServerError,
)
from orchestrate.models import CircuitBreaker, CircuitBreakerModel, FailoverModel, HedgedModel
from orchestrate.testing.models import Fail, FakeModel, RateLimited, Reply, ServerFailure, TimedOut


async def test_a_slow_primary_gets_a_backup_and_the_backup_wins(clock) -> None:
    primary = FakeModel([Reply("slow", latency=30)], model_id="primary", clock=clock)
    backup = FakeModel([Reply("fast", latency=1)], model_id="backup", clock=clock)
    hedged = HedgedModel(primary, delay=2, backup=backup, clock=clock)
    start = clock.now()
    result = await hedged.chat("q")
    assert result.text == "fast" and result.meta == {"hedged": True, "hedge_winner": "backup"}
    assert backup.call_times[0] - start == 2  # the backup started after the hedge delay
    assert clock.now() - start == 3  # answered when the backup did, not after 30 s
    assert primary.in_flight == 0  # the losing call was cancelled


async def test_a_fast_primary_sends_no_backup(clock) -> None:
    primary = FakeModel([Reply("quick", latency=0.5)], clock=clock)
    backup = FakeModel([], clock=clock)
    result = await HedgedModel(primary, delay=2, backup=backup, clock=clock).chat("q")
    assert result.text == "quick" and result.meta["hedged"] is False and backup.calls == []


async def test_after_the_hedge_the_first_success_wins_even_if_the_backup_fails(clock) -> None:
    primary = FakeModel([Reply("primary", latency=5)], clock=clock)
    backup = FakeModel([ServerFailure(500, latency=1)], clock=clock)
    result = await HedgedModel(primary, delay=2, backup=backup, clock=clock).chat("q")
    assert result.text == "primary" and result.meta["hedge_winner"] == "primary"


async def test_an_error_before_the_hedge_is_raised_without_a_backup(clock) -> None:
    primary = FakeModel([ServerFailure(500, latency=0.5)], clock=clock)
    backup = FakeModel([], clock=clock)
    with pytest.raises(ServerError):
        await HedgedModel(primary, delay=2, backup=backup, clock=clock).chat("q")
    assert backup.calls == []


async def test_both_failing_raises_the_error_of_the_call_that_failed_last(clock) -> None:
    primary = FakeModel([TimedOut(latency=10)], clock=clock)
    backup = FakeModel([ServerFailure(503, latency=1)], clock=clock)
    with pytest.raises(ModelTimeoutError):
        await HedgedModel(primary, delay=2, backup=backup, clock=clock).chat("q")
    assert primary.in_flight == 0 and backup.in_flight == 0


async def test_failover_walks_the_chain_and_reports_what_failed() -> None:
    primary = FakeModel([ServerFailure(500)], model_id="gpt-big")
    secondary = FakeModel([RateLimited(retry_after=3)], model_id="claude")
    local = FakeModel(["local answer"], model_id="gemma")
    result = await FailoverModel([primary, secondary, local]).chat("q")
    assert result.text == "local answer" and result.model == "gemma"
    assert [f["model"] for f in result.meta["failover"]] == ["gpt-big", "claude"]
    assert "RateLimitedError" in result.meta["failover"][1]["error"]


async def test_failover_raises_one_error_naming_every_failure_with_the_shortest_retry_after() -> None:
    chain = FailoverModel(
        [
            FakeModel([RateLimited(retry_after=30)], model_id="a"),
            FakeModel([RateLimited(retry_after=4)], model_id="b"),
            FakeModel([ServerFailure(502)], model_id="c"),
        ]
    )
    with pytest.raises(ModelError) as failed:
        await chain.chat("q")
    assert type(failed.value) is ModelError and failed.value.retry_after == 4
    assert "a: RateLimitedError" in str(failed.value) and "c: ServerError" in str(failed.value)
    assert isinstance(failed.value.__cause__, ServerError)


@pytest.mark.parametrize("error", [BadRequestError("too long", status_code=400), ContentFilteredError("no")])
async def test_failover_does_not_spend_calls_on_requests_every_model_would_refuse(error) -> None:
    second = FakeModel(["never"])
    with pytest.raises(type(error)):
        await FailoverModel([FakeModel([Fail(error)]), second]).chat("q")
    assert second.calls == []


async def test_an_open_breaker_hands_over_to_the_next_model_without_calling_the_endpoint(clock) -> None:
    endpoint = FakeModel([ServerFailure(500)], repeat_last=True, model_id="primary", clock=clock)
    guarded = CircuitBreakerModel(endpoint, CircuitBreaker(failure_threshold=2, recovery_timeout=60, clock=clock))
    local = FakeModel(["local"], repeat_last=True, model_id="local", clock=clock)
    chain = FailoverModel([guarded, local])
    for _ in range(5):
        assert (await chain.chat("q")).text == "local"
    assert len(endpoint.calls) == 2  # after two failures the breaker stopped calling it
    assert "CircuitOpenError" in (await chain.chat("q")).meta["failover"][0]["error"]
    assert issubclass(CircuitOpenError, ModelError) and not issubclass(RateLimitedError, BadRequestError)
