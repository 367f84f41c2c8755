"""FakeModel and FunctionModel play their scripts faithfully."""

from __future__ import annotations

import pytest

from orchestrate.errors import BadRequestError, ModelTimeoutError, RateLimitedError, ServerError
from orchestrate.models import ModelSettings, Usage
from orchestrate.testing.models import (
    Duplicate,
    Fail,
    FakeEmbedder,
    FakeModel,
    FakeModelExhaustedError,
    FunctionModel,
    RateLimited,
    Reply,
    ServerFailure,
    TimedOut,
)


async def test_script_plays_in_order_with_every_fault_kind(clock) -> None:
    model = FakeModel(
        [
            RateLimited(retry_after=2.5),
            TimedOut(latency=3),
            ServerFailure(503),
            ServerFailure(None),
            Fail(BadRequestError("context too long")),
            Reply("<answer>xml</answer>", usage=Usage(10, 4)),
            Duplicate(),
            {"intent": "refund"},
        ],
        clock=clock,
    )
    with pytest.raises(RateLimitedError) as limited:
        await model.chat("a")
    assert limited.value.retry_after == 2.5 and limited.value.status_code == 429
    started = clock.now()
    with pytest.raises(ModelTimeoutError):
        await model.chat("b")
    assert clock.now() - started == 3  # the hang took its virtual time
    with pytest.raises(ServerError) as down:
        await model.chat("c")
    assert down.value.status_code == 503
    with pytest.raises(ServerError) as dropped:
        await model.chat("d")
    assert dropped.value.status_code is None
    with pytest.raises(BadRequestError):
        await model.chat("e")
    garbage = await model.chat("f")
    assert garbage.text == "<answer>xml</answer>" and garbage.usage == Usage(10, 4)
    assert (await model.chat("g")) is garbage  # the duplicate is the very same answer
    structured = await model.chat("h", settings=ModelSettings(json_mode=True))
    assert structured.data == {"intent": "refund"}
    assert [m.messages[-1].content for m in model.calls] == list("abcdefgh")
    with pytest.raises(FakeModelExhaustedError):
        await model.chat("one too many")


async def test_repeat_last_and_in_flight_tracking(clock) -> None:
    model = FakeModel([Reply("ok", latency=1)], repeat_last=True, clock=clock)
    for _ in range(3):
        assert (await model.chat("x")).text == "ok"
    assert len(model.calls) == 3 and model.in_flight == 0 and model.max_in_flight == 1


async def test_function_model_answers_from_the_request() -> None:
    model = FunctionModel(lambda request: request.last_user_text().upper())
    assert (await model.chat("shout")).text == "SHOUT"

    async def fails(request):
        raise RateLimitedError("busy", retry_after=1)

    with pytest.raises(RateLimitedError):
        await FunctionModel(fails).generate("x")


async def test_fake_embedder_is_deterministic_and_word_based() -> None:
    embedder = FakeEmbedder()
    a, b, c = (await embedder.embed(["where is my order", "where is my order now", "reset my password"])).vectors
    same = sum(x * y for x, y in zip(a, b, strict=True))
    other = sum(x * y for x, y in zip(a, c, strict=True))
    assert same > 0.8 > other
    assert (await FakeEmbedder().embed(["where is my order"])).vectors[0] == a
