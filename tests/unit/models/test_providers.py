"""Anthropic and Ollama providers: requests they send, results they read, errors they map.

The SDKs are real; only the HTTP transport is replaced (``MockTransport``), so what is
tested is the provider's handling of real SDK responses and exceptions. The
OpenAI-compatible provider is tested against real HTTP servers in
``tests/integration/models``.
"""

from __future__ import annotations

import json

import httpx
import httpx2
import pytest

from orchestrate.errors import (
    BadRequestError,
    ContentFilteredError,
    DefinitionError,
    ModelTimeoutError,
    RateLimitedError,
    ServerError,
)
from orchestrate.models import Message, ModelSettings, Usage
from orchestrate.models.anthropic import AnthropicModel
from orchestrate.models.ollama import OllamaModel
from orchestrate.models.openai_compat import OpenAICompatModel


def anthropic_model(handler) -> AnthropicModel:
    client = httpx2.AsyncClient(transport=httpx2.MockTransport(handler))
    return AnthropicModel("claude-test", api_key="sk-ant-test", http_client=client)


def message_body(text="Hello!", stop="end_turn") -> dict:
    return {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": "claude-test-20250101",
        "content": [{"type": "text", "text": text}],
        "stop_reason": stop,
        "stop_sequence": None,
        "usage": {"input_tokens": 12, "output_tokens": 3},
    }


async def test_anthropic_sends_system_apart_and_reads_usage() -> None:
    sent = []

    def handler(request):
        sent.append((request, json.loads(request.content)))
        return httpx2.Response(200, json=message_body())

    model = anthropic_model(handler)
    result = await model.chat(
        [Message.system("Be brief."), Message.user("Hi")], settings=ModelSettings(max_tokens=50, stop=("END",))
    )
    request, body = sent[0]
    assert body["system"] == "Be brief." and body["messages"] == [{"role": "user", "content": "Hi"}]
    assert body["max_tokens"] == 50 and body["stop_sequences"] == ["END"]
    assert "sk-ant-test" in (request.headers.get("x-api-key") or request.headers.get("authorization", ""))
    assert request.headers.get("x-stainless-retry-count") in (None, "0")
    assert result.text == "Hello!" and result.usage == Usage(12, 3) and result.version == "claude-test-20250101"
    assert result.provider == "anthropic" and result.finish_reason == "stop"


@pytest.mark.parametrize(
    ("status", "headers", "body", "error", "check"),
    [
        (
            429,
            {"retry-after": "12"},
            {"type": "rate_limit_error", "message": "slow down"},
            RateLimitedError,
            lambda e: e.retry_after == 12.0,
        ),
        (529, {}, {"type": "overloaded_error", "message": "Overloaded"}, ServerError, lambda e: e.status_code == 529),
        (500, {}, {"type": "api_error", "message": "oops"}, ServerError, lambda e: e.status_code == 500),
        (
            400,
            {},
            {"type": "invalid_request_error", "message": "prompt is too long"},
            BadRequestError,
            lambda e: "prompt is too long" in str(e),
        ),
    ],
)
async def test_anthropic_errors_are_mapped(status, headers, body, error, check) -> None:
    calls = []

    def handler(request):
        calls.append(request)
        return httpx2.Response(status, headers=headers, json={"type": "error", "error": body})

    with pytest.raises(error) as raised:
        await anthropic_model(handler).chat("hi")
    assert check(raised.value) and len(calls) == 1  # the SDK did not retry on its own


async def test_anthropic_refusal_is_content_filtered_and_timeouts_are_mapped() -> None:
    with pytest.raises(ContentFilteredError):
        await anthropic_model(lambda r: httpx2.Response(200, json=message_body("", stop="refusal"))).chat("x")

    def hang(request):
        raise httpx2.ReadTimeout("timed out", request=request)

    with pytest.raises(ModelTimeoutError):
        await anthropic_model(hang).chat("x")


def test_providers_need_keys_for_hosted_apis(monkeypatch) -> None:
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(DefinitionError):
        AnthropicModel("claude")
    with pytest.raises(DefinitionError):
        OpenAICompatModel("gpt-4o-mini")
    local = OpenAICompatModel("anything", base_url="http://127.0.0.1:1/v1")
    assert "not-needed" not in repr(local.__dict__)  # the placeholder key is held as a Secret


def ollama_model(handler) -> OllamaModel:
    return OllamaModel(
        "llama3.2:1b", host="http://ollama.test", client_options={"transport": httpx.MockTransport(handler)}
    )


async def test_ollama_chat_generate_and_embed() -> None:
    seen = []

    def handler(request):
        body = json.loads(request.content)
        seen.append((request.url.path, body))
        common = {"model": "llama3.2:1b", "done": True, "done_reason": "stop", "prompt_eval_count": 7, "eval_count": 2}
        if request.url.path == "/api/chat":
            return httpx.Response(200, json={**common, "message": {"role": "assistant", "content": '{"a": 1}'}})
        if request.url.path == "/api/generate":
            return httpx.Response(200, json={**common, "response": " Paris"})
        return httpx.Response(
            200, json={"model": "nomic", "embeddings": [[0.1, 0.2], [0.3, 0.4]], "prompt_eval_count": 4}
        )

    model = ollama_model(handler)
    chat = await model.chat("json please", settings=ModelSettings(json_mode=True, max_tokens=20, temperature=0))
    assert chat.data == {"a": 1} and chat.usage == Usage(7, 2) and chat.finish_reason == "stop"
    assert seen[0][1]["format"] == "json" and seen[0][1]["options"] == {"num_predict": 20, "temperature": 0}
    generated = await model.generate("The capital of France is")
    assert generated.text == " Paris" and seen[1][1]["raw"] is True
    vectors = await model.embed(["a", "b"])
    assert vectors.vectors == [[0.1, 0.2], [0.3, 0.4]] and vectors.usage.input_tokens == 4


@pytest.mark.parametrize(
    ("response", "error"),
    [
        (httpx.Response(404, json={"error": "model 'x' not found"}), BadRequestError),
        (httpx.Response(503, json={"error": "server busy, please try again"}), ServerError),
        (httpx.Response(429, json={"error": "too many requests"}), RateLimitedError),
        (httpx.Response(200, text='{"model": "x", "message": {"role": "assistant", "con'), ServerError),
    ],
)
async def test_ollama_errors_are_mapped(response, error) -> None:
    with pytest.raises(error):
        await ollama_model(lambda request: response).chat("x")


async def test_ollama_timeouts_and_refused_connections_are_mapped() -> None:
    def hang(request):
        raise httpx.ReadTimeout("timed out", request=request)

    def refuse(request):
        raise httpx.ConnectError("refused", request=request)

    with pytest.raises(ModelTimeoutError):
        await ollama_model(hang).chat("x")
    with pytest.raises(ServerError, match="connection failed"):
        await ollama_model(refuse).chat("x")
