"""Streaming: a model's text as it is generated, with timeouts on the first token and between tokens.

Every model streams: the providers (OpenAI-compatible, Anthropic, Ollama, llama.cpp in
process) from their wire format's event stream, any other model as one chunk holding its
whole answer. :func:`stream` adds the timeouts and reports the call to the observers
once, when the complete result is known::

    async for chunk in stream(model, ModelRequest.chat("Write a haiku"), first_token_timeout=10):
        print(chunk.text, end="")
        if chunk.result is not None:
            chunk.result.usage, chunk.result.finish_reason  # the complete answer

The last chunk carries the complete :class:`~orchestrate.models.base.ModelResult`
(text, native tool calls, usage, finish reason), the same one :meth:`request` returns.

**Cancellation stops the provider call.** Breaking out of the loop, cancelling the task
that iterates, or a timeout closes the iterator, and the provider's iterator closes its
HTTP response: the server sees the connection go and stops generating. Close it promptly
(``contextlib.aclosing``) when leaving a loop early outside a task that ends.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass

from orchestrate.errors import DefinitionError, ModelTimeoutError, ServerError
from orchestrate.models.base import Model, ModelRequest, ModelResult, report_call


@dataclass(frozen=True)
class StreamChunk:
    """A piece of a streamed answer.

    Attributes:
        text: the text generated since the previous chunk (may be empty).
        result: on the last chunk only: the complete answer.
    """

    text: str = ""
    result: ModelResult | None = None

    @property
    def done(self) -> bool:
        """Whether this is the last chunk."""
        return self.result is not None


class FirstTokenTimeoutError(ModelTimeoutError):
    """A streamed call produced nothing within its ``first_token_timeout``."""


class StreamStalledError(ModelTimeoutError):
    """A streamed call went quiet for longer than its ``idle_timeout`` between two chunks."""


async def stream(
    model: Model,
    request: ModelRequest,
    *,
    first_token_timeout: float | None = None,
    idle_timeout: float | None = None,
) -> AsyncIterator[StreamChunk]:
    """Stream ``model``'s answer to ``request``, chunk by chunk; the last chunk holds the result.

    Args:
        model: any model; one without a ``stream`` method answers in one chunk.
        request: what to ask.
        first_token_timeout: seconds until the first chunk with text (or the result).
        idle_timeout: seconds between two chunks after the first.

    Raises:
        FirstTokenTimeoutError: nothing came within ``first_token_timeout``.
        StreamStalledError: a gap between chunks exceeded ``idle_timeout``.
        ModelError: whatever the provider raised (mapped as by ``request``).
    """
    for label, seconds in (("first_token_timeout", first_token_timeout), ("idle_timeout", idle_timeout)):
        if seconds is not None and not seconds > 0:
            raise DefinitionError(f"stream(): {label} must be > 0 seconds, got {seconds!r}")
    started = time.perf_counter()
    chunks = _chunks_of(model, request)
    got_text = False
    try:
        while True:
            limit = idle_timeout if got_text else first_token_timeout
            try:
                async with asyncio.timeout(limit):
                    chunk = await anext(chunks)
            except StopAsyncIteration:
                raise ServerError(
                    f"{model.model_id}: the stream ended without a result", model=model.model_id
                ) from None
            except TimeoutError as exc:
                if isinstance(exc, ModelTimeoutError):
                    raise
                if got_text:
                    raise StreamStalledError(
                        f"{model.model_id}: no token for {limit:g}s", model=model.model_id
                    ) from None
                raise FirstTokenTimeoutError(
                    f"{model.model_id}: no first token within {limit:g}s", model=model.model_id
                ) from None
            got_text = got_text or bool(chunk.text)
            if chunk.result is not None:
                report_call(model, request, chunk.result, time.perf_counter() - started, None)
                yield chunk
                return
            yield chunk
    except Exception as exc:
        report_call(model, request, None, time.perf_counter() - started, exc)
        raise
    finally:
        await chunks.aclose()


async def collect(chunks: AsyncIterator[StreamChunk]) -> ModelResult:
    """Drain a stream and return its complete result."""
    async for chunk in chunks:
        if chunk.result is not None:
            return chunk.result
    raise ServerError("the stream ended without a result")


def _chunks_of(model: Model, request: ModelRequest) -> AsyncGenerator[StreamChunk]:
    method = getattr(model, "stream", None)
    if callable(method):
        chunks: AsyncGenerator[StreamChunk] = method(request)
        return chunks
    return _one_chunk(model, request)


async def _one_chunk(model: Model, request: ModelRequest) -> AsyncGenerator[StreamChunk]:
    result = await model.request(request)
    yield StreamChunk(result.text, result)
