"""OpenAI-compatible chat/completions/embeddings endpoints through the official ``openai`` SDK.

Serves OpenAI itself and every server speaking its API: vLLM, llama.cpp's server
(``python -m llama_cpp.server``), Ollama's ``/v1`` endpoint, LM Studio, LiteLLM...
Install with ``pip install 'orchestrate-ai[openai]'``.

The SDK's own retries are off (``max_retries=0``): retries belong to the engine's
:class:`~orchestrate.policies.Retry`, which honours the ``retry_after`` this module reads
from a 429's ``Retry-After``. SDK errors are mapped into the library's tree:

============================  =======================================
SDK error                     library error
============================  =======================================
``RateLimitError`` (429)      :class:`~orchestrate.errors.RateLimitedError` (``retry_after``)
``APITimeoutError``           :class:`~orchestrate.errors.ModelTimeoutError`
5xx, connection lost,         :class:`~orchestrate.errors.ServerError`
malformed or truncated body
other 4xx                     :class:`~orchestrate.errors.BadRequestError`
content filter (4xx or        :class:`~orchestrate.errors.ContentFilteredError`
``finish_reason``)
============================  =======================================
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any, Literal

import httpx2
import openai

from orchestrate.errors import (
    ContentFilteredError,
    DefinitionError,
    ModelError,
    ModelTimeoutError,
    ServerError,
)
from orchestrate.models._http import status_error
from orchestrate.models._wire import openai_tool, parse_arguments
from orchestrate.models.base import (
    BaseProvider,
    EmbeddingResult,
    FinishReason,
    ModelRequest,
    ModelResult,
    ModelSettings,
    ToolUse,
    Usage,
)
from orchestrate.models.secrets import Secret, reveal
from orchestrate.models.streaming import StreamChunk

_FINISH: dict[str, FinishReason] = {
    "stop": "stop",
    "length": "length",
    "content_filter": "content_filter",
    "tool_calls": "tool_calls",
    "function_call": "tool_calls",
}


class OpenAICompatModel(BaseProvider):
    """A model behind an OpenAI-compatible HTTP API.

    Args:
        model: the model name the server expects (``gpt-4o-mini``, or any name for a
            llama.cpp server, which serves the one model it loaded).
        base_url: the API root (``http://127.0.0.1:8000/v1``); ``None`` means OpenAI.
        api_key: a key or a :class:`~orchestrate.models.secrets.Secret`; defaults to
            ``$OPENAI_API_KEY``, and to a placeholder for a custom ``base_url`` (local
            servers usually need none).
        timeout: seconds for one HTTP call.
        use_completions: answer :meth:`generate` with the legacy ``/completions``
            endpoint (raw text continuation, right for base models); otherwise a prompt is
            sent as one user message.
        settings: default generation settings.
        default_headers: extra HTTP headers.
        http_client: an ``httpx2.AsyncClient`` to use (tests, proxies).
        provider: the label recorded on results.
        json_schema_mode: how a JSON schema is asked for: ``"json_schema"`` (OpenAI,
            vLLM) or ``"json_object"`` (``{"type": "json_object", "schema": ...}``, what
            llama.cpp's Python server accepts).
        stream_usage: ask for token usage at the end of a stream
            (``stream_options.include_usage``); turn off for servers that refuse it.
        null_tool_call_content: send an assistant turn that only called tools with
            ``content: null`` (OpenAI); ``False`` sends ``""``, which llama-cpp-python's
            server requires.
    """

    provider = "openai"
    supports_tools = True  # chat completions' ``tools`` and ``tool_calls``

    def __init__(
        self,
        model: str,
        *,
        base_url: str | None = None,
        api_key: str | Secret | None = None,
        timeout: float = 60.0,
        use_completions: bool = False,
        settings: ModelSettings | None = None,
        default_headers: Mapping[str, str] | None = None,
        http_client: Any = None,
        provider: str | None = None,
        json_schema_mode: Literal["json_schema", "json_object"] = "json_schema",
        stream_usage: bool = True,
        null_tool_call_content: bool = True,
    ) -> None:
        super().__init__(model, settings=settings)
        key = reveal(api_key) or os.environ.get("OPENAI_API_KEY")
        if key is None:
            if base_url is None:
                raise DefinitionError("OpenAICompatModel needs api_key= or $OPENAI_API_KEY to reach api.openai.com")
        # A local server needs no key: the SDK still wants one, and a placeholder is no
        # secret (as a Secret its words would be masked everywhere they appear).
        self._api_key: Secret | None = None if key is None else Secret(key, name="openai_api_key")
        self.base_url = base_url
        self.timeout = float(timeout)
        self.use_completions = use_completions
        self._headers = dict(default_headers or {})
        self._http_client = http_client
        if provider is not None:
            self.provider = provider
        self._clients: dict[int, openai.AsyncOpenAI] = {}
        if json_schema_mode not in ("json_schema", "json_object"):
            raise DefinitionError(f"json_schema_mode must be 'json_schema' or 'json_object', got {json_schema_mode!r}")
        self.json_schema_mode = json_schema_mode
        self.stream_usage = stream_usage
        self.null_tool_call_content = null_tool_call_content

    def _client(self) -> openai.AsyncOpenAI:
        # An HTTP connection pool belongs to one event loop; keep one client per loop.
        loop_id = id(asyncio.get_running_loop())
        client = self._clients.get(loop_id)
        if client is None:
            client = openai.AsyncOpenAI(
                api_key=self._api_key.reveal() if self._api_key is not None else "not-needed",
                base_url=self.base_url,
                timeout=self.timeout,
                max_retries=0,
                default_headers=self._headers or None,
                http_client=self._http_client,
            )
            self._clients = {loop_id: client}
        return client

    async def aclose(self) -> None:
        """Close the HTTP connections of the current event loop's client."""
        clients, self._clients = self._clients, {}
        for client in clients.values():
            await client.close()

    async def request(self, request: ModelRequest) -> ModelResult:
        """Send a chat (or, with ``use_completions``, a completion) request."""
        settings = self._settings(request)
        completion, params = self._call(request, settings)
        started = time.perf_counter()
        try:
            if completion:
                response: Any = await self._client().completions.create(**params)
            else:
                response = await self._client().chat.completions.create(**params)
        except (openai.OpenAIError, ValueError) as exc:
            raise self._map_error(exc) from exc
        latency = time.perf_counter() - started
        return self._result(response, latency, settings, chat=not completion)

    async def stream(self, request: ModelRequest) -> AsyncIterator[StreamChunk]:
        """Stream the answer (server-sent events); the last chunk holds the complete result.

        Usage is asked for in the stream (``stream_options.include_usage``); a server that
        does not send it leaves the result's usage at 0. Closing the iterator closes the
        HTTP response.
        """
        settings = self._settings(request)
        completion, params = self._call(request, settings)
        params["stream"] = True
        if self.stream_usage:
            params["stream_options"] = {"include_usage": True}
        started = time.perf_counter()
        text: list[str] = []
        calls: dict[int, dict[str, str]] = {}
        reason: str | None = None
        usage = Usage()
        served: str | None = None
        fingerprint: str | None = None
        try:
            if completion:
                response: Any = await self._client().completions.create(**params)
            else:
                response = await self._client().chat.completions.create(**params)
            async with response:
                async for event in response:
                    served = getattr(event, "model", None) or served
                    fingerprint = getattr(event, "system_fingerprint", None) or fingerprint
                    reported = getattr(event, "usage", None)
                    if reported is not None:
                        usage = Usage(
                            int(getattr(reported, "prompt_tokens", 0) or 0),
                            int(getattr(reported, "completion_tokens", 0) or 0),
                        )
                    for choice in getattr(event, "choices", None) or ():
                        reason = getattr(choice, "finish_reason", None) or reason
                        piece = choice.text if completion else _delta(choice.delta, calls)
                        if piece:
                            text.append(piece)
                            yield StreamChunk(piece)
        except (openai.OpenAIError, ValueError, httpx2.HTTPError) as exc:
            raise self._map_error(exc) from exc
        except (AttributeError, TypeError) as exc:
            raise ServerError(f"{self.model_id}: malformed stream: {exc}", model=self.model_id) from exc
        if reason == "content_filter":
            raise ContentFilteredError(f"{self.model_id}: the answer was filtered", model=self.model_id)
        whole = "".join(text)
        result = ModelResult(
            text=whole,
            model=self.model_id,
            usage=usage,
            latency_s=time.perf_counter() - started,
            version=served if not fingerprint else f"{served}+{fingerprint}",
            provider=self.provider,
            finish_reason=_FINISH.get(reason or "", "other") if reason else None,
            data=_json_data(whole, settings),
            tool_calls=tuple(
                ToolUse(call["id"], call["name"], parse_arguments(call["arguments"]))
                for _, call in sorted(calls.items())
            ),
        )
        yield StreamChunk("", result)

    async def embed(self, texts: Sequence[str]) -> EmbeddingResult:
        """Embed with the server's ``/embeddings`` endpoint."""
        started = time.perf_counter()
        try:
            response: Any = await self._client().embeddings.create(model=self.model_id, input=list(texts))
        except (openai.OpenAIError, ValueError) as exc:
            raise self._map_error(exc) from exc
        try:
            vectors = [list(map(float, item.embedding)) for item in sorted(response.data, key=lambda d: d.index)]
            usage = Usage(int(getattr(response.usage, "prompt_tokens", 0) or 0), 0)
        except (AttributeError, TypeError, ValueError) as exc:
            raise ServerError(f"{self.model_id}: malformed embeddings response: {exc}", model=self.model_id) from exc
        return EmbeddingResult(
            vectors, self.model_id, usage, time.perf_counter() - started, getattr(response, "model", None)
        )

    # internals ------------------------------------------------------------------------
    def _call(self, request: ModelRequest, settings: ModelSettings) -> tuple[bool, dict[str, Any]]:
        """Whether it goes to ``/completions``, and the SDK call's keyword arguments."""
        params = self._params(settings)
        params["model"] = self.model_id
        if request.kind == "generate" and self.use_completions:
            params["prompt"] = request.prompt
            return True, params
        params["messages"] = (
            [_wire_message(m.to_dict(), null_content=self.null_tool_call_content) for m in request.messages]
            if request.kind == "chat"
            else [{"role": "user", "content": request.prompt}]
        )
        if request.tools:
            params["tools"] = [openai_tool(spec) for spec in request.tools]
        if settings.json_schema is not None and self.json_schema_mode == "json_object":
            params["response_format"] = {"type": "json_object", "schema": dict(settings.json_schema)}
        elif settings.json_schema is not None:
            params["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": "output", "schema": dict(settings.json_schema)},
            }
        elif settings.json_mode:
            params["response_format"] = {"type": "json_object"}
        return False, params

    def _params(self, settings: ModelSettings) -> dict[str, Any]:
        params: dict[str, Any] = {}
        if settings.max_tokens is not None:
            params["max_tokens"] = settings.max_tokens
        if settings.temperature is not None:
            params["temperature"] = settings.temperature
        if settings.stop:
            params["stop"] = list(settings.stop)
        if settings.seed is not None:
            params["seed"] = settings.seed
        if settings.extra:
            params["extra_body"] = dict(settings.extra)
        return params

    def _result(self, response: Any, latency: float, settings: ModelSettings, *, chat: bool) -> ModelResult:
        try:
            choice = response.choices[0]
            text = choice.message.content if chat else choice.text
            calls = (
                tuple(_tool_use(call) for call in (getattr(choice.message, "tool_calls", None) or ())) if chat else ()
            )
            reason = getattr(choice, "finish_reason", None)
            usage = getattr(response, "usage", None)
            tokens = Usage(
                int(getattr(usage, "prompt_tokens", 0) or 0),
                int(getattr(usage, "completion_tokens", 0) or 0),
            )
        except (AttributeError, IndexError, TypeError, ValueError) as exc:
            raise ServerError(f"{self.model_id}: malformed response: {exc}", model=self.model_id) from exc
        if reason == "content_filter":
            raise ContentFilteredError(f"{self.model_id}: the answer was filtered", model=self.model_id)
        text = text or ""
        data = _json_data(text, settings)
        fingerprint = getattr(response, "system_fingerprint", None)
        served = getattr(response, "model", None)
        version = served if not fingerprint else f"{served}+{fingerprint}"
        return ModelResult(
            text=text,
            model=self.model_id,
            usage=tokens,
            latency_s=latency,
            version=version,
            provider=self.provider,
            finish_reason=_FINISH.get(reason or "", "other") if reason else None,
            data=data,
            tool_calls=calls,
        )

    def _map_error(self, exc: Exception) -> ModelError:
        name = self.model_id
        if isinstance(exc, ModelError):
            return exc
        if isinstance(exc, openai.APITimeoutError):
            return ModelTimeoutError(f"{name}: no answer within {self.timeout:g}s", model=name)
        if isinstance(exc, openai.APIStatusError):
            code = getattr(exc, "code", None)
            return status_error(exc.status_code, _message(exc), model=name, headers=exc.response.headers, code=code)
        if isinstance(exc, openai.APIConnectionError):
            cause = exc.__cause__ or exc.__context__
            detail = f"{type(cause).__name__}: {cause}" if cause else str(exc)
            return ServerError(f"{name}: connection failed: {detail}", model=name)
        if isinstance(exc, httpx2.TimeoutException):
            return ModelTimeoutError(f"{name}: no answer within {self.timeout:g}s", model=name)
        if isinstance(exc, httpx2.HTTPError):
            return ServerError(f"{name}: the stream broke: {type(exc).__name__}: {exc}", model=name)
        if isinstance(exc, openai.ContentFilterFinishReasonError):
            return ContentFilteredError(f"{name}: the answer was filtered", model=name)
        if isinstance(exc, openai.APIResponseValidationError | ValueError):
            return ServerError(f"{name}: malformed response: {exc}", model=name)
        return ServerError(f"{name}: {type(exc).__qualname__}: {exc}", model=name)


def _json_data(text: str, settings: ModelSettings) -> Any:
    if not (settings.json_mode or settings.json_schema is not None):
        return None
    try:
        return json.loads(text)
    except ValueError:
        return None  # validation reports it, with the text, if the caller validates


def _delta(delta: Any, calls: dict[int, dict[str, str]]) -> str:
    """A chat chunk's new text; its tool-call fragments are added to ``calls`` by index."""
    for fragment in getattr(delta, "tool_calls", None) or ():
        call = calls.setdefault(int(fragment.index), {"id": "", "name": "", "arguments": ""})
        if fragment.id:
            call["id"] = str(fragment.id)
        function = fragment.function
        if function is not None:
            call["name"] += function.name or ""
            call["arguments"] += function.arguments or ""
    return str(getattr(delta, "content", None) or "")


def _tool_use(call: Any) -> ToolUse:
    function = call.function
    return ToolUse(str(call.id), str(function.name), parse_arguments(function.arguments))


def _wire_message(data: dict[str, Any], *, null_content: bool) -> dict[str, Any]:
    # An assistant turn that only called tools has no text: the API wants null, not "";
    # llama-cpp-python's server refuses null and wants "".
    if data.get("tool_calls") and not data.get("content"):
        data["content"] = None if null_content else ""
    if data["role"] == "tool":
        data.pop("name", None)
    return data


def _message(exc: Any) -> str:
    body = getattr(exc, "body", None)
    if isinstance(body, Mapping):
        message = body.get("message")
        if isinstance(message, str):
            return message
    return str(getattr(exc, "message", exc))
