"""Secret values that never print, and the redaction of text that might contain them.

An API key or a tool credential is held in a :class:`Secret`: its ``repr`` and ``str``
are masked, and only :meth:`Secret.reveal` gives the value, at the point of use (the
HTTP client, the tool call). Every ``Secret`` is known to the process's redactor from
the moment it is created: its value is masked in log records, stored errors, webhook
bodies, the command line's output and the errors :class:`~orchestrate.Client` returns
(values of at least 8 characters; shorter ones would mask ordinary words). A
:class:`Redactor` scrubs a chosen set of secret values out of any text, error, log event
or record before it leaves the component that holds them::

    key = Secret("sk-live-123", name="crm_api_key")
    redactor = Redactor([key])
    redactor.text("auth failed for sk-live-123")   # 'auth failed for [REDACTED:crm_api_key]'
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from orchestrate import _redact

_MASK = "***"


class Secret:
    """A secret string that does not show itself.

    Creating one registers its value with the process's redactor, which masks it (as
    ``[REDACTED:name]``) in everything the library logs, stores as an error or prints.

    Args:
        value: the secret.
        name: a label used in redaction marks (``[REDACTED:name]``).
    """

    __slots__ = ("_value", "name")

    def __init__(self, value: str, *, name: str = "secret") -> None:
        if not isinstance(value, str) or not value:
            raise ValueError("a Secret needs a non-empty string value")
        self._value = value
        self.name = name
        _redact.register(value, name)

    def reveal(self) -> str:
        """The secret value; call it only where the value is used."""
        return self._value

    def __repr__(self) -> str:
        return f"Secret(name={self.name!r}, value={_MASK!r})"

    def __str__(self) -> str:
        return _MASK

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash((Secret, self._value))

    def __reduce__(self) -> Any:
        # Pickling would carry the value into process pools and queues: refuse.
        raise TypeError("a Secret cannot be pickled")


def reveal(value: str | Secret | None) -> str | None:
    """The plain value of a string or a :class:`Secret`."""
    return value.reveal() if isinstance(value, Secret) else value


class Redactor:
    """Replaces known secret values in text, errors and JSON-like data.

    Args:
        secrets: the secrets to scrub; values shorter than 4 characters are refused,
            since masking them would mangle ordinary text.
    """

    def __init__(self, secrets: Iterable[Secret] = ()) -> None:
        self._secrets: dict[str, str] = {}
        for secret in secrets:
            self.add(secret)

    def add(self, secret: Secret) -> None:
        """Scrub this secret too."""
        value = secret.reveal()
        if len(value) < 4:
            raise ValueError(f"secret {secret.name!r} is too short to be redacted safely")
        self._secrets[value] = f"[REDACTED:{secret.name}]"
        self._pattern: re.Pattern[str] | None = None

    @property
    def pattern(self) -> re.Pattern[str] | None:
        """One regex matching every secret value, longest first."""
        if getattr(self, "_pattern", None) is None and self._secrets:
            values = sorted(self._secrets, key=len, reverse=True)
            self._pattern = re.compile("|".join(re.escape(v) for v in values))
        return getattr(self, "_pattern", None)

    def text(self, text: str) -> str:
        """``text`` with every secret value replaced by its mark."""
        pattern = self.pattern
        if pattern is None or not text:
            return text
        return pattern.sub(lambda m: self._secrets[m.group(0)], text)

    def streaming(self) -> StreamRedactor:
        """A redactor for text that arrives in pieces (a secret may be split between two)."""
        return StreamRedactor(self)

    def data(self, value: Any) -> Any:
        """A copy of JSON-like ``value`` (dicts, lists, strings) with secrets replaced."""
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, Secret):
            return f"[REDACTED:{value.name}]"
        if isinstance(value, Mapping):
            return {self.text(str(k)) if isinstance(k, str) else k: self.data(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return type(value)(self.data(v) for v in value)
        return value

    def error(self, exc: BaseException) -> str:
        """``"ErrorType: message"`` of ``exc`` with secrets replaced."""
        return self.text(f"{type(exc).__qualname__}: {exc}")

    def contains_secret(self, text: str) -> bool:
        """Whether ``text`` holds any secret value."""
        pattern = self.pattern
        return bool(pattern and pattern.search(text))


class StreamRedactor:
    """Redacts text that arrives in pieces: it holds back what could be the start of a secret.

    ``feed`` returns what is safe to show now; ``end`` returns the rest. A secret split
    between pieces is still masked, because no character leaves before every secret that
    could contain it has been seen whole.
    """

    def __init__(self, redactor: Redactor) -> None:
        self._redactor = redactor
        self._held = ""
        pattern = redactor.pattern
        self._keep = max((len(v) for v in redactor._secrets), default=1) - 1 if pattern is not None else 0

    def feed(self, text: str) -> str:
        """The redacted text that can be shown after ``text`` arrived."""
        buffer = self._held + text
        pattern = self._redactor.pattern
        if pattern is None:
            return buffer
        cut = max(len(buffer) - self._keep, 0)
        for match in pattern.finditer(buffer):
            if match.start() < cut < match.end():
                cut = match.start()
                break
        self._held = buffer[cut:]
        return self._redactor.text(buffer[:cut])

    def end(self) -> str:
        """The redacted rest, once no more text comes."""
        rest, self._held = self._held, ""
        return self._redactor.text(rest)
