"""The model protocol, its request and result records, and the bases to build models on.

A *model* is anything that answers :class:`ModelRequest` s: a provider (OpenAI-compatible,
Anthropic, Ollama, an embedded llama.cpp), or a wrapper that adds a policy around another
model (failover, circuit breaker, rate limit, hedging, cache, validation, accounting).
Wrappers and providers share one protocol, so they stack::

    model = FailoverModel([
        CircuitBreakerModel(OpenAICompatModel("gpt-4o"), CircuitBreaker(...)),
        LlamaCppModel(),
    ])
    result = await model.chat([Message.user("Where is my order?")])
    result.text, result.usage.input_tokens, result.latency_s, result.model

Models know nothing about runs, steps or stores: the engine wraps a model call in a step
(timeout, retry, fallback, checkpoint), never the other way round. Errors are always
:class:`~orchestrate.errors.ModelError` subclasses, so the engine's policies can act on
them (``retry_after`` is honoured by :class:`~orchestrate.policies.Retry`).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

from orchestrate.errors import BadRequestError
from orchestrate.observe._dispatch import process_dispatch
from orchestrate.observe.correlation import RUN, STEP, step_of

if TYPE_CHECKING:
    from orchestrate.models.streaming import StreamChunk

Role = Literal["system", "user", "assistant", "tool"]
RequestKind = Literal["chat", "generate"]


@dataclass(frozen=True)
class ToolSpec:
    """A tool as a model is told about it: a name, what it does, a JSON schema of its arguments.

    Args:
        name: the name the model calls it by.
        description: what it does.
        parameters: the JSON schema (an ``object``) of the arguments.
    """

    name: str
    description: str
    parameters: Mapping[str, Any]


@dataclass(frozen=True)
class ToolUse:
    """A tool call a model made through its provider's native tool calling.

    Args:
        id: the provider's id for the call (tool results refer to it).
        name: the tool's name.
        arguments: the arguments, parsed from JSON; the raw text when they did not parse.
    """

    id: str
    name: str
    arguments: Mapping[str, Any] | str

    def to_dict(self) -> dict[str, Any]:
        """``{"id", "name", "arguments"}``."""
        return {"id": self.id, "name": self.name, "arguments": self.arguments}


@dataclass(frozen=True)
class Message:
    """One message of a conversation.

    Args:
        role: ``system``, ``user``, ``assistant`` or ``tool``.
        content: the text.
        name: optional author name (a tool's name for ``tool`` messages).
        tool_calls: on an ``assistant`` message, the native tool calls it made.
        tool_call_id: on a ``tool`` message, the id of the call it answers.
    """

    role: Role
    content: str
    name: str | None = None
    tool_calls: tuple[ToolUse, ...] = ()
    tool_call_id: str | None = None

    @classmethod
    def system(cls, content: str) -> Message:
        """A system message."""
        return cls("system", content)

    @classmethod
    def user(cls, content: str) -> Message:
        """A user message."""
        return cls("user", content)

    @classmethod
    def assistant(cls, content: str, *, tool_calls: Iterable[ToolUse] = ()) -> Message:
        """An assistant message (with the native tool calls it made, if any)."""
        return cls("assistant", content, tool_calls=tuple(tool_calls))

    @classmethod
    def tool(cls, content: str, *, name: str, tool_call_id: str) -> Message:
        """The result of the native tool call ``tool_call_id`` of tool ``name``."""
        return cls("tool", content, name=name, tool_call_id=tool_call_id)

    def to_dict(self) -> dict[str, Any]:
        """The OpenAI-style ``{"role": ..., "content": ...}`` form (tool calls included)."""
        data: dict[str, Any] = {"role": self.role, "content": self.content}
        if self.name is not None:
            data["name"] = self.name
        if self.tool_calls:
            data["tool_calls"] = [
                {
                    "id": call.id,
                    "type": "function",
                    "function": {"name": call.name, "arguments": _arguments_text(call.arguments)},
                }
                for call in self.tool_calls
            ]
        if self.tool_call_id is not None:
            data["tool_call_id"] = self.tool_call_id
        return data


def _arguments_text(arguments: Mapping[str, Any] | str) -> str:
    return arguments if isinstance(arguments, str) else json.dumps(arguments, default=str)


MessageLike = Message | Mapping[str, Any] | str


def to_messages(messages: MessageLike | Iterable[MessageLike]) -> tuple[Message, ...]:
    """Normalise a string, a dict, a :class:`Message` or a sequence of them.

    A bare string is one user message; dicts need ``role`` and ``content``.

    Raises:
        BadRequestError: a message is malformed.
    """
    items: Iterable[MessageLike] = [messages] if isinstance(messages, str | Message | Mapping) else messages
    out: list[Message] = []
    for item in items:
        if isinstance(item, Message):
            out.append(item)
        elif isinstance(item, str):
            out.append(Message.user(item))
        elif isinstance(item, Mapping):
            role, content = item.get("role"), item.get("content")
            if role not in ("system", "user", "assistant", "tool") or not isinstance(content, str):
                raise BadRequestError(f"a message needs a known role and text content, got {dict(item)!r}")
            name = item.get("name")
            call_id = item.get("tool_call_id")
            out.append(
                Message(
                    role,
                    content,
                    name if isinstance(name, str) else None,
                    tool_call_id=call_id if isinstance(call_id, str) else None,
                )
            )
        else:
            raise BadRequestError(f"not a message: {item!r}")
    if not out:
        raise BadRequestError("a chat request needs at least one message")
    return tuple(out)


@dataclass(frozen=True)
class ModelSettings:
    """Per-request generation settings; ``None`` leaves the provider's default.

    Args:
        max_tokens: most tokens to generate.
        temperature: sampling temperature.
        stop: sequences that end generation.
        json_mode: ask for a JSON object where the provider supports it.
        json_schema: ask for JSON matching this schema where the provider supports it
            (checked afterwards by :mod:`orchestrate.models.validation` either way).
        seed: sampling seed, where supported.
        extra: provider-specific parameters passed through unchanged.
    """

    max_tokens: int | None = None
    temperature: float | None = None
    stop: tuple[str, ...] | None = None
    json_mode: bool = False
    json_schema: Mapping[str, Any] | None = None
    seed: int | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    def merged(self, other: ModelSettings | None) -> ModelSettings:
        """These settings overridden by the fields ``other`` sets (non-default ones)."""
        if other is None:
            return self
        changes = {
            f.name: getattr(other, f.name)
            for f in dataclasses.fields(other)
            if getattr(other, f.name) != _DEFAULT_SETTINGS_VALUES[f.name]
        }
        return dataclasses.replace(self, **changes)


_DEFAULT_SETTINGS_VALUES: dict[str, Any] = {
    "max_tokens": None,
    "temperature": None,
    "stop": None,
    "json_mode": False,
    "json_schema": None,
    "seed": None,
    "extra": {},
}


@dataclass(frozen=True)
class ModelRequest:
    """What a model is asked: a chat (messages) or a raw completion (prompt).

    Wrappers may rewrite it (:meth:`with_messages`), e.g. to feed a validation error
    back to the model. ``tools`` are offered to providers with native tool calling
    (:attr:`Model.supports_tools`); the others never see them.
    """

    kind: RequestKind
    messages: tuple[Message, ...] = ()
    prompt: str = ""
    settings: ModelSettings = field(default_factory=ModelSettings)
    tools: tuple[ToolSpec, ...] = ()

    @classmethod
    def chat(
        cls,
        messages: MessageLike | Iterable[MessageLike],
        settings: ModelSettings | None = None,
        *,
        tools: Iterable[ToolSpec] = (),
    ) -> ModelRequest:
        """A chat request (offering ``tools`` to models with native tool calling)."""
        return cls("chat", to_messages(messages), "", settings or ModelSettings(), tuple(tools))

    @classmethod
    def generate(cls, prompt: str, settings: ModelSettings | None = None) -> ModelRequest:
        """A raw completion request (for base models and few-shot prompts)."""
        if not isinstance(prompt, str):
            raise BadRequestError(f"a prompt must be a string, got {type(prompt).__qualname__}")
        return cls("generate", (), prompt, settings or ModelSettings())

    def with_messages(self, extra: Sequence[Message]) -> ModelRequest:
        """This request continued by ``extra`` messages.

        A ``generate`` request is continued as text: each message's content is appended
        to the prompt on its own paragraph.
        """
        if self.kind == "chat":
            return dataclasses.replace(self, messages=self.messages + tuple(extra))
        tail = "".join(f"\n\n{m.content}" for m in extra)
        return dataclasses.replace(self, prompt=self.prompt + tail)

    def text(self) -> str:
        """All the text of the request (for hashing, estimating tokens, classifying)."""
        if self.kind == "generate":
            return self.prompt
        return "\n".join(m.content for m in self.messages)

    def last_user_text(self) -> str:
        """The prompt, or the content of the last user message (what routing looks at)."""
        if self.kind == "generate":
            return self.prompt
        for message in reversed(self.messages):
            if message.role == "user":
                return message.content
        return self.messages[-1].content if self.messages else ""


@dataclass(frozen=True)
class Usage:
    """Tokens consumed by one call (or summed over several)."""

    input_tokens: int = 0
    output_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        """Input plus output tokens."""
        return self.input_tokens + self.output_tokens

    def __add__(self, other: Usage) -> Usage:
        return Usage(self.input_tokens + other.input_tokens, self.output_tokens + other.output_tokens)


FinishReason = Literal["stop", "length", "content_filter", "tool_calls", "other"]


@dataclass(frozen=True)
class ModelResult:
    """A model's answer.

    It serialises to JSON as a plain object, so a step may return it as is.

    Attributes:
        text: the generated text.
        model: id of the model that answered (after routing and failover, the one that
            actually served the call).
        usage: tokens in and out.
        latency_s: seconds from the request to the answer, as measured by the model
            layer (a cache hit has ~0).
        version: the model version the provider reports (e.g. a dated snapshot name or a
            GGUF file name), when it reports one.
        provider: ``openai``, ``anthropic``, ``ollama``, ``llama_cpp``, ``fake``...
        finish_reason: why generation stopped.
        data: the structured output, once parsed and validated (see
            :mod:`orchestrate.models.validation`).
        cost: the call's cost from the price table, once accounted (see
            :mod:`orchestrate.models.router`).
        meta: what the wrappers did: ``cache``, ``route``, ``failover``, ``hedged``,
            ``validation_attempts``...
        tool_calls: the tools the model called natively (``finish_reason`` is then
            ``tool_calls``), in the order it called them.
    """

    text: str
    model: str
    usage: Usage = field(default_factory=Usage)
    latency_s: float = 0.0
    version: str | None = None
    provider: str | None = None
    finish_reason: FinishReason | None = None
    data: Any = None
    cost: float | None = None
    meta: Mapping[str, Any] = field(default_factory=dict)
    tool_calls: tuple[ToolUse, ...] = ()

    def replace(self, **changes: Any) -> ModelResult:
        """A copy with some fields changed."""
        return dataclasses.replace(self, **changes)

    def with_meta(self, **meta: Any) -> ModelResult:
        """A copy with ``meta`` entries added (or replaced)."""
        return dataclasses.replace(self, meta={**self.meta, **meta})


@dataclass(frozen=True)
class EmbeddingResult:
    """Vectors for a batch of texts, in input order."""

    vectors: list[list[float]]
    model: str
    usage: Usage = field(default_factory=Usage)
    latency_s: float = 0.0
    version: str | None = None


@runtime_checkable
class Model(Protocol):
    """What every model and model wrapper provides.

    Implement :meth:`request` (and :meth:`embed` if the model embeds) by subclassing
    :class:`BaseProvider` or :class:`WrapperModel`; :meth:`chat` and :meth:`generate`
    come with them.
    """

    @property
    def model_id(self) -> str:
        """The model's name as its provider knows it (``gpt-4o-mini``, ``gemma-3-270m``)."""
        ...

    async def request(self, request: ModelRequest) -> ModelResult:
        """Answer a chat or generate request."""
        ...

    async def chat(
        self,
        messages: MessageLike | Iterable[MessageLike],
        *,
        settings: ModelSettings | None = None,
        tools: Iterable[ToolSpec] = (),
    ) -> ModelResult:
        """Answer a conversation."""
        ...

    async def generate(self, prompt: str, *, settings: ModelSettings | None = None) -> ModelResult:
        """Continue a raw prompt (base models, few-shot prompts)."""
        ...

    async def embed(self, texts: Sequence[str]) -> EmbeddingResult:
        """Embed texts; models that cannot raise :class:`~orchestrate.errors.BadRequestError`."""
        ...


class _ModelAPI:
    """``chat`` and ``generate`` in terms of ``request``; shared by providers and wrappers."""

    @property
    def model_id(self) -> str:
        raise NotImplementedError

    @property
    def supports_tools(self) -> bool:
        """Whether it calls tools natively (``False`` unless a provider says so)."""
        return False

    async def request(self, request: ModelRequest) -> ModelResult:
        """Answer a chat or generate request (what each provider or wrapper implements)."""
        raise NotImplementedError

    async def chat(
        self,
        messages: MessageLike | Iterable[MessageLike],
        *,
        settings: ModelSettings | None = None,
        tools: Iterable[ToolSpec] = (),
    ) -> ModelResult:
        """Answer a conversation (a string is one user message), offering ``tools``."""
        return await _observed(self, ModelRequest.chat(messages, settings, tools=tools))

    async def generate(self, prompt: str, *, settings: ModelSettings | None = None) -> ModelResult:
        """Continue a raw prompt."""
        return await _observed(self, ModelRequest.generate(prompt, settings))

    async def stream(self, request: ModelRequest) -> AsyncIterator[StreamChunk]:
        """Answer ``request`` chunk by chunk; the last chunk carries the complete result.

        Providers stream from their wire format; anything else (a wrapper, whose policy
        needs the whole answer) answers in one chunk through :meth:`request`. Use
        :func:`orchestrate.models.streaming.stream` for timeouts and observers.
        """
        from orchestrate.models.streaming import StreamChunk

        result = await self.request(request)
        yield StreamChunk(result.text, result)

    async def embed(self, texts: Sequence[str]) -> EmbeddingResult:
        """Embed texts (unsupported unless overridden)."""
        raise BadRequestError(f"model {self.model_id!r} does not provide embeddings", model=self.model_id)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.model_id!r})"


_OPERATIONS = {"chat": "chat", "generate": "text_completion"}  # OpenTelemetry's gen_ai.operation.name


def supports_tools(model: Model) -> bool:
    """Whether ``model`` calls tools natively (a model that does not say so does not)."""
    return bool(getattr(model, "supports_tools", False))


async def observed_request(model: Model, request: ModelRequest) -> ModelResult:
    """``model.request(request)`` reported to the observers as a call a user made.

    For callers that build their own :class:`ModelRequest` (an agent offering tools).
    """
    return await _observed(model, request)


async def _observed(model: Model, request: ModelRequest) -> ModelResult:
    """``model.request(request)``, reported to the observers (``model_called``) if there are any.

    The call a user makes (``chat``, ``generate``) is reported once, after its wrappers:
    they call ``request`` on the models they wrap, which reports nothing.
    """
    run = RUN.get()
    hooks = run.hooks if run is not None else process_dispatch()
    if hooks is None:
        return await model.request(request)
    started = time.perf_counter()
    try:
        result = await model.request(request)
    except Exception as exc:
        _report(hooks, run, model.model_id, request, None, time.perf_counter() - started, exc)
        raise
    _report(hooks, run, model.model_id, request, result, time.perf_counter() - started, None)
    return result


def report_call(
    model: Model, request: ModelRequest, result: ModelResult | None, latency_s: float, error: BaseException | None
) -> None:
    """Report one model call a user made to the observers (``model_called``), if there are any.

    For calls that do not go through :meth:`chat`/:meth:`generate` (a stream reports
    once its result is complete).
    """
    run = RUN.get()
    hooks = run.hooks if run is not None else process_dispatch()
    if hooks is not None:
        _report(hooks, run, model.model_id, request, result, latency_s, error)


def _report(
    hooks: Any,
    run: Any,
    requested: str,
    request: ModelRequest,
    result: ModelResult | None,
    latency_s: float,
    error: BaseException | None,
) -> None:
    step, _ = step_of(STEP.get())
    usage = result.usage if result is not None else Usage()
    hooks.emit(
        "model_called",
        model=result.model if result is not None else requested,
        requested_model=requested,
        provider=result.provider if result is not None else None,
        operation=_OPERATIONS[request.kind],
        input_tokens=usage.input_tokens,
        output_tokens=usage.output_tokens,
        cost=result.cost if result is not None else None,
        latency_s=latency_s,
        error_class=type(error).__qualname__ if error is not None else None,
        error=error,
        version=result.version if result is not None else None,
        finish_reason=result.finish_reason if result is not None else None,
        cached=bool(result.meta.get("cache")) if result is not None else False,
        request=request,
        result=result,
        workflow=run.workflow if run is not None else None,
        run_id=run.run_id if run is not None else None,
        step=step,
        at=time.time(),
    )


class BaseProvider(_ModelAPI):
    """Subclass this for a new provider: set ``model_id``, implement :meth:`request`.

    Args:
        model: the model's name at the provider.
        settings: defaults merged under each request's own settings.
    """

    provider: str = "custom"

    def __init__(self, model: str, *, settings: ModelSettings | None = None) -> None:
        if not isinstance(model, str) or not model:
            raise BadRequestError(f"a model name is required, got {model!r}")
        self._model = model
        self.settings = settings or ModelSettings()

    @property
    def model_id(self) -> str:
        """The model's name at the provider."""
        return self._model

    def _settings(self, request: ModelRequest) -> ModelSettings:
        return self.settings.merged(request.settings)


class WrapperModel(_ModelAPI):
    """A model that forwards to another one; subclass it to add a policy.

    Override :meth:`request` (and :meth:`embed` if the policy applies to embeddings too).

    Args:
        wrapped: the model called underneath.
    """

    def __init__(self, wrapped: Model) -> None:
        self.wrapped = wrapped

    @property
    def model_id(self) -> str:
        """The wrapped model's id."""
        return self.wrapped.model_id

    @property
    def supports_tools(self) -> bool:
        """Whether the wrapped model calls tools natively."""
        return supports_tools(self.wrapped)

    async def request(self, request: ModelRequest) -> ModelResult:
        """Forward to the wrapped model."""
        return await self.wrapped.request(request)

    async def embed(self, texts: Sequence[str]) -> EmbeddingResult:
        """Forward to the wrapped model."""
        return await self.wrapped.embed(texts)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.wrapped!r})"


class Clock(Protocol):
    """Monotonic time for the reliability policies; a fake one drives them in tests."""

    def now(self) -> float:
        """Seconds on a monotonic scale."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Sleep ``seconds`` of this clock's time."""
        ...


class MonotonicClock:
    """The real clock: ``time.monotonic`` and ``asyncio.sleep``."""

    def now(self) -> float:
        """``time.monotonic()``."""
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        """``asyncio.sleep``."""
        await asyncio.sleep(max(seconds, 0.0))


def estimate_tokens(text: str) -> int:
    """A provider-independent estimate of a text's token count (about 4 characters a token)."""
    return max(1, (len(text) + 3) // 4) if text else 0
