"""Anthropic's Messages API through the official ``anthropic`` SDK.

Install with ``pip install 'orchestrate-ai[anthropic]'``. The SDK's retries are off
(``max_retries=0``); errors are mapped like the OpenAI-compatible provider's (429 →
:class:`~orchestrate.errors.RateLimitedError` with ``retry_after``, 529 "overloaded" and
5xx → :class:`~orchestrate.errors.ServerError`, a ``refusal`` stop →
:class:`~orchestrate.errors.ContentFilteredError`...).
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import AsyncIterator, Mapping
from typing import Any

import anthropic
import httpx2

from orchestrate.errors import (
    ContentFilteredError,
    DefinitionError,
    ModelError,
    ModelTimeoutError,
    ServerError,
)
from orchestrate.models._http import status_error
from orchestrate.models.base import (
    BaseProvider,
    FinishReason,
    Message,
    ModelRequest,
    ModelResult,
    ModelSettings,
    ToolUse,
    Usage,
)
from orchestrate.models.secrets import Secret, reveal
from orchestrate.models.streaming import StreamChunk

_FINISH: dict[str, FinishReason] = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}


class AnthropicModel(BaseProvider):
    """A Claude model.

    Args:
        model: e.g. ``claude-3-5-haiku-latest``.
        api_key: a key or :class:`~orchestrate.models.secrets.Secret`; defaults to
            ``$ANTHROPIC_API_KEY``.
        base_url: another API root (a proxy, a gateway).
        timeout: seconds for one HTTP call.
        max_tokens: used when a request sets none (the API requires one).
        settings: default generation settings.
        http_client: an ``httpx2.AsyncClient`` to use (tests, proxies).
    """

    provider = "anthropic"
    supports_tools = True  # the Messages API's ``tools``, ``tool_use`` and ``tool_result`` blocks

    def __init__(
        self,
        model: str,
        *,
        api_key: str | Secret | None = None,
        base_url: str | None = None,
        timeout: float = 60.0,
        max_tokens: int = 1024,
        settings: ModelSettings | None = None,
        http_client: Any = None,
    ) -> None:
        super().__init__(model, settings=settings)
        key = reveal(api_key) or os.environ.get("ANTHROPIC_API_KEY")
        if key is None:
            raise DefinitionError("AnthropicModel needs api_key= or $ANTHROPIC_API_KEY")
        self._api_key = Secret(key, name="anthropic_api_key")
        self.base_url = base_url
        self.timeout = float(timeout)
        self.max_tokens = max_tokens
        self._http_client = http_client
        self._clients: dict[int, anthropic.AsyncAnthropic] = {}

    def _client(self) -> anthropic.AsyncAnthropic:
        loop_id = id(asyncio.get_running_loop())
        client = self._clients.get(loop_id)
        if client is None:
            client = anthropic.AsyncAnthropic(
                api_key=self._api_key.reveal(),
                base_url=self.base_url,
                timeout=self.timeout,
                max_retries=0,
                http_client=self._http_client,
            )
            self._clients = {loop_id: client}
        return client

    async def aclose(self) -> None:
        """Close the HTTP connections."""
        clients, self._clients = self._clients, {}
        for client in clients.values():
            await client.close()

    def _params(self, request: ModelRequest, settings: ModelSettings) -> dict[str, Any]:
        """The SDK call's keyword arguments."""
        system = [m.content for m in request.messages if m.role == "system"]
        if request.kind == "chat":
            messages = anthropic_messages(request.messages)
        else:
            messages = [{"role": "user", "content": request.prompt}]
        if settings.json_schema is not None or settings.json_mode:
            hint = "Answer with one JSON object and nothing else."
            if settings.json_schema is not None:
                hint += f" It must match this JSON schema: {json.dumps(dict(settings.json_schema))}"
            system.append(hint)
        params: dict[str, Any] = {"max_tokens": settings.max_tokens or self.max_tokens}
        if system:
            params["system"] = "\n\n".join(system)
        if settings.stop:
            params["stop_sequences"] = list(settings.stop)
        extra = dict(settings.extra)
        if settings.temperature is not None:
            # Recent SDKs no longer take ``temperature`` as an argument; the API still does.
            extra.setdefault("temperature", settings.temperature)
        if extra:
            params["extra_body"] = extra
        if request.tools:
            params["tools"] = [
                {"name": t.name, "description": t.description, "input_schema": dict(t.parameters)}
                for t in request.tools
            ]
        params["model"] = self.model_id
        params["messages"] = messages
        return params

    async def request(self, request: ModelRequest) -> ModelResult:
        """Send a Messages API request (a prompt becomes one user message)."""
        settings = self._settings(request)
        params = self._params(request, settings)
        started = time.perf_counter()
        try:
            response: Any = await self._client().messages.create(**params)
        except (anthropic.AnthropicError, ValueError) as exc:
            raise self._map_error(exc) from exc
        latency = time.perf_counter() - started
        try:
            text = "".join(block.text for block in response.content if getattr(block, "type", None) == "text")
            calls = tuple(
                ToolUse(str(block.id), str(block.name), _arguments(block.input))
                for block in response.content
                if getattr(block, "type", None) == "tool_use"
            )
            reason = response.stop_reason
            usage = Usage(int(response.usage.input_tokens or 0), int(response.usage.output_tokens or 0))
        except (AttributeError, TypeError, ValueError) as exc:
            raise ServerError(f"{self.model_id}: malformed response: {exc}", model=self.model_id) from exc
        if reason == "refusal":
            raise ContentFilteredError(f"{self.model_id}: the model refused to answer", model=self.model_id)
        data = _json_data(text, settings)
        return ModelResult(
            text=text,
            model=self.model_id,
            usage=usage,
            latency_s=latency,
            version=getattr(response, "model", None),
            provider=self.provider,
            finish_reason=_FINISH.get(reason or "", "other") if reason else None,
            data=data,
            tool_calls=calls,
        )

    async def stream(self, request: ModelRequest) -> AsyncIterator[StreamChunk]:
        """Stream the answer (the Messages API's events); the last chunk holds the complete result.

        Closing the iterator closes the HTTP response.
        """
        settings = self._settings(request)
        params = self._params(request, settings)
        params["stream"] = True
        started = time.perf_counter()
        text: list[str] = []
        blocks: dict[int, dict[str, str]] = {}
        reason: str | None = None
        input_tokens = output_tokens = 0
        served: str | None = None
        try:
            response: Any = await self._client().messages.create(**params)
            async with response:
                async for event in response:
                    kind = getattr(event, "type", None)
                    if kind == "message_start":
                        served = getattr(event.message, "model", None)
                        input_tokens = int(getattr(event.message.usage, "input_tokens", 0) or 0)
                    elif kind == "content_block_start" and getattr(event.content_block, "type", None) == "tool_use":
                        block = event.content_block
                        blocks[int(event.index)] = {"id": str(block.id), "name": str(block.name), "json": ""}
                    elif kind == "content_block_delta":
                        delta = event.delta
                        if getattr(delta, "type", None) == "text_delta" and delta.text:
                            text.append(delta.text)
                            yield StreamChunk(delta.text)
                        elif getattr(delta, "type", None) == "input_json_delta" and int(event.index) in blocks:
                            blocks[int(event.index)]["json"] += delta.partial_json or ""
                    elif kind == "message_delta":
                        reason = getattr(event.delta, "stop_reason", None) or reason
                        output_tokens = int(getattr(event.usage, "output_tokens", 0) or 0) or output_tokens
        except (anthropic.AnthropicError, ValueError, httpx2.HTTPError) as exc:
            raise self._map_error(exc) from exc
        except (AttributeError, TypeError) as exc:
            raise ServerError(f"{self.model_id}: malformed stream: {exc}", model=self.model_id) from exc
        if reason == "refusal":
            raise ContentFilteredError(f"{self.model_id}: the model refused to answer", model=self.model_id)
        whole = "".join(text)
        result = ModelResult(
            text=whole,
            model=self.model_id,
            usage=Usage(input_tokens, output_tokens),
            latency_s=time.perf_counter() - started,
            version=served,
            provider=self.provider,
            finish_reason=_FINISH.get(reason or "", "other") if reason else None,
            data=_json_data(whole, settings),
            tool_calls=tuple(
                ToolUse(b["id"], b["name"], _arguments(b["json"] or "{}")) for _, b in sorted(blocks.items())
            ),
        )
        yield StreamChunk("", result)

    def _map_error(self, exc: Exception) -> ModelError:
        name = self.model_id
        if isinstance(exc, ModelError):
            return exc
        if isinstance(exc, httpx2.TimeoutException):
            return ModelTimeoutError(f"{name}: no answer within {self.timeout:g}s", model=name)
        if isinstance(exc, httpx2.HTTPError):
            return ServerError(f"{name}: the stream broke: {type(exc).__name__}: {exc}", model=name)
        if isinstance(exc, anthropic.APITimeoutError):
            return ModelTimeoutError(f"{name}: no answer within {self.timeout:g}s", model=name)
        if isinstance(exc, anthropic.APIStatusError):
            body = getattr(exc, "body", None)
            error = body.get("error") if isinstance(body, Mapping) else None
            message = error.get("message") if isinstance(error, Mapping) else None
            kind = error.get("type") if isinstance(error, Mapping) else None
            return status_error(
                exc.status_code, str(message or exc), model=name, headers=exc.response.headers, code=kind
            )
        if isinstance(exc, anthropic.APIConnectionError):
            cause = exc.__cause__ or exc.__context__
            detail = f"{type(cause).__name__}: {cause}" if cause else str(exc)
            return ServerError(f"{name}: connection failed: {detail}", model=name)
        if isinstance(exc, anthropic.APIResponseValidationError | ValueError):
            return ServerError(f"{name}: malformed response: {exc}", model=name)
        return ServerError(f"{name}: {type(exc).__qualname__}: {exc}", model=name)


def anthropic_messages(messages: tuple[Message, ...]) -> list[dict[str, Any]]:
    """Messages in the Messages API's form (system messages go to ``system`` instead).

    Native tool calls become ``tool_use`` blocks of the assistant turn; the results of
    one turn's calls become ``tool_result`` blocks of the single user turn that follows
    it, as the API requires for parallel calls.
    """
    out: list[dict[str, Any]] = []
    for m in messages:
        if m.role == "system":
            continue
        if m.role == "assistant":
            blocks: list[dict[str, Any]] = [{"type": "text", "text": m.content}] if m.content else []
            blocks += [
                {"type": "tool_use", "id": c.id, "name": c.name, "input": _arguments(c.arguments)} for c in m.tool_calls
            ]
            out.append({"role": "assistant", "content": blocks if m.tool_calls else m.content})
        elif m.role == "tool" and m.tool_call_id is not None:
            block = {"type": "tool_result", "tool_use_id": m.tool_call_id, "content": m.content}
            last = out[-1] if out else None
            if last is not None and last["role"] == "user" and isinstance(last["content"], list):
                last["content"].append(block)
            else:
                out.append({"role": "user", "content": [block]})
        else:
            out.append({"role": "user", "content": m.content})
    return out


def _json_data(text: str, settings: ModelSettings) -> Any:
    if not (settings.json_mode or settings.json_schema is not None):
        return None
    try:
        return json.loads(text)
    except ValueError:
        return None


def _arguments(value: Any) -> dict[str, Any]:
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, str):
        try:
            parsed = json.loads(value)
        except ValueError:
            return {}
        return parsed if isinstance(parsed, dict) else {}
    return {}
