"""Structured JSON logs (structlog) with workflow, run, step and attempt ids.

The library logs nothing below WARNING until :func:`configure_logging` is called (the
CLI calls it), so that an embedded engine stays quiet inside an application. Records
are JSON objects, one per line: ``{"event": "step_succeeded", "workflow": ...,
"run_id": ..., "step": ..., "attempts": 1, "latency_ms": 3.2, "input_hash": ...}``.

Every record that is emitted has its secrets masked first (every ``Secret`` value of
the process and common credential formats, in strings at any depth of the event: see
:func:`orchestrate.errors.redact_text`); a record below the level costs nothing more.
"""

from __future__ import annotations

import logging
import sys
from typing import Any, TextIO

import structlog

from orchestrate._redact import redact_event

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}


def _build(level: int, stream: TextIO, json: bool) -> Any:
    renderer: Any = structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer(colors=False)
    return structlog.wrap_logger(
        structlog.PrintLogger(stream),
        wrapper_class=structlog.make_filtering_bound_logger(level),
        # The filtering logger drops a record below the level before any processor runs.
        # The redactor scans the caller's fields (and a traceback asked for with exc_info),
        # before the level and the time are added.
        processors=[
            structlog.processors.format_exc_info,
            redact_event,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            renderer,
        ],
        logger_name="orchestrate",
    )


class _Proxy:
    """Forwards to the current logger, so loggers taken before configuration follow it."""

    def __getattr__(self, name: str) -> Any:
        return getattr(_current, name)


_current: Any = _build(logging.WARNING, sys.stderr, True)
_proxy = _Proxy()


def configure_logging(level: str = "info", *, stream: TextIO | None = None, json: bool = True) -> None:
    """Set the level (``debug``, ``info``, ``warning``, ``error``), the stream and the format."""
    global _current
    if level.lower() not in _LEVELS:
        raise ValueError(f"unknown log level {level!r}; use one of {sorted(_LEVELS)}")
    _current = _build(_LEVELS[level.lower()], stream or sys.stderr, json)


def get_logger() -> Any:
    """The orchestrate logger (a structlog bound logger)."""
    return _proxy
