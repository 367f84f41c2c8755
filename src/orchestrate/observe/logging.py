"""Logs through the standard library: structlog in front, ``logging`` underneath.

The library writes to the ``orchestrate`` logger of :mod:`logging`, so the application
owns handlers and levels: a record is a ``LogRecord`` whose message reads
``step_fallback workflow=tracking run_id=... step=track ...`` and whose fields are also
attributes (``record.run_id``, ``record.error_class``), for a JSON formatter of your own.
Unconfigured, Python prints the library's warnings and errors to stderr and nothing below.

:func:`configure_logging` (the CLI calls it) installs one handler that writes JSON
objects, one per line: ``{"event": "step_succeeded", "workflow": ..., "run_id": ...,
"step": ..., "attempts": 1, "latency_ms": 3.2, "level": "info", "timestamp": ...}``;
with ``root=True`` it also writes the application's own records, each with the
correlation ids (workflow, run, step, attempt) of the step that wrote it (see
:class:`~orchestrate.observe.CorrelationFilter`).

Every record the library emits has its secrets masked first (every ``Secret`` value of
the process and common credential formats, in strings at any depth of the event: see
:func:`orchestrate.errors.redact_text`), and so has every record the installed handler
writes; a record below the level costs nothing more.
"""

from __future__ import annotations

import json as _json
import logging
import sys
from datetime import UTC, datetime
from typing import Any, TextIO

import structlog

from orchestrate._redact import redact_event
from orchestrate.observe.correlation import FIELDS, CorrelationFilter

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}

LOGGER_NAME = "orchestrate"
"""The standard-library logger the library writes to."""

_STDLIB = logging.getLogger(LOGGER_NAME)

# What a LogRecord holds itself: an event field of one of these names is kept under
# ``orchestrate_<name>`` as an attribute (and under its own name in the JSON line).
_RECORD_ATTRS = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "taskName"}


class _Logger(structlog.BoundLoggerBase):
    """A structlog bound logger in front of a ``logging.Logger``, checking its level first."""

    _logger: logging.Logger

    def is_enabled_for(self, level: int) -> bool:
        """Whether a record at ``level`` would be emitted (the stdlib logger's effective level)."""
        return self._logger.isEnabledFor(level)

    def debug(self, event: str, **kw: Any) -> Any:
        """Log at DEBUG."""
        if self._logger.isEnabledFor(logging.DEBUG):
            return self._proxy_to_logger("debug", event, **kw)
        return None

    def info(self, event: str, **kw: Any) -> Any:
        """Log at INFO."""
        if self._logger.isEnabledFor(logging.INFO):
            return self._proxy_to_logger("info", event, **kw)
        return None

    def warning(self, event: str, **kw: Any) -> Any:
        """Log at WARNING."""
        if self._logger.isEnabledFor(logging.WARNING):
            return self._proxy_to_logger("warning", event, **kw)
        return None

    warn = warning

    def error(self, event: str, **kw: Any) -> Any:
        """Log at ERROR."""
        if self._logger.isEnabledFor(logging.ERROR):
            return self._proxy_to_logger("error", event, **kw)
        return None

    def exception(self, event: str, **kw: Any) -> Any:
        """Log at ERROR with the exception being handled."""
        kw.setdefault("exc_info", True)
        if self._logger.isEnabledFor(logging.ERROR):
            return self._proxy_to_logger("error", event, **kw)
        return None

    def critical(self, event: str, **kw: Any) -> Any:
        """Log at CRITICAL."""
        if self._logger.isEnabledFor(logging.CRITICAL):
            return self._proxy_to_logger("critical", event, **kw)
        return None


def _text(value: Any) -> str:
    text = value if isinstance(value, str) else _json.dumps(value, default=str, ensure_ascii=False)
    return f'"{text}"' if isinstance(value, str) and (not text or " " in text or "=" in text) else text


def _to_stdlib(_logger: Any, _method: str, event_dict: Any) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """The last processor: the event as a ``LogRecord``'s message and attributes."""
    event = str(event_dict.pop("event", ""))
    exception = event_dict.pop("exception", None)
    extra: dict[str, Any] = {"event": event}
    names: list[tuple[str, str]] = []
    parts = [event]
    for key, value in event_dict.items():
        attr = f"orchestrate_{key}" if key in _RECORD_ATTRS else key
        extra[attr] = value
        names.append((key, attr))
        if value is not None:
            parts.append(f"{key}={_text(value)}")
    if exception is not None:
        extra["exception"] = exception
        names.append(("exception", "exception"))
    message = " ".join(parts) + (f"\n{exception}" if exception else "")
    extra["_orchestrate_fields"] = tuple(names)
    # stacklevel: the record names the line that logged, past this logger's two frames.
    return (message,), {"extra": extra, "stacklevel": 3}


def _build() -> Any:
    return _Logger(
        _STDLIB,
        # The level is checked before any processor runs. The redactor scans the
        # caller's fields (and a traceback asked for with exc_info).
        processors=[structlog.processors.format_exc_info, redact_event, _to_stdlib],
        context={},
    )


class JSONFormatter(logging.Formatter):
    """Formats any record as one JSON object (or, with ``json=False``, a console line).

    The library's records keep their fields; other records get ``event`` (their
    message), ``logger``, their ``extra`` fields and the correlation ids. Secrets are
    masked in every record (the library's were masked already).
    """

    def __init__(self, *, json: bool = True) -> None:
        super().__init__()
        self._render: Any = structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer(colors=False)

    def format(self, record: logging.LogRecord) -> str:
        """The record as a JSON line."""
        found = record.__dict__
        fields = found.get("_orchestrate_fields")
        event: dict[str, Any]
        if fields is not None:
            event = {"event": found.get("event", "")}
            for key, attr in fields:
                event[key] = found.get(attr)
        else:
            event = {"event": record.getMessage()}
            for key, value in found.items():
                if key not in _RECORD_ATTRS and not key.startswith("_") and key not in FIELDS:
                    event[key] = value
            if record.exc_info:
                event["exception"] = self.formatException(record.exc_info)
            if record.stack_info:
                event["stack"] = self.formatStack(record.stack_info)
            redact_event(None, "", event)
        for key in FIELDS:
            if key not in event and found.get(key) is not None:
                event[key] = found[key]
        event["level"] = record.levelname.lower()
        event["logger"] = record.name
        event["timestamp"] = datetime.fromtimestamp(record.created, UTC).isoformat().replace("+00:00", "Z")
        return str(self._render(None, record.levelname.lower(), event))


class _Proxy:
    """Forwards to the current logger, so loggers taken before configuration follow it."""

    def __getattr__(self, name: str) -> Any:
        return getattr(_current, name)


_current: Any = _build()
_proxy = _Proxy()
_installed: tuple[logging.Logger, logging.Handler] | None = None


def configure_logging(
    level: str = "info", *, stream: TextIO | None = None, json: bool = True, root: bool = False
) -> None:
    """Write the library's records at ``level`` and up to ``stream`` (default stderr).

    Installs one handler (replacing the one an earlier call installed) that writes JSON
    lines, or console lines with ``json=False``, with the correlation ids of the run and
    step that wrote each record.

    Args:
        level: ``debug``, ``info``, ``warning`` or ``error``.
        stream: where the lines go (default: stderr).
        json: JSON objects, one per line; ``False`` for a console format.
        root: install the handler on the root logger and set its level, so that the
            application's own records (a step's ``logging.getLogger(__name__).info(...)``)
            are written too, with their run's ids. Without it, only the library's
            records are, and they no longer reach the root logger's handlers.
    """
    global _installed
    if level.lower() not in _LEVELS:
        raise ValueError(f"unknown log level {level!r}; use one of {sorted(_LEVELS)}")
    number = _LEVELS[level.lower()]
    if _installed is not None:
        _installed[0].removeHandler(_installed[1])
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JSONFormatter(json=json))
    handler.addFilter(CorrelationFilter())
    if root:
        target = logging.getLogger()
        target.setLevel(number)
        _STDLIB.setLevel(logging.NOTSET)
        _STDLIB.propagate = True
    else:
        target = _STDLIB
        _STDLIB.setLevel(number)
        _STDLIB.propagate = False
    target.addHandler(handler)
    _installed = (target, handler)


def get_logger() -> Any:
    """The orchestrate logger (a structlog bound logger over the ``orchestrate`` stdlib logger)."""
    return _proxy
