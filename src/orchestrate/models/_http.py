"""HTTP details shared by the providers: Retry-After parsing and status-code mapping."""

from __future__ import annotations

import email.utils
import time
from collections.abc import Callable, Mapping
from typing import Any

from orchestrate.errors import (
    BadRequestError,
    ContentFilteredError,
    ModelError,
    RateLimitedError,
    ServerError,
)


def parse_retry_after(headers: Mapping[str, str] | Any, *, now: Callable[[], float] = time.time) -> float | None:
    """Seconds to wait, from ``retry-after-ms``, ``retry-after`` (seconds or an HTTP date).

    Returns ``None`` when no header is present or none parses.
    """
    if headers is None:
        return None
    getter = getattr(headers, "get", None)
    if getter is None:
        return None
    raw_ms = getter("retry-after-ms")
    if raw_ms is not None:
        try:
            return max(float(raw_ms) / 1000.0, 0.0)
        except ValueError:
            pass
    raw = getter("retry-after")
    if raw is None:
        return None
    try:
        return max(float(raw), 0.0)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(raw)
    except (TypeError, ValueError):
        return None
    return max(when.timestamp() - now(), 0.0)


_FILTER_WORDS = ("content_filter", "content_policy", "content management policy", "safety", "moderation")


def status_error(
    status: int,
    message: str,
    *,
    model: str,
    headers: Mapping[str, str] | Any = None,
    code: str | None = None,
) -> ModelError:
    """The library error for an HTTP error status of a model endpoint."""
    text = f"{model}: HTTP {status}: {message}"
    if status == 429:
        return RateLimitedError(text, model=model, status_code=status, retry_after=parse_retry_after(headers))
    if status >= 500 or status in (408, 409):
        # 408 and 409 are transient by their HTTP meaning; 529 is Anthropic's "overloaded".
        return ServerError(text, model=model, status_code=status, retry_after=parse_retry_after(headers))
    lowered = f"{code or ''} {message}".lower()
    if any(word in lowered for word in _FILTER_WORDS):
        return ContentFilteredError(text, model=model, status_code=status)
    return BadRequestError(text, model=model, status_code=status)
