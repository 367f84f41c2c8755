"""Token-bucket limits on requests and tokens: calls queue instead of failing."""

from __future__ import annotations

import asyncio

import pytest

from orchestrate.errors import DefinitionError, RateLimitedError
from orchestrate.models import ModelSettings, RateLimitedModel, RateLimiter, Usage
from orchestrate.testing.models import FakeModel, RateLimited, Reply, call_counts_per_window


async def test_a_burst_of_calls_queues_and_holds_the_request_rate(clock) -> None:
    model = FakeModel(["ok"], repeat_last=True, clock=clock)
    limited = RateLimitedModel(model, RateLimiter(requests_per_second=5, burst=5, clock=clock))
    start = clock.now()
    results = await asyncio.gather(*(limited.chat(f"q{i}") for i in range(50)))
    assert all(r.text == "ok" for r in results)  # nobody failed: everyone queued
    times = model.call_times
    assert len(times) == 50
    # The full bucket lets 5 through at once, then one every 0.2 s.
    assert sum(1 for t in times if t == start) == 5
    assert max(call_counts_per_window(times, 1.0)) <= 5 + 5
    after_burst = [t for t in times if t > start]
    assert max(call_counts_per_window(after_burst, 1.0)) <= 5
    assert max(times) - start == pytest.approx((50 - 5) / 5)


async def test_calls_are_served_first_come_first_served(clock) -> None:
    model = FakeModel(["ok"], repeat_last=True, clock=clock)
    limited = RateLimitedModel(model, RateLimiter(requests_per_minute=60, burst=1, clock=clock))
    await asyncio.gather(*(limited.chat(f"q{i}") for i in range(6)))
    assert [c.messages[0].content for c in model.calls] == [f"q{i}" for i in range(6)]
    assert [round(t - model.call_times[0]) for t in model.call_times] == [0, 1, 2, 3, 4, 5]


async def test_token_budget_limits_calls_by_their_size(clock) -> None:
    # Each call is estimated at ~100 input tokens + 100 output tokens and reports 200.
    model = FakeModel([Reply("ok", usage=Usage(100, 100))], repeat_last=True, clock=clock)
    limiter = RateLimiter(tokens_per_minute=1_000, token_burst=1_000, clock=clock)
    limited = RateLimitedModel(model, limiter)
    prompt = "x" * 400  # ~100 tokens
    start = clock.now()
    await asyncio.gather(*(limited.chat(prompt, settings=ModelSettings(max_tokens=100)) for _ in range(15)))
    times = model.call_times
    assert sum(1 for t in times if t == start) == 5  # 5 x 200 tokens fill the burst
    # Afterwards 1,000 tokens a minute admit one 200-token call every 12 s.
    assert max(call_counts_per_window([t for t in times if t > start], 60.0)) <= 5
    assert max(times) - start == pytest.approx(10 * 12)


async def test_real_usage_corrects_the_estimate(clock) -> None:
    # Calls report far fewer tokens than their max_tokens estimate: the refund lets more through.
    model = FakeModel([Reply("ok", usage=Usage(10, 10))], repeat_last=True, clock=clock)
    limiter = RateLimiter(tokens_per_minute=1_000, token_burst=1_000, clock=clock)
    limited = RateLimitedModel(model, limiter)
    start = clock.now()
    for _ in range(20):
        await limited.chat("hello", settings=ModelSettings(max_tokens=500))
    assert max(model.call_times) - start < 60  # without settling, 20 x ~500 tokens would take ~9 minutes


async def test_a_429_pauses_every_caller_for_its_retry_after(clock) -> None:
    model = FakeModel([RateLimited(retry_after=7), "a", "b"], clock=clock)
    limiter = RateLimiter(requests_per_second=100, clock=clock)
    limited = RateLimitedModel(model, limiter)
    start = clock.now()
    with pytest.raises(RateLimitedError) as limited_error:
        await limited.chat("first")
    assert limited_error.value.retry_after == 7  # still raised: the engine's Retry honours it
    await asyncio.gather(limited.chat("second"), limited.chat("third"))
    assert model.call_times[1] - start == 7 and model.call_times[2] - start == 7


@pytest.mark.parametrize(
    "options",
    [{}, {"requests_per_second": 0}, {"requests_per_second": 1, "requests_per_minute": 60}, {"tokens_per_minute": -1}],
)
def test_invalid_limits_are_refused(options) -> None:
    with pytest.raises(DefinitionError):
        RateLimiter(**options)
