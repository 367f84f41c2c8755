"""Vetting a step's free-form options: names that read as policy settings are refused.

Free-form options (``model=``, ``threshold=``...) reach the step as ``ctx.options``; a
name users would expect to change what the engine does (``on_fail=``, ``retry_on=``...)
or a near-miss of a policy keyword (``retires=``) would be ignored silently instead, so
it is refused with the setting to use.
"""

from __future__ import annotations

import difflib
import re
import reprlib
from collections.abc import Mapping
from typing import Any

from orchestrate.errors import DefinitionError

_POLICY_WORDS = (
    "timeout",
    "retries",
    "retry",
    "retry_policy",
    "fallback",
    "failover_model",
    "cache",
    "max_concurrency",
    "isolation",
    "min_budget",
    "gate",
)

_FALLBACK_HINT = (
    "spell it as a fallback: fallback=Fallback.value(<the result on failure>) "
    '(on_fail="block" fails closed with the blocked result), or Fallback.skip() / Fallback.call(fn)'
)
_RETRY_HINT = "use retry=Retry(max_attempts=..., initial_delay=..., backoff=..., max_delay=..., jitter=...)"
_TIMEOUT_HINT = "use timeout=<seconds> or timeout=Timeout(attempt=..., total=...)"

# Option names a reader would expect to change what the engine does. Steps have no such
# settings, so keeping them as free-form options would ignore them silently: seed 003's
# on_fail="block" sent failing content to the dead-letter queue instead of blocking it.
_BEHAVIOUR_WORDS: dict[str, str] = {
    **dict.fromkeys(("on_fail", "on_failure", "on_error", "on_exception", "fail_closed", "fail_open"), _FALLBACK_HINT),
    "on_timeout": f"a timed-out attempt is retried, then falls back: {_TIMEOUT_HINT} and a fallback ({_FALLBACK_HINT})",
    **dict.fromkeys(
        ("fallback_value", "fallback_fn", "fallback_to", "fallback_model", "failover", "backup_model"),
        "use fallback=Fallback.value(...) / Fallback.call(fn), or failover_model='<component>'",
    ),
    **dict.fromkeys(
        ("retry_on", "retries_on", "retry_if", "retry_exceptions", "retry_errors", "retryable_errors"),
        "use retry=Retry(retry_on=(SomeError,))",
    ),
    **dict.fromkeys(
        ("give_up_on", "no_retry_on", "dont_retry_on", "fatal_errors", "non_retryable"),
        "use retry=Retry(give_up_on=(SomeError,))",
    ),
    **dict.fromkeys(
        ("max_retries", "num_retries", "retry_count", "max_attempts"),
        "use retries=<count> or retry=Retry(max_attempts=...) (None for no limit)",
    ),
    **dict.fromkeys(
        ("backoff", "backoff_factor", "initial_delay", "retry_delay", "max_delay", "jitter"),
        _RETRY_HINT,
    ),
    **dict.fromkeys(
        ("timeout_s", "timeout_seconds", "attempt_timeout", "total_timeout", "time_limit", "deadline"),
        _TIMEOUT_HINT,
    ),
    **dict.fromkeys(("ttl", "cache_ttl"), "use cache=<seconds> or cache=Cache(ttl=...)"),
    **dict.fromkeys(("concurrency", "max_parallel", "parallelism"), "use max_concurrency=<count>"),
    **dict.fromkeys(
        ("approval", "requires_approval", "human_review", "review_gate"),
        "use gate=HumanReviewGate(...)",
    ),
}
_ON_HINT = "steps have no event handlers: use fallback=, retry= or gate=, or a Branch after the step"
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")  # onFail -> on_Fail


def check_step_options(options: Mapping[str, Any], *, where: str) -> None:
    """Refuse free-form step options that read as policy settings.

    Free-form options (``model=``, ``threshold=``...) reach the step as ``ctx.options``;
    a name users would expect to change what the engine does (``on_fail=``,
    ``retry_on=``...) or a near-miss of a policy keyword (``retires=``) would be ignored
    silently instead, so it is refused with the setting to use.
    """

    for key, value in options.items():
        plain = _CAMEL.sub("_", key).lower()  # onFail, maxRetries, Timeout
        hint = _BEHAVIOUR_WORDS.get(plain) or (_ON_HINT if plain.startswith("on_") else None)
        if hint is not None:
            raise DefinitionError(
                f"{where}: option {key}={reprlib.repr(value)} is not a step setting and would be ignored; {hint}"
            )
        close = difflib.get_close_matches(plain, _POLICY_WORDS, n=1, cutoff=0.8)
        if close:
            raise DefinitionError(f"{where}: unknown option {key!r}; did you mean {close[0]!r}?")
