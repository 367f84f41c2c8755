"""Streaming through three wire formats: OpenAI server-sent events, Anthropic message events, Ollama NDJSON.

Each provider reads a real HTTP stream from a loopback server speaking its format: text
arrives word by word, tool-call arguments in fragments, usage at the end. Timeouts on
the first token and between tokens are named errors; closing the iterator early closes
the HTTP response, which the server sees as a broken pipe.
"""

from __future__ import annotations

import asyncio
import threading
from contextlib import aclosing
from typing import Any

import pytest

from orchestrate.errors import ModelTimeoutError
from orchestrate.models import ModelRequest, ModelSettings
from orchestrate.models.anthropic import AnthropicModel
from orchestrate.models.ollama import OllamaModel
from orchestrate.models.openai_compat import OpenAICompatModel
from orchestrate.models.streaming import FirstTokenTimeoutError, StreamStalledError, collect, stream

from .wire_servers import AnthropicWire, OllamaWire, OpenAIWire, Said, WireServer

SERVERS: dict[str, type[WireServer]] = {"openai": OpenAIWire, "anthropic": AnthropicWire, "ollama": OllamaWire}
TEXT = "The parcel A-17 left the warehouse this morning and arrives tomorrow"


def model_for(kind: str, server: WireServer) -> Any:
    if kind == "openai":
        return OpenAICompatModel("wire", base_url=server.url, timeout=10)
    if kind == "anthropic":
        return AnthropicModel("wire", api_key="sk-ant-test-0000", base_url=server.url, timeout=10)
    return OllamaModel("wire", host=server.url, timeout=10)


@pytest.fixture(params=sorted(SERVERS))
def wire(request):
    kind = request.param
    server = SERVERS[kind](lambda body: Said(text=TEXT, input_tokens=31, output_tokens=12)).start()
    yield kind, server
    server.stop()


async def test_text_arrives_in_chunks_and_the_last_holds_the_whole_result(wire) -> None:
    kind, server = wire
    model = model_for(kind, server)
    try:
        pieces = [chunk async for chunk in stream(model, ModelRequest.chat("Where is A-17?"))]
    finally:
        await model.aclose()
    words = TEXT.split(" ")
    assert [c.text for c in pieces[:-1]] == [words[0]] + [" " + w for w in words[1:]]
    result = pieces[-1].result
    assert pieces[-1].done and result is not None and not any(c.done for c in pieces[:-1])
    assert result.text == TEXT and result.provider == kind and result.finish_reason == "stop"
    assert (result.usage.input_tokens, result.usage.output_tokens) == (31, 12)
    assert server.requests[0]["body"]["stream"] is True


async def test_tool_calls_are_assembled_from_streamed_fragments(wire) -> None:
    kind, server = wire
    address = {"city": "Paris", "postcode": "75002"}
    server.brain = lambda body: Said(calls=[("lookup_order", {"order_id": "A-17"}), ("ship", {"to": address})])
    model = model_for(kind, server)
    try:
        result = await collect(stream(model, ModelRequest.chat("Ship A-17")))
    finally:
        await model.aclose()
    assert [(c.name, c.arguments) for c in result.tool_calls] == [
        ("lookup_order", {"order_id": "A-17"}),
        ("ship", {"to": address}),
    ]
    assert result.finish_reason == "tool_calls" and result.text == ""


async def test_closing_the_stream_early_closes_the_http_response(wire) -> None:
    kind, server = wire
    long_text = " ".join(f"w{i}" for i in range(400))
    server.brain = lambda body: Said(text=long_text, chunk_delay=0.005)
    model = model_for(kind, server)
    try:
        async with aclosing(stream(model, ModelRequest.chat("Talk"))) as chunks:
            seen = [chunk.text async for chunk, _ in zip_range(chunks, 3)]
        assert seen == ["w0", " w1", " w2"]
        # The server stops generating: its next writes fail on the closed connection.
        assert await asyncio.to_thread(server.aborted.wait, 30)
        assert server.chunks_sent < 400
    finally:
        await model.aclose()


async def test_cancelling_the_consuming_task_stops_the_provider_call(wire) -> None:
    kind, server = wire
    server.brain = lambda body: Said(text=" ".join(f"w{i}" for i in range(400)), chunk_delay=0.005)
    model = model_for(kind, server)
    first = asyncio.Event()

    async def consume() -> None:
        async for _chunk in stream(model, ModelRequest.chat("Talk")):
            first.set()

    task = asyncio.create_task(consume())
    try:
        await first.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert await asyncio.to_thread(server.aborted.wait, 30)
    finally:
        await model.aclose()


async def test_no_first_token_in_time_is_a_named_timeout(wire) -> None:
    kind, server = wire
    release = threading.Event()
    server.brain = lambda body: Said(text=TEXT, hold=release)
    model = model_for(kind, server)
    try:
        with pytest.raises(FirstTokenTimeoutError, match="no first token within 0.2s") as caught:
            await collect(stream(model, ModelRequest.chat("Hello"), first_token_timeout=0.2))
        assert isinstance(caught.value, ModelTimeoutError) and caught.value.model == "wire"
    finally:
        release.set()
        await model.aclose()


async def test_a_gap_between_tokens_is_a_named_timeout(wire) -> None:
    kind, server = wire
    server.brain = lambda body: Said(text="slow words come here", chunk_delay=0.5)
    model = model_for(kind, server)
    try:
        with pytest.raises(StreamStalledError, match="no token for 0.2s"):
            await collect(stream(model, ModelRequest.chat("Hello"), first_token_timeout=5, idle_timeout=0.2))
    finally:
        await model.aclose()


async def test_generation_settings_reach_the_streamed_request(wire) -> None:
    kind, server = wire
    model = model_for(kind, server)
    try:
        await collect(stream(model, ModelRequest.chat("Hi", ModelSettings(max_tokens=7, temperature=0.0))))
    finally:
        await model.aclose()
    body = server.requests[0]["body"]
    limit = body["options"]["num_predict"] if kind == "ollama" else body["max_tokens"]
    assert limit == 7


async def zip_range(chunks: Any, n: int) -> Any:
    """The first ``n`` chunks of ``chunks``, each with its position."""
    i = 0
    async for chunk in chunks:
        yield chunk, i
        i += 1
        if i == n:
            return
