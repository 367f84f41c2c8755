"""Streaming inside a run: tokens to the caller as they come, the complete answer recorded once.

:func:`stream_step` is a durable step whose model call streams::

    @workflow(name="draft", version="1")
    async def draft(ctx: RunContext, topic: str) -> str:
        result = await stream_step(ctx, model, f"Draft a reply about {topic}", key="draft", on_text=send_to_user)
        return result.text

While the step runs, each piece of text goes to ``on_text`` at once, and the run's history
gets ``model_stream`` events (the dashboard's live view of the run shows them). When the
stream ends, the complete :class:`~orchestrate.models.base.ModelResult` is the step's
output, written once like any step's; a resumed run returns it from the store without
calling the model or ``on_text`` again.

**Events are coalesced.** A store row per token would cost a write per token; the step
writes one event per :attr:`StreamEvents.min_chars` characters or
:attr:`StreamEvents.min_seconds` seconds, whichever comes first, plus a last one (``done``)
with the usage. An attempt that dies mid-stream leaves its events in the history; the
retry's events carry its own ``attempt`` number. The step's recorded output is the
answer; the events are a live view.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from orchestrate.errors import DefinitionError
from orchestrate.models.base import MessageLike, Model, ModelRequest, ModelResult, ModelSettings, ToolUse, Usage
from orchestrate.models.streaming import stream
from orchestrate.store.base import Event, EventKind

if TYPE_CHECKING:
    from orchestrate import RunContext, StepContext
    from orchestrate.store.base import Store

STREAM_EVENT = EventKind.MODEL_STREAM
"""The kind of the run-history events a streaming step writes (``model_stream``)."""

TextHandler = Callable[[str], "Awaitable[None] | None"]
"""Receives each piece of streamed text (sync or async)."""


@dataclass(frozen=True)
class StreamEvents:
    """How streamed text is coalesced into run-history events.

    Args:
        min_chars: write an event once this many characters are pending.
        min_seconds: or once the oldest pending character is this old.
    """

    min_chars: int = 400
    min_seconds: float = 0.5

    def __post_init__(self) -> None:
        if isinstance(self.min_chars, bool) or not isinstance(self.min_chars, int) or self.min_chars < 1:
            raise DefinitionError(f"StreamEvents.min_chars must be an int >= 1, got {self.min_chars!r}")
        if not self.min_seconds >= 0:
            raise DefinitionError(f"StreamEvents.min_seconds must be >= 0, got {self.min_seconds!r}")

    def due(self, pending_chars: int, pending_for_s: float) -> bool:
        """Whether the pending text should be written now."""
        return pending_chars >= self.min_chars or (pending_chars > 0 and pending_for_s >= self.min_seconds)


class EventSink:
    """Coalesces text into ``model_stream`` events of one step attempt (made by :func:`sink_for`)."""

    def __init__(self, store: Store, clock: Any, step: StepContext, policy: StreamEvents) -> None:
        self.store, self.clock, self.step, self.policy = store, clock, step, policy
        self.pending: list[str] = []
        self.chars = 0
        self.since = 0.0
        self.seq = 0

    async def add(self, text: str) -> None:
        """Add streamed text; write an event when the policy says it is due."""
        if not self.pending:
            self.since = time.monotonic()
        self.pending.append(text)
        self.chars += len(text)
        if self.policy.due(self.chars, time.monotonic() - self.since):
            await self.flush(done=False)

    async def flush(self, *, done: bool, extra: dict[str, Any] | None = None) -> None:
        """Write the pending text as one event (the last one when ``done``), with ``extra`` data."""
        if not self.pending and not done:
            return
        self.seq += 1
        data = {"text": "".join(self.pending), "seq": self.seq, "done": done, "attempt": self.step.attempt}
        self.pending, self.chars = [], 0
        event = Event(
            run_id=self.step.run_id,
            kind=STREAM_EVENT,
            at=self.clock.now(),
            step_key=self.step.step_key,
            data={**data, **(extra or {})},
        )
        await self.store.append_event(event)


async def stream_into(
    model: Model,
    request: ModelRequest,
    *,
    on_text: TextHandler | None,
    sink: EventSink | None,
    first_token_timeout: float | None,
    idle_timeout: float | None,
) -> ModelResult:
    """Stream ``request``, handing each piece to ``on_text`` and ``sink``; the complete result."""
    async for chunk in stream(model, request, first_token_timeout=first_token_timeout, idle_timeout=idle_timeout):
        if chunk.text:
            if on_text is not None:
                outcome = on_text(chunk.text)
                if inspect.isawaitable(outcome):
                    await outcome
            if sink is not None:
                await sink.add(chunk.text)
        if chunk.result is not None:
            if sink is not None:
                usage = chunk.result.usage
                await sink.flush(done=True, extra={"usage": [usage.input_tokens, usage.output_tokens]})
            return chunk.result
    raise AssertionError("unreachable: stream() ends with a result or raises")  # pragma: no cover


def sink_for(run: RunContext, step: StepContext | None, events: StreamEvents | None) -> EventSink | None:
    """The event sink of a step attempt, or ``None`` when events are off."""
    if events is None or step is None:
        return None
    return EventSink(run.engine.store, run.engine.clock, step, events)


async def stream_step(
    ctx: RunContext,
    model: Model,
    messages: MessageLike | Iterable[MessageLike] | ModelRequest,
    *,
    key: str,
    on_text: TextHandler | None = None,
    settings: ModelSettings | None = None,
    first_token_timeout: float | None = None,
    idle_timeout: float | None = None,
    events: StreamEvents | None = StreamEvents(),
    **policy: Any,
) -> ModelResult:
    """A durable step that streams a model's answer and records the complete result once.

    Args:
        ctx: the run's context.
        model: the model to call.
        messages: a chat (a string is one user message), or a built :class:`ModelRequest`.
        key: the step's key in the run.
        on_text: receives each piece of text as it arrives (not called on a replay).
        settings: generation settings (for a chat given as messages).
        first_token_timeout: seconds until the first token
            (:class:`~orchestrate.models.streaming.FirstTokenTimeoutError`).
        idle_timeout: seconds between tokens
            (:class:`~orchestrate.models.streaming.StreamStalledError`).
        events: how text is coalesced into ``model_stream`` events; ``None`` writes none.
        **policy: the step's policy (``retry=``, ``timeout=``...), as for ``ctx.step``.

    Returns:
        the complete answer, as recorded.
    """
    request = messages if isinstance(messages, ModelRequest) else ModelRequest.chat(messages, settings)
    run = ctx

    async def streamed(ctx: StepContext | None = None) -> dict[str, Any]:  # the engine hands ``ctx`` by name
        result = await stream_into(
            model,
            request,
            on_text=on_text,
            sink=sink_for(run, ctx, events),
            first_token_timeout=first_token_timeout,
            idle_timeout=idle_timeout,
        )
        return result_record(result)

    recorded = await ctx.step(streamed, key=key, name=f"stream:{key}", **policy)
    return result_from_record(recorded)


def result_record(result: ModelResult) -> dict[str, Any]:
    """A model result as a step records it (JSON)."""
    return {
        "text": result.text,
        "model": result.model,
        "usage": [result.usage.input_tokens, result.usage.output_tokens],
        "latency_s": result.latency_s,
        "version": result.version,
        "provider": result.provider,
        "finish_reason": result.finish_reason,
        "cost": result.cost,
        "tool_calls": [call.to_dict() for call in result.tool_calls],
    }


def result_from_record(record: dict[str, Any]) -> ModelResult:
    """The model result a step recorded with :func:`result_record`."""
    return ModelResult(
        text=str(record["text"]),
        model=str(record["model"]),
        usage=Usage(*record["usage"]),
        latency_s=float(record["latency_s"]),
        version=record.get("version"),
        provider=record.get("provider"),
        finish_reason=record.get("finish_reason"),
        cost=record.get("cost"),
        tool_calls=tuple(ToolUse(str(c["id"]), str(c["name"]), c["arguments"]) for c in record["tool_calls"]),
    )
