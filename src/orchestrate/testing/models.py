"""Test doubles for models: scripted answers, failures and latencies, with no network.

:class:`FakeModel` plays a script, one item per call::

    model = FakeModel([
        RateLimited(retry_after=2),          # a 429 with Retry-After: 2
        TimedOut(),                          # the provider timed out
        Reply("<xml>not json</xml>"),        # garbage
        '{"intent": "refund"}',              # a plain string is a reply
        Duplicate(),                         # the previous answer again
    ])

:class:`FunctionModel` answers with a function of the request. :class:`FakeEmbedder`
gives deterministic bag-of-words vectors, so similar texts are close.
Drive latencies and the reliability policies with
``orchestrate.testing.FakeClock(auto_advance=True)``: time jumps to the next timer as soon
as every task waits, so a test checks counts per window of virtual time, not wall time.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import math
import re
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from orchestrate.errors import (
    BadRequestError,
    ModelTimeoutError,
    RateLimitedError,
    ServerError,
)
from orchestrate.models.base import (
    Clock,
    EmbeddingResult,
    FinishReason,
    ModelRequest,
    ModelResult,
    MonotonicClock,
    Usage,
    _ModelAPI,
    estimate_tokens,
)

__all__ = [
    "Duplicate",
    "FakeEmbedder",
    "FakeModel",
    "FakeModelExhaustedError",
    "Fail",
    "FunctionModel",
    "RateLimited",
    "Reply",
    "ServerFailure",
    "TimedOut",
    "call_counts_per_window",
]


class FakeModelExhaustedError(AssertionError):
    """A :class:`FakeModel` was called more times than its script has items."""


@dataclass(frozen=True)
class Reply:
    """A scripted answer.

    Args:
        text: the answer (a dict or list is sent as its JSON text).
        latency: seconds the call takes (on the model's clock).
        usage: tokens reported; estimated from the texts when omitted.
        finish_reason: reported finish reason.
    """

    text: str | dict[str, Any] | list[Any]
    latency: float = 0.0
    usage: Usage | None = None
    finish_reason: FinishReason = "stop"

    def render(self) -> str:
        """The reply as text."""
        return self.text if isinstance(self.text, str) else json.dumps(self.text)


@dataclass(frozen=True)
class RateLimited:
    """A 429; ``retry_after`` is the Retry-After the provider sent (``None``: no header)."""

    retry_after: float | None = 1.0
    latency: float = 0.0


@dataclass(frozen=True)
class TimedOut:
    """The call hangs for ``latency`` seconds, then times out."""

    latency: float = 0.0


@dataclass(frozen=True)
class ServerFailure:
    """An HTTP 5xx (``status=None``: the connection dropped)."""

    status: int | None = 500
    latency: float = 0.0


@dataclass(frozen=True)
class Fail:
    """Raise this exact error (a bad request, a content filter, anything)."""

    error: BaseException
    latency: float = 0.0


@dataclass(frozen=True)
class Duplicate:
    """The previous answer again, unchanged (a replayed or duplicated response)."""

    latency: float = 0.0


ScriptItem = str | dict[str, Any] | Reply | RateLimited | TimedOut | ServerFailure | Fail | Duplicate


class _FakeBase(_ModelAPI):
    def __init__(self, model_id: str, clock: Clock | None, version: str | None) -> None:
        self._model_id = model_id
        self.clock: Clock = clock or MonotonicClock()
        self.version = version
        self.calls: list[ModelRequest] = []
        self.call_times: list[float] = []
        self.in_flight = 0
        self.max_in_flight = 0

    @property
    def model_id(self) -> str:
        """The fake's model id."""
        return self._model_id

    def _started(self, request: ModelRequest) -> float:
        now = self.clock.now()
        self.calls.append(request)
        self.call_times.append(now)
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        return now

    def _result(
        self, request: ModelRequest, text: str, started: float, usage: Usage | None, reason: FinishReason
    ) -> ModelResult:
        tokens = usage or Usage(estimate_tokens(request.text()), estimate_tokens(text))
        data = None
        if request.settings.json_mode or request.settings.json_schema is not None:
            try:
                data = json.loads(text)
            except ValueError:
                data = None
        return ModelResult(
            text=text,
            model=self.model_id,
            usage=tokens,
            latency_s=self.clock.now() - started,
            version=self.version,
            provider="fake",
            finish_reason=reason,
            data=data,
        )


class FakeModel(_FakeBase):
    """A model that plays a script of replies and failures, one item per call.

    Args:
        script: the items; a string or dict is a :class:`Reply`.
        model_id: the id it reports.
        repeat_last: keep answering with the last item once the script is played
            (otherwise an extra call raises :class:`FakeModelExhaustedError`).
        clock: where latencies are spent (a ``FakeClock`` in unit tests).
        embed_dim: dimension of :meth:`embed` vectors (see :class:`FakeEmbedder`).

    Attributes:
        calls: every request received, in order.
        call_times: the clock's time at each call's start.
        max_in_flight: the most calls that were running at once.
    """

    def __init__(
        self,
        script: Iterable[ScriptItem] = (),
        *,
        model_id: str = "fake-model",
        repeat_last: bool = False,
        clock: Clock | None = None,
        version: str | None = "fake-1",
        embed_dim: int = 64,
    ) -> None:
        super().__init__(model_id, clock, version)
        self.script: list[ScriptItem] = list(script)
        self.repeat_last = repeat_last
        self._position = 0
        self._previous: ModelResult | None = None
        self._embedder = FakeEmbedder(dim=embed_dim, model_id=model_id)

    def add(self, *items: ScriptItem) -> FakeModel:
        """Append items to the script; returns the model."""
        self.script.extend(items)
        return self

    @property
    def remaining(self) -> int:
        """Script items not played yet."""
        return len(self.script) - self._position

    def _next(self) -> ScriptItem:
        if self._position < len(self.script):
            item = self.script[self._position]
            self._position += 1
            return item
        if self.repeat_last and self.script:
            return self.script[-1]
        raise FakeModelExhaustedError(
            f"FakeModel {self.model_id!r} was called {len(self.calls)} times; its script has {len(self.script)} items"
        )

    async def request(self, request: ModelRequest) -> ModelResult:
        """Play the next script item."""
        started = self._started(request)
        try:
            item = self._next()
            if isinstance(item, str | dict):
                item = Reply(item)
            latency = getattr(item, "latency", 0.0)
            if latency:
                await self.clock.sleep(latency)
            name = self.model_id
            if isinstance(item, Reply):
                result = self._result(request, item.render(), started, item.usage, item.finish_reason)
                self._previous = result
                return result
            if isinstance(item, Duplicate):
                if self._previous is None:
                    raise FakeModelExhaustedError("Duplicate() needs an earlier reply to repeat")
                return self._previous
            if isinstance(item, RateLimited):
                raise RateLimitedError(
                    f"{name}: HTTP 429: rate limited", model=name, status_code=429, retry_after=item.retry_after
                )
            if isinstance(item, TimedOut):
                raise ModelTimeoutError(f"{name}: no answer in time", model=name)
            if isinstance(item, ServerFailure):
                if item.status is None:
                    raise ServerError(f"{name}: connection failed", model=name)
                raise ServerError(f"{name}: HTTP {item.status}: server error", model=name, status_code=item.status)
            assert isinstance(item, Fail)
            raise item.error
        finally:
            self.in_flight -= 1

    async def embed(self, texts: Sequence[str]) -> EmbeddingResult:
        """Deterministic bag-of-words vectors (see :class:`FakeEmbedder`)."""
        return await self._embedder.embed(texts)


Answer = str | ModelResult | dict[str, Any]


class FunctionModel(_FakeBase):
    """A model whose answer is ``fn(request)`` (sync or async; str, dict or ModelResult).

    The function may raise any :class:`~orchestrate.errors.ModelError` to script a failure.
    """

    def __init__(
        self,
        fn: Callable[[ModelRequest], Answer | Awaitable[Answer]],
        *,
        model_id: str = "function-model",
        clock: Clock | None = None,
        version: str | None = "function-1",
        embed_dim: int = 64,
    ) -> None:
        super().__init__(model_id, clock, version)
        self.fn = fn
        self._embedder = FakeEmbedder(dim=embed_dim, model_id=model_id)

    async def request(self, request: ModelRequest) -> ModelResult:
        """Call the function."""
        started = self._started(request)
        try:
            answer = self.fn(request)
            if inspect.isawaitable(answer):
                answer = await answer
            if isinstance(answer, ModelResult):
                return answer
            text = answer if isinstance(answer, str) else json.dumps(answer)
            return self._result(request, text, started, None, "stop")
        finally:
            self.in_flight -= 1

    async def embed(self, texts: Sequence[str]) -> EmbeddingResult:
        """Deterministic bag-of-words vectors."""
        return await self._embedder.embed(texts)


_WORD = re.compile(r"[a-z0-9']+")


class FakeEmbedder(_ModelAPI):
    """Deterministic embeddings: hashed bag of words, L2-normalised.

    Texts sharing words get a high cosine similarity; it needs no model and is stable
    across runs and machines.
    """

    def __init__(self, *, dim: int = 64, model_id: str = "fake-embedder") -> None:
        self.dim = dim
        self._model_id = model_id
        self.calls = 0

    @property
    def model_id(self) -> str:
        """The fake's id."""
        return self._model_id

    async def request(self, request: ModelRequest) -> ModelResult:
        """Embedders do not generate."""
        raise BadRequestError(f"{self.model_id} only embeds", model=self.model_id)

    def vector(self, text: str) -> list[float]:
        """The vector of one text."""
        vec = [0.0] * self.dim
        for word in _WORD.findall(text.lower()):
            digest = hashlib.sha256(word.encode()).digest()
            index = int.from_bytes(digest[:4], "big") % self.dim
            vec[index] += 1.0 if digest[4] % 2 else -1.0
        norm = math.sqrt(sum(v * v for v in vec)) or 1.0
        return [v / norm for v in vec]

    async def embed(self, texts: Sequence[str]) -> EmbeddingResult:
        """Vectors for ``texts``."""
        self.calls += 1
        return EmbeddingResult(
            [self.vector(t) for t in texts], self.model_id, Usage(sum(estimate_tokens(t) for t in texts), 0)
        )


def call_counts_per_window(times: Sequence[float], window: float) -> list[int]:
    """How many of ``times`` fall in each sliding window of ``window`` seconds starting at a call.

    The maximum of this list is the most calls any window of that length saw.
    """
    ordered = sorted(times)
    counts: list[int] = []
    j = 0
    for i, start in enumerate(ordered):
        while j < len(ordered) and ordered[j] < start + window:
            j += 1
        counts.append(j - i)
    return counts
