"""The OpenAI-compatible provider against HTTP faults from a real local server."""

from __future__ import annotations

import email.utils
import time

import pytest

from orchestrate import Engine, Retry, Step, Workflow
from orchestrate.errors import (
    BadRequestError,
    ContentFilteredError,
    ModelTimeoutError,
    NonRetryableError,
    RateLimitedError,
    ServerError,
)
from orchestrate.models import CircuitBreaker, CircuitBreakerModel, FailoverModel, ModelSettings
from orchestrate.models.openai_compat import OpenAICompatModel
from orchestrate.store import InMemoryStore

from .servers import Scripted, chat_completion


def error_body(message: str, code: str | None = None) -> dict:
    return {"error": {"message": message, "type": "invalid_request_error", "code": code, "param": None}}


async def test_a_good_answer_is_read_with_usage_and_version(faults, fault_model) -> None:
    faults.reset(Scripted(body=chat_completion("hello", model="fault-model-2024-06-01")))
    result = await fault_model.chat("hi", settings=ModelSettings(max_tokens=5, temperature=0))
    assert result.text == "hello" and result.usage.input_tokens == 11 and result.usage.output_tokens == 2
    assert result.version == "fault-model-2024-06-01" and result.latency_s > 0
    sent = faults.requests[0]
    assert sent["path"] == "/v1/chat/completions" and sent["body"]["max_tokens"] == 5
    assert sent["headers"].get("x-stainless-retry-count", "0") == "0"


@pytest.mark.parametrize(
    ("headers", "expected"),
    [({"retry-after": "3"}, 3.0), ({"retry-after-ms": "1500"}, 1.5), ({}, None)],
)
async def test_429_carries_retry_after_and_is_not_retried_by_the_sdk(faults, fault_model, headers, expected) -> None:
    faults.reset(Scripted(429, error_body("Rate limit reached"), headers=headers), Scripted())
    with pytest.raises(RateLimitedError) as limited:
        await fault_model.chat("hi")
    assert limited.value.retry_after == expected and limited.value.status_code == 429
    assert len(faults.requests) == 1  # max_retries=0: the engine owns retries


async def test_429_with_an_http_date_retry_after(faults, fault_model) -> None:
    when = email.utils.formatdate(time.time() + 120, usegmt=True)
    faults.reset(Scripted(429, error_body("slow down"), headers={"retry-after": when}))
    with pytest.raises(RateLimitedError) as limited:
        await fault_model.chat("hi")
    assert 100 < limited.value.retry_after <= 121


@pytest.mark.parametrize("status", [500, 502, 503])
async def test_5xx_is_a_server_error(faults, fault_model, status) -> None:
    faults.reset(Scripted(status, error_body("upstream failed")))
    with pytest.raises(ServerError) as failed:
        await fault_model.chat("hi")
    assert failed.value.status_code == status and not isinstance(failed.value, NonRetryableError)


async def test_4xx_is_a_bad_request_and_a_filter_is_content_filtered(faults, fault_model) -> None:
    faults.reset(Scripted(400, error_body("maximum context length is 8192 tokens", "context_length_exceeded")))
    with pytest.raises(BadRequestError, match="maximum context length") as bad:
        await fault_model.chat("hi")
    assert isinstance(bad.value, NonRetryableError)
    faults.reset(Scripted(400, error_body("The response was filtered", "content_filter")))
    with pytest.raises(ContentFilteredError):
        await fault_model.chat("hi")
    faults.reset(Scripted(body=chat_completion("", finish_reason="content_filter")))
    with pytest.raises(ContentFilteredError):
        await fault_model.chat("hi")


async def test_a_slow_server_is_a_timeout(faults) -> None:
    model = OpenAICompatModel("fault-model", base_url=faults.url, timeout=0.3)
    faults.reset(Scripted(delay=2.0))
    try:
        with pytest.raises(ModelTimeoutError):
            await model.chat("hi")
    finally:
        await model.aclose()


@pytest.mark.parametrize(
    "answer",
    [
        Scripted(body=b'{"id": "chatcmpl-1", "choices": [{"index": 0, "message": {"role": "assis', declared_length=400),
        Scripted(body=b'{"id": "chatcmpl-1", "choices": [{"index": 0, "message": {"role": "assis'),
        Scripted(body=b"<html><body>502 Bad Gateway</body></html>", headers={"content-type": "text/html"}),
        Scripted(body={"id": "chatcmpl-1", "object": "chat.completion", "choices": []}),
    ],
    ids=["truncated-connection", "truncated-json", "html", "no-choices"],
)
async def test_truncated_or_malformed_bodies_are_server_errors(faults, fault_model, answer) -> None:
    faults.reset(answer)
    with pytest.raises(ServerError):
        await fault_model.chat("hi")


async def test_the_engine_retries_a_429_after_its_retry_after(faults, fault_model) -> None:
    faults.reset(Scripted(429, error_body("slow down"), headers={"retry-after": "1"}), Scripted())

    async def ask(question: str) -> str:
        return (await fault_model.chat(question)).text

    wf = Workflow("ask", [Step("ask", ask, retry=Retry(max_attempts=3, initial_delay=0.01, jitter=0))])
    async with Engine(InMemoryStore()) as engine:
        record = await engine.run_record(wf, "hi")
        events = await engine.store.list_events(record.run_id)
        steps = await engine.store.get_steps(record.run_id)
    assert record.output == "ok" and len(faults.requests) == 2
    retry = next(e for e in events if e.kind == "step_retry")
    assert retry.data["delay"] == 1.0  # the server's Retry-After, not the 0.01 s backoff
    assert steps[0].meta["attempt_log"][0]["error"] == "RateLimitedError"


async def test_a_failing_endpoint_trips_its_breaker_and_traffic_fails_over(faults, fault_model, gemma_http) -> None:
    faults.reset(*[Scripted(500, error_body("down"))] * 10)
    guarded = CircuitBreakerModel(fault_model, CircuitBreaker(failure_threshold=3, window=60, recovery_timeout=600))
    chain = FailoverModel([guarded, gemma_http])
    settings = ModelSettings(max_tokens=4, temperature=0)
    served = [(await chain.generate("The capital of France is", settings=settings)).model for _ in range(5)]
    assert served == ["gemma-3-270m"] * 5
    assert len(faults.requests) == 3  # after three 500s the endpoint is no longer called
