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
import functools
import re
import threading
from collections.abc import Callable, Mapping, MutableMapping
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

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

_SECRET_NAMES = (
    "api_key",
    "api-key",
    "apikey",
    "access_key",
    "access-key",
    "secret_key",
    "secret-key",
    "private_key",
    "private-key",
    "secret",
    "token",
    "password",
    "passwd",
    "authorization",
    "credential",
    "credentials",
)
"""Mapping keys whose string value is masked whole: these names, alone or after ``_``, ``-``
or ``.`` (``{"api_key": "…"}``, ``access_token``, ``DB_PASSWORD``)."""


@functools.lru_cache(maxsize=4096)  # keys repeat: the same few names in every log record
def _is_secret_name(key: str) -> bool:
    lowered = key.lower()
    if not lowered.endswith(_SECRET_NAMES):  # one call decides for almost every key
        return False
    for name in _SECRET_NAMES:
        if lowered.endswith(name):
            cut = len(lowered) - len(name)
            if cut == 0 or lowered[cut - 1] in "_.-":
                return True
    return False


def _format_mark(match: re.Match[str]) -> str:
    return (match.group("keep") or "") + MARK if "keep" in match.re.groupindex else MARK


_CACHED_CHARS = 256
_CACHE_ENTRIES = 4096


class _Known:
    """The registered values, and what the redactor needs now (rebuilt lazily after a change).

    ``current`` is swapped whole, so a reader never sees a regex without its marks: the
    function replacing every known value (``None`` before the first), and the results of
    recent short texts. Log fields repeat (run ids, step names, error classes): most are
    answered from there. A registration starts a new one, so no text masked without a new
    value is answered from before it.
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.names: dict[str, str] = {}
        self.current: tuple[Callable[[str], str] | None, dict[str, str]] = (None, {})
        self.stale = False

    def add(self, value: str, name: str) -> None:
        if len(value) < MIN_SECRET_LENGTH or value in self.names:
            return
        with self.lock:
            if value not in self.names:
                self.names[value] = f"[REDACTED:{name}]"
                self.stale = True

    def now(self) -> tuple[Callable[[str], str] | None, dict[str, str]]:
        if self.stale:
            with self.lock:
                if self.stale:
                    marks = dict(self.names)
                    # Longest first: a value that contains another is masked whole.
                    values = sorted(marks, key=len, reverse=True)
                    # The token a value starts goes with it: a registered key that is the
                    # start of a longer one (sk-live-... and sk-live-...-2) leaves nothing behind.
                    pattern = re.compile("(" + "|".join(map(re.escape, values)) + r")[A-Za-z0-9_-]*")
                    self.current = (functools.partial(pattern.sub, lambda m: marks[m.group(1)]), {})
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
    substitute, recent = _known.now()
    done = recent.get(text)
    if done is not None:
        return done
    masked = text if substitute is None else substitute(text)
    lowered = masked.lower()
    for words, pattern in _COMPILED:
        for word in words:
            if word in lowered:
                masked = pattern.sub(_format_mark, masked)
                break
    if len(text) <= _CACHED_CHARS:
        if len(recent) >= _CACHE_ENTRIES:
            recent.clear()
        recent[text] = masked
    return masked


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
            if isinstance(item, str) and isinstance(key, str) and item and _is_secret_name(key):
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
    # The event's own keys are the logging call's keyword names, chosen by code: only its
    # values are scanned (keys nested in them are data, and scanned).
    for key, value in event_dict.items():
        if type(value) is str:
            masked: Any = MARK if value and _is_secret_name(key) else redact(value)
        elif value is None or type(value) in (int, float, bool):
            continue
        else:
            masked = _walk(value, 1, stringify=True)
        if masked is not value:
            event_dict[key] = masked
    return event_dict


_Record = TypeVar("_Record", bound="DataclassInstance")


def masked_fields(record: _Record, *fields: str) -> _Record:
    """``record`` with secrets masked in the named fields; the record itself when none held one."""
    changes = {}
    for name in fields:
        value = getattr(record, name)
        masked = redact_data(value)
        if masked is not value:
            changes[name] = masked
    return dataclasses.replace(record, **changes) if changes else record
