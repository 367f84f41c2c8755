"""Context that fits: a sliding-window summariser and a shared context buffer with expiry.

**Sliding window.** A long pipeline or a long agent run grows its conversation past what
the model takes (seed 001: "sliding-window summarisation keeps contexts under 4K tokens
for 10-step pipelines"). :class:`ContextWindow` keeps the system messages and the most
recent messages verbatim and replaces everything older with one summary written by a
model; the summary replaces the previous one, so the context stays bounded however
many steps run::

    window = ContextWindow(max_tokens=4_000, keep_last=4)
    fitted = await window.fit(messages, summariser=model, counter=model, ctx=ctx, key="summary:7")
    fitted.messages, fitted.tokens_before, fitted.tokens_after

Given ``ctx``, the summary is a durable step (a resumed run reuses it, never pays for it
twice). Tokens are counted with the model's own tokenizer where it is local
(:mod:`orchestrate.models.tokens`), estimated otherwise. An agent takes one with
``Agent(context_window=..., summariser=...)``.

**Shared buffer.** :class:`SharedContext` is where agents of a run (or of several runs)
leave facts for each other, each entry expiring after ``ttl_seconds`` (seed 003: "a
shared context buffer with expiration policies"). Entries live in the store, so they
survive restarts and are seen by every worker; reads and writes made with ``ctx`` are
steps, so a replayed run sees exactly what the original saw, expired or not.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from orchestrate.errors import DefinitionError
from orchestrate.models.base import Message, Model, ModelRequest, ModelSettings, observed_request
from orchestrate.models.tokens import message_tokens

if TYPE_CHECKING:
    from orchestrate import RunContext
    from orchestrate.store.base import Store

SUMMARY_PREFIX = "Summary of the earlier conversation: "
"""How a summary message starts (a later summary folds the earlier one in)."""

_INSTRUCTION = (
    "Summarise the conversation below for a colleague who carries on the work. Keep every fact, "
    "figure, name, identifier, decision and open question; drop pleasantries and repetition. "
    "Write at most {words} words of plain prose."
)


@dataclass(frozen=True)
class Fitted:
    """What :meth:`ContextWindow.fit` did.

    Attributes:
        messages: the messages to send.
        tokens_before: tokens of the messages it was given.
        tokens_after: tokens of :attr:`messages`.
        summarised: how many messages the summary replaced (0: none).
    """

    messages: tuple[Message, ...]
    tokens_before: int
    tokens_after: int
    summarised: int = 0


@dataclass(frozen=True)
class ContextWindow:
    """Keeps a conversation under ``max_tokens`` by summarising its older part.

    Args:
        max_tokens: most tokens the messages may take.
        keep_last: recent messages kept verbatim (fewer when they alone do not fit).
        summary_tokens: most tokens a summary may take.
        summary_settings: generation settings for the summary call.
    """

    max_tokens: int = 4_000
    keep_last: int = 4
    summary_tokens: int = 400
    summary_settings: ModelSettings = dataclasses.field(default_factory=lambda: ModelSettings(temperature=0.0))

    def __post_init__(self) -> None:
        for label in ("max_tokens", "keep_last", "summary_tokens"):
            value = getattr(self, label)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise DefinitionError(f"ContextWindow.{label} must be an int >= 1, got {value!r}")
        if self.summary_tokens >= self.max_tokens:
            raise DefinitionError(
                f"ContextWindow.summary_tokens ({self.summary_tokens}) must be under max_tokens ({self.max_tokens})"
            )

    def plan(self, messages: Sequence[Message], counter: Model | None) -> tuple[int, int] | None:
        """Which messages to summarise: ``(start, end)`` indexes, or ``None`` when they fit.

        The system messages at the head stay; of the rest, the last ``keep_last`` stay
        unless they alone leave no room for the summary, in which case fewer stay (at
        least one).
        """
        if message_tokens(counter, messages) <= self.max_tokens:
            return None
        start = 0
        while start < len(messages) and messages[start].role == "system":
            start += 1
        head = message_tokens(counter, messages[:start])
        keep = min(self.keep_last, len(messages) - start)
        while keep > 1 and head + self.summary_tokens + message_tokens(counter, messages[-keep:]) > self.max_tokens:
            keep -= 1
        end = len(messages) - keep
        # A native tool result must follow the assistant turn that called it: never cut between.
        while end > start and messages[end].role == "tool":
            end -= 1
        if end - start < 1:
            return None  # nothing old enough to summarise: the caller sends what it has
        return start, end

    async def fit(
        self,
        messages: Sequence[Message],
        *,
        summariser: Model,
        counter: Model | None = None,
        ctx: RunContext | None = None,
        key: str | None = None,
    ) -> Fitted:
        """The messages, their older part replaced by a summary when they exceed the window.

        Args:
            messages: the conversation.
            summariser: the model that writes the summary.
            counter: the model whose tokenizer counts (default: ``summariser``).
            ctx: the run's context: the summary call becomes the durable step ``key``.
            key: the step's key (required with ``ctx``).
        """
        counter = counter if counter is not None else summariser
        before = message_tokens(counter, messages)
        span = self.plan(messages, counter)
        if span is None:
            return Fitted(tuple(messages), before, before)
        start, end = span
        old = list(messages[start:end])
        if ctx is not None:
            if key is None:
                raise DefinitionError("ContextWindow.fit needs key= with ctx= (the summary's step key)")

            async def summarise() -> str:
                return await self._summarise(summariser, old)

            summary = await ctx.step(summarise, key=key, name="context:summary")
        else:
            summary = await self._summarise(summariser, old)
        fitted = (*messages[:start], Message.user(SUMMARY_PREFIX + summary), *messages[end:])
        return Fitted(fitted, before, message_tokens(counter, fitted), end - start)

    async def _summarise(self, model: Model, old: list[Message]) -> str:
        words = max(20, self.summary_tokens * 3 // 4)
        transcript = "\n".join(f"{m.role}: {m.content}" for m in old if m.content)
        settings = self.summary_settings.merged(ModelSettings(max_tokens=self.summary_tokens))
        request = ModelRequest.chat(
            [Message.system(_INSTRUCTION.format(words=words)), Message.user(transcript)], settings
        )
        result = await observed_request(model, request)
        return result.text.strip().removeprefix(SUMMARY_PREFIX)


@dataclass(frozen=True)
class SharedContext:
    """A buffer of facts shared between agents, each entry expiring ``ttl_seconds`` after it was written.

    Args:
        store: where entries live (the engine's store: ``ctx.engine.store``).
        namespace: the buffer's name; agents that share it see each other's entries.
        ttl_seconds: how long an entry stays readable after its last write.
        max_chars: entries longer than this are refused (a buffer that fits in a prompt).
    """

    store: Store
    namespace: str
    ttl_seconds: float = 3_600.0
    max_chars: int = 4_000

    def __post_init__(self) -> None:
        if not self.namespace or ":" in self.namespace:
            raise DefinitionError(f"SharedContext needs a namespace without ':', got {self.namespace!r}")
        if not self.ttl_seconds > 0:
            raise DefinitionError(f"SharedContext.ttl_seconds must be > 0, got {self.ttl_seconds!r}")

    @classmethod
    def of(cls, ctx: RunContext, namespace: str, **options: Any) -> SharedContext:
        """The buffer ``namespace`` in the store of ``ctx``'s engine."""
        return cls(ctx.engine.store, namespace, **options)

    def _key(self, key: str) -> str:
        return f"context:{self.namespace}:{key}"

    async def put(self, key: str, value: Any, *, ctx: RunContext | None = None, now: float | None = None) -> None:
        """Write an entry (JSON); with ``ctx``, as a step named ``context:<namespace>:put:<key>``.

        Raises:
            DefinitionError: the value's JSON is over ``max_chars``.
        """
        size = len(json.dumps(value, default=str))
        if size > self.max_chars:
            raise DefinitionError(
                f"shared context {self.namespace!r}: entry {key!r} is {size} characters, "
                f"over max_chars={self.max_chars}"
            )

        async def write() -> None:
            at = now if now is not None else _now(ctx)
            await self.store.cache_put(self._key(key), value, now=at)

        if ctx is None:
            await write()
        else:
            await ctx.step(write, name=f"context:{self.namespace}:put:{key}")

    async def get(self, key: str, *, ctx: RunContext | None = None, now: float | None = None) -> Any:
        """An entry's value, or ``None`` when absent or expired; with ``ctx``, a step (a replay reads the record)."""

        async def read() -> Any:
            entry = await self.store.cache_get(self._key(key))
            at = now if now is not None else _now(ctx)
            if entry is None or at - entry.stored_at > self.ttl_seconds:
                return None
            return entry.value

        if ctx is None:
            return await read()
        return await ctx.step(read, name=f"context:{self.namespace}:get:{key}")

    async def gather(self, keys: Iterable[str], *, ctx: RunContext | None = None, now: float | None = None) -> str:
        """The live entries among ``keys`` as text for a prompt (``key: value`` lines)."""
        lines = []
        for key in keys:
            value = await self.get(key, ctx=ctx, now=now)
            if value is not None:
                lines.append(f"{key}: {value if isinstance(value, str) else json.dumps(value, default=str)}")
        return "\n".join(lines)


def _now(ctx: RunContext | None) -> float:
    return float(ctx.engine.clock.now()) if ctx is not None else time.time()
