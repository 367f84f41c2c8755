"""Structured JSON logs (structlog) with workflow, run, step and attempt ids.

The library logs nothing below WARNING until :func:`configure_logging` is called (the
CLI calls it), so that an embedded engine stays quiet inside an application. Records
are JSON objects, one per line: ``{"event": "step_succeeded", "workflow": ...,
"run_id": ..., "step": ..., "attempts": 1, "latency_ms": 3.2, "input_hash": ...}``.
"""

from __future__ import annotations

import logging
import sys
from typing import Any, TextIO

import structlog

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}


def _build(level: int, stream: TextIO, json: bool) -> Any:
    renderer: Any = structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer(colors=False)
    return structlog.wrap_logger(
        structlog.PrintLogger(stream),
        wrapper_class=structlog.make_filtering_bound_logger(level),
        processors=[
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
