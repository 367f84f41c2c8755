"""Ollama's native API (``/api/chat``, ``/api/generate``, ``/api/embed``) through the ``ollama`` SDK.

Install with ``pip install 'orchestrate-ai[ollama]'``. The SDK does not retry; errors
are mapped into the library's tree (a 503 "server busy" →
:class:`~orchestrate.errors.ServerError`, a timeout →
:class:`~orchestrate.errors.ModelTimeoutError`, an unknown model →
:class:`~orchestrate.errors.BadRequestError`). Ollama's ``/v1`` endpoint can also be
reached with :class:`~orchestrate.models.openai_compat.OpenAICompatModel`.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any

import httpx
import ollama

from orchestrate.errors import ModelError, ModelTimeoutError, ServerError
from orchestrate.models._http import status_error
from orchestrate.models._wire import openai_tool, parse_arguments
from orchestrate.models.base import (
    BaseProvider,
    EmbeddingResult,
    FinishReason,
    Message,
    ModelRequest,
    ModelResult,
    ModelSettings,
    ToolUse,
    Usage,
)
from orchestrate.models.streaming import StreamChunk

_FINISH: dict[str, FinishReason] = {"stop": "stop", "length": "length"}


class OllamaModel(BaseProvider):
    """A model served by Ollama.

    Args:
        model: e.g. ``llama3.2:1b``.
        host: the server (default ``$OLLAMA_HOST`` or ``http://127.0.0.1:11434``).
        timeout: seconds for one HTTP call.
        keep_alive: how long Ollama keeps the model loaded after the call.
        settings: default generation settings.
        client_options: extra keyword arguments for the underlying ``httpx.AsyncClient``
            (e.g. ``transport=`` in tests).
    """

    provider = "ollama"
    supports_tools = True  # /api/chat's ``tools`` and ``message.tool_calls``

    def __init__(
        self,
        model: str,
        *,
        host: str | None = None,
        timeout: float = 60.0,
        keep_alive: str | float | None = None,
        settings: ModelSettings | None = None,
        client_options: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(model, settings=settings)
        self.host = host
        self.timeout = float(timeout)
        self.keep_alive = keep_alive
        self._client_options = dict(client_options or {})
        self._clients: dict[int, ollama.AsyncClient] = {}

    def _client(self) -> ollama.AsyncClient:
        loop_id = id(asyncio.get_running_loop())
        client = self._clients.get(loop_id)
        if client is None:
            client = ollama.AsyncClient(host=self.host, timeout=self.timeout, **self._client_options)
            self._clients = {loop_id: client}
        return client

    async def aclose(self) -> None:
        """Close the HTTP connections."""
        clients, self._clients = self._clients, {}
        for client in clients.values():
            await client.close()  # type: ignore[no-untyped-call]

    def _options(self, settings: ModelSettings) -> tuple[dict[str, Any] | None, Any]:
        """The call's ``options`` and ``format``."""
        options: dict[str, Any] = dict(settings.extra)
        if settings.max_tokens is not None:
            options["num_predict"] = settings.max_tokens
        if settings.temperature is not None:
            options["temperature"] = settings.temperature
        if settings.stop:
            options["stop"] = list(settings.stop)
        if settings.seed is not None:
            options["seed"] = settings.seed
        fmt: Any = None
        if settings.json_schema is not None:
            fmt = dict(settings.json_schema)
        elif settings.json_mode:
            fmt = "json"
        return options or None, fmt

    async def request(self, request: ModelRequest) -> ModelResult:
        """``/api/chat`` for chats, ``/api/generate`` (raw continuation) for prompts."""
        settings = self._settings(request)
        options, fmt = self._options(settings)
        started = time.perf_counter()
        try:
            if request.kind == "chat":
                response: Any = await self._client().chat(
                    model=self.model_id,
                    messages=[ollama_message(m) for m in request.messages],
                    tools=[openai_tool(spec) for spec in request.tools] or None,
                    options=options,
                    format=fmt,
                    keep_alive=self.keep_alive,
                )
                text = response.message.content
                calls = tuple(
                    ToolUse(f"call_{i}", str(call.function.name), parse_arguments(call.function.arguments))
                    for i, call in enumerate(response.message.tool_calls or ())
                )
            else:
                response = await self._client().generate(
                    model=self.model_id,
                    prompt=request.prompt,
                    raw=True,
                    options=options,
                    format=fmt,
                    keep_alive=self.keep_alive,
                )
                text = response.response
                calls = ()
        except (ollama.ResponseError, ollama.RequestError, httpx.HTTPError, ConnectionError, ValueError) as exc:
            raise self._map_error(exc) from exc
        except AttributeError as exc:
            raise ServerError(f"{self.model_id}: malformed response: {exc}", model=self.model_id) from exc
        latency = time.perf_counter() - started
        text = text or ""
        data = _json_data(text, fmt)
        reason = getattr(response, "done_reason", None)
        finish = _FINISH.get(reason, "other") if reason else None
        return ModelResult(
            text=text,
            model=self.model_id,
            usage=Usage(int(response.prompt_eval_count or 0), int(response.eval_count or 0)),
            latency_s=latency,
            version=getattr(response, "model", None),
            provider=self.provider,
            finish_reason="tool_calls" if calls else finish,
            data=data,
            tool_calls=calls,
        )

    async def stream(self, request: ModelRequest) -> AsyncIterator[StreamChunk]:
        """Stream the answer (newline-delimited JSON); the last chunk holds the complete result.

        Closing the iterator closes the HTTP response.
        """
        settings = self._settings(request)
        options, fmt = self._options(settings)
        started = time.perf_counter()
        text: list[str] = []
        calls: list[ToolUse] = []
        last: Any = None
        try:
            if request.kind == "chat":
                parts: Any = await self._client().chat(
                    model=self.model_id,
                    messages=[ollama_message(m) for m in request.messages],
                    tools=[openai_tool(spec) for spec in request.tools] or None,
                    options=options,
                    format=fmt,
                    keep_alive=self.keep_alive,
                    stream=True,
                )
            else:
                parts = await self._client().generate(
                    model=self.model_id,
                    prompt=request.prompt,
                    raw=True,
                    options=options,
                    format=fmt,
                    keep_alive=self.keep_alive,
                    stream=True,
                )
            try:
                async for part in parts:
                    last = part
                    if request.kind == "chat":
                        piece = part.message.content or ""
                        calls += [
                            ToolUse(
                                f"call_{len(calls)}", str(call.function.name), parse_arguments(call.function.arguments)
                            )
                            for call in part.message.tool_calls or ()
                        ]
                    else:
                        piece = part.response or ""
                    if piece:
                        text.append(piece)
                        yield StreamChunk(piece)
            finally:
                await parts.aclose()
        except (ollama.ResponseError, ollama.RequestError, httpx.HTTPError, ConnectionError, ValueError) as exc:
            raise self._map_error(exc) from exc
        except AttributeError as exc:
            raise ServerError(f"{self.model_id}: malformed stream: {exc}", model=self.model_id) from exc
        if last is None or not getattr(last, "done", False):
            raise ServerError(f"{self.model_id}: the stream ended before its last part", model=self.model_id)
        whole = "".join(text)
        reason = getattr(last, "done_reason", None)
        result = ModelResult(
            text=whole,
            model=self.model_id,
            usage=Usage(int(last.prompt_eval_count or 0), int(last.eval_count or 0)),
            latency_s=time.perf_counter() - started,
            version=getattr(last, "model", None),
            provider=self.provider,
            finish_reason="tool_calls" if calls else (_FINISH.get(reason, "other") if reason else None),
            data=_json_data(whole, fmt),
            tool_calls=tuple(calls),
        )
        yield StreamChunk("", result)

    async def embed(self, texts: Sequence[str]) -> EmbeddingResult:
        """``/api/embed``."""
        started = time.perf_counter()
        try:
            response: Any = await self._client().embed(model=self.model_id, input=list(texts))
        except (ollama.ResponseError, ollama.RequestError, httpx.HTTPError, ConnectionError, ValueError) as exc:
            raise self._map_error(exc) from exc
        vectors = [list(map(float, v)) for v in response.embeddings]
        usage = Usage(int(response.prompt_eval_count or 0), 0)
        return EmbeddingResult(vectors, self.model_id, usage, time.perf_counter() - started, response.model)

    def _map_error(self, exc: Exception) -> ModelError:
        name = self.model_id
        if isinstance(exc, ollama.ResponseError):
            if exc.status_code < 0:
                return ServerError(f"{name}: {exc.error}", model=name)
            return status_error(exc.status_code, str(exc.error), model=name)
        if isinstance(exc, httpx.TimeoutException):
            return ModelTimeoutError(f"{name}: no answer within {self.timeout:g}s", model=name)
        if isinstance(exc, ConnectionError | httpx.TransportError):
            return ServerError(f"{name}: connection failed: {exc}", model=name)
        if isinstance(exc, ollama.RequestError):
            return status_error(400, str(exc.error), model=name)
        return ServerError(f"{name}: malformed response: {type(exc).__qualname__}: {exc}", model=name)


def _json_data(text: str, fmt: Any) -> Any:
    if fmt is None:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return None


def ollama_message(message: Message) -> dict[str, Any]:
    """A message in ``/api/chat``'s form: tool calls carry their arguments as objects,
    tool results name their tool (Ollama has no call ids)."""
    data: dict[str, Any] = {"role": message.role, "content": message.content}
    if message.tool_calls:
        data["tool_calls"] = [
            {"function": {"name": c.name, "arguments": c.arguments if isinstance(c.arguments, dict) else {}}}
            for c in message.tool_calls
        ]
    if message.role == "tool" and message.name is not None:
        data["tool_name"] = message.name
    return data
