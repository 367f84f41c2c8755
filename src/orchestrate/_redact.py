"""The process's one redactor: every :class:`~orchestrate.models.Secret` value, and credential formats.

Everything that leaves the library — log records, webhook bodies, the command line's
output, the errors and events :class:`~orchestrate.Client` returns, the errors the engine
stores — passes through :func:`redact` (text) or :func:`redact_data` (JSON-like values and
records). Two kinds of things are replaced:

* the value of every ``Secret`` created in this process, by ``[REDACTED:name]``. A value
  stays known for the life of the process: an error raised after its ``Secret`` was
  dropped can still carry it. Values shorter than :data:`MIN_SECRET_LENGTH` are not
  matched by value, since masking them would mangle ordinary text;
* common credential formats, by ``[REDACTED]`` (a field's name or a header's scheme is
  kept): OpenAI/Anthropic ``sk-…`` keys, Stripe keys, AWS access key ids, GitHub and
  Slack tokens, Google API keys, JWTs, PEM private keys, bearer tokens, the password of a
  URL, and the values of ``api_key=``, ``token=``, ``password=``, ``secret:`` and similar
  fields (and of mapping keys with such names).

Known values are replaced first, in a pass of their own, so that a format match cannot
leave part of a registered secret behind. The format regex is compiled once; the regex
of known values is rebuilt (on its next use) only after a new value was registered.
"""

from __future__ import annotations

import copy
import dataclasses
import enum
import re
import threading
from collections.abc import Mapping, MutableMapping
from typing import Any

MIN_SECRET_LENGTH = 8
"""Shortest ``Secret`` value matched by value (shorter ones would mask ordinary words)."""

MARK = "[REDACTED]"
"""What a credential found by its format is replaced with."""

# Each format: the lowercase words that must occur in a text for it to match (a cheap
# test that spares most texts every regex), its regex, and whether a group "keep" holds
# a prefix that stays (a field's name, a header and its scheme): only the value is masked.
_FORMATS: tuple[tuple[tuple[str, ...], str], ...] = (
    (("-----begin",), r"-----BEGIN[A-Z ]*PRIVATE KEY-----(?s:.*?)(?:-----END[A-Z ]*PRIVATE KEY-----|\Z)"),
    (("://",), r"(?P<keep>://[^\s/:@'\"]{0,256}:)[^\s/@'\"]{1,256}(?=@)"),  # a URL's password
    (
        ("authorization",),
        r"(?P<keep>(?i:authorization)[\"']?\s{0,16}[:=]\s{0,16}[\"']?(?>(?:(?i:bearer|basic|token|bot)\s+)?))"
        r"(?!\[REDACTED)[^\s\"',;)}\]>]{4,}",
    ),
    (
        ("key", "token", "secret", "passw", "pwd", "credential"),
        r"(?P<keep>(?i:api[_-]?key|apikey|access[_-]?key|secret[_-]?key|secret|token|password|passwd|pwd|credentials?)"
        r"[\"']?\s{0,16}[:=]\s{0,16}[\"']?)(?!\[REDACTED)[^\s\"',;&}\]]{4,}",
    ),
    (("bearer",), r"(?P<keep>(?i:bearer)\s+)(?!\[REDACTED)[A-Za-z0-9._~+/=-]{8,}"),
    (("k-",), r"\b(?:sk|pk|rk)-[A-Za-z0-9_-]{16,}"),  # OpenAI sk-…/sk-proj-…, Anthropic sk-ant-…
    (("k_",), r"\b(?:sk|pk|rk)_(?:live|test)_[A-Za-z0-9]{16,}"),  # Stripe
    (("akia", "asia"), r"\b(?:AKIA|ASIA)[A-Z0-9]{16}\b"),  # AWS access key ids
    (("gh", "github_pat_"), r"\b(?:gh[pousr]_[A-Za-z0-9]{20,}|github_pat_[A-Za-z0-9_]{22,})"),
    (("xox",), r"\bxox[abposr]-[A-Za-z0-9-]{10,}"),  # Slack
    (("aiza",), r"\bAIza[0-9A-Za-z_-]{30,}"),  # Google API keys
    (("eyj",), r"\beyJ[A-Za-z0-9_-]{5,4096}\.eyJ[A-Za-z0-9_-]{5,8192}\.[A-Za-z0-9_-]*"),  # JWTs
)
_COMPILED = tuple((words, re.compile(body)) for words, body in _FORMATS)
_SHORTEST = 8
"""No text shorter than this holds a known value or a format match ("pwd=abcd"): skipped."""

_SECRET_NAME = re.compile(
    r"(?:.*[_.-])?(?:api[_-]?key|apikey|access[_-]?key|secret[_-]?key|secret|token|password|passwd"
    r"|authorization|credentials?|private[_-]?key)",
    re.IGNORECASE,
)
"""A mapping key whose string value is masked whole (``{"api_key": "…"}``, ``access_token``)."""


def _format_mark(match: re.Match[str]) -> str:
    return (match.group("keep") or "") + MARK if "keep" in match.re.groupindex else MARK


class _Known:
    """The registered values and the regex matching them (rebuilt lazily after a change)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.names: dict[str, str] = {}
        # (regex, marks by value), swapped as one so readers never see a half-built pair.
        self.current: tuple[re.Pattern[str], dict[str, str]] | None = None
        self.stale = False

    def add(self, value: str, name: str) -> None:
        if len(value) < MIN_SECRET_LENGTH or value in self.names:
            return
        with self.lock:
            if value not in self.names:
                self.names[value] = f"[REDACTED:{name}]"
                self.stale = True

    def pattern(self) -> tuple[re.Pattern[str], dict[str, str]] | None:
        if self.stale:
            with self.lock:
                if self.stale:
                    marks = dict(self.names)
                    # Longest first: a value that contains another is masked whole.
                    values = sorted(marks, key=len, reverse=True)
                    self.current = (re.compile("|".join(map(re.escape, values))), marks)
                    self.stale = False
        return self.current


_known = _Known()


def register(value: str, name: str = "secret") -> None:
    """Mask ``value`` (as ``[REDACTED:name]``) everywhere from now on; called by ``Secret``."""
    _known.add(value, name)


def redact(text: str) -> str:
    """``text`` with every registered secret value and every credential format masked."""
    if len(text) < _SHORTEST:
        return text
    known = _known.pattern()
    if known is not None:
        pattern, marks = known
        text = pattern.sub(lambda m: marks[m.group(0)], text)
    lowered = text.lower()
    for words, pattern in _COMPILED:
        for word in words:
            if word in lowered:
                text = pattern.sub(_format_mark, text)
                break
    return text


def redact_data(value: Any) -> Any:
    """``value`` with secrets masked in every string it holds.

    Walks mappings, lists, tuples and dataclass instances (records); the string value of a
    mapping key named like a credential (``api_key``, ``password``, ``access_token``) is
    masked whole. Enum members and other objects are returned as they are. What holds no
    secret is returned itself, not a copy.
    """
    return _walk(value, 0, stringify=False)


_MAX_DEPTH = 32


def _walk(value: Any, depth: int, *, stringify: bool) -> Any:
    if isinstance(value, str):
        return value if isinstance(value, enum.Enum) else redact(value)
    if value is None or isinstance(value, bool | int | float | enum.Enum):
        return value
    if depth >= _MAX_DEPTH:
        return redact(repr(value)) if stringify else value
    if isinstance(value, Mapping):
        changed = False
        out: dict[Any, Any] = {}
        for key, item in value.items():
            new_key = redact(key) if isinstance(key, str) else key
            if isinstance(item, str) and isinstance(key, str) and item and _SECRET_NAME.fullmatch(key):
                new = MARK
            else:
                new = _walk(item, depth + 1, stringify=stringify)
            changed = changed or new_key is not key or new is not item
            out[new_key] = new
        return out if changed or not isinstance(value, dict) else value
    if isinstance(value, list | tuple | set | frozenset):
        items = [_walk(item, depth + 1, stringify=stringify) for item in value]
        if all(new is old for new, old in zip(items, value, strict=True)):
            return value
        return items if isinstance(value, list) else type(value)(items)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        changes = {}
        for f in dataclasses.fields(value):
            old = getattr(value, f.name)
            new = _walk(old, depth + 1, stringify=stringify)
            if new is not old:
                changes[f.name] = new
        if not changes:
            return value
        clone = copy.copy(value)
        for name, new in changes.items():
            object.__setattr__(clone, name, new)  # frozen records too
        return clone
    if stringify:
        # What a log renderer would print for it (``repr``), masked.
        return redact(repr(value))
    return value


def redact_event(_logger: Any, _method: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """A structlog processor: mask secrets in every string of the event, at any depth.

    Objects that are not JSON-like are replaced by their masked ``repr`` (what the
    renderer would print). Placed in the chain of a filtering logger, it runs only for
    records that are emitted.
    """
    walked = _walk(event_dict, 0, stringify=True)
    return walked if isinstance(walked, MutableMapping) else event_dict
