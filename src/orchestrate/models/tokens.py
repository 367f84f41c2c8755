"""Counting tokens: with the model's own tokenizer where it is local, by estimate otherwise.

A model that can count exactly has a ``count_tokens(text) -> int`` method
(:class:`~orchestrate.models.local.LlamaCppModel` uses llama.cpp's ``tokenize``); a
wrapper counts with the model it wraps. Remote providers count only when they answer
(the ``usage`` of each result), so for them :func:`tokens_of` falls back to
:func:`~orchestrate.models.base.estimate_tokens` (about 4 characters a token), and
callers that have a recorded usage start from it (see the agent's budget check).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from orchestrate.models.base import Message, estimate_tokens

MESSAGE_OVERHEAD = 4
"""Tokens a chat template adds around each message (role markers, separators), about."""


def tokenizer_of(model: Any) -> Callable[[str], int] | None:
    """The model's exact token counter, following wrappers; ``None`` when it has none."""
    seen = 0
    while model is not None and seen < 16:  # wrappers stack a few deep, never in a cycle
        counter = getattr(model, "count_tokens", None)
        if callable(counter):
            return counter  # type: ignore[no-any-return]
        model = getattr(model, "wrapped", None)
        seen += 1
    return None


def tokens_of(model: Any, text: str) -> int:
    """``text``'s token count: exact with the model's tokenizer, estimated without."""
    counter = tokenizer_of(model)
    return counter(text) if counter is not None else estimate_tokens(text)


def message_tokens(model: Any, messages: Iterable[Message]) -> int:
    """The tokens a chat of ``messages`` takes: their contents and each message's overhead."""
    counter = tokenizer_of(model) or estimate_tokens
    return sum(counter(m.content) + MESSAGE_OVERHEAD for m in messages)
