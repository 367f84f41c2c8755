"""Correlation ids: which workflow, run, step and attempt the current code runs for.

The engine sets them while it drives a run and while a step runs (in the step's task,
and in the thread of a sync step), so any log line written there can carry them:
the library's own records, and the application's lines written with
``logging.getLogger(...)`` inside a step once :class:`CorrelationFilter` is on their
handler (:func:`~orchestrate.observe.configure_logging` puts it on the handler it
installs)::

    handler = logging.StreamHandler()
    handler.addFilter(CorrelationFilter())
    handler.setFormatter(logging.Formatter("%(run_id)s %(step)s %(message)s"))
"""

from __future__ import annotations

import contextvars
import logging
import weakref
from typing import Any, Protocol

FIELDS = ("workflow", "run_id", "step", "attempt", "trace_id")
"""The correlation ids, as they are named on log records (``trace_id``: with a tracing observer)."""


class TraceSource(Protocol):
    """What knows a run's trace (the OpenTelemetry observer): its id, 32 hex digits, or ``None``."""

    def trace_id(self, run_id: str) -> str | None:
        """The trace id of run ``run_id`` in this process, or ``None``."""


_TRACES: weakref.WeakSet[Any] = weakref.WeakSet()


def add_trace_source(source: TraceSource) -> None:
    """Let log lines written in a run carry its ``trace_id`` from ``source`` (kept while it lives)."""
    _TRACES.add(source)


RUN: contextvars.ContextVar[Any] = contextvars.ContextVar("orchestrate_run", default=None)
"""The run being driven by this task (the engine's run context: ``workflow``, ``run_id``,
``hooks``), inherited by the tasks it creates."""

STEP: contextvars.ContextVar[str | tuple[str, int] | None] = contextvars.ContextVar("orchestrate_step", default=None)
"""The step running in this task: its key on the first attempt, ``(key, attempt)`` on later
ones (no allocation on the common path)."""


def step_of(value: str | tuple[str, int] | None) -> tuple[str | None, int | None]:
    """``(step, attempt)`` from the value of :data:`STEP`."""
    if value is None:
        return None, None
    if isinstance(value, str):
        return value, 1
    return value


def current_ids() -> dict[str, Any]:
    """``{"workflow", "run_id", "step", "attempt"}`` of the code running now (empty outside a run),
    with ``trace_id`` when a tracing observer (:class:`~orchestrate.observe.otel.OpenTelemetryObserver`)
    traces the run in this process.

    ``step`` and ``attempt`` are ``None`` in a run's own code between steps.
    """
    run = RUN.get()
    if run is None:
        return {}
    step, attempt = step_of(STEP.get())
    ids = {"workflow": run.workflow, "run_id": run.run_id, "step": step, "attempt": attempt}
    if _TRACES:  # a tracing observer lives: the run's trace id, so logs and traces meet
        for source in list(_TRACES):
            found = source.trace_id(run.run_id)
            if found is not None:
                ids["trace_id"] = found
                break
    return ids


class CorrelationFilter(logging.Filter):
    """Adds ``workflow``, ``run_id``, ``step``, ``attempt`` and ``trace_id`` to every record it sees.

    Fields the record already has (the library's own records carry them) are kept;
    outside a run the fields are ``None``, so a format string naming them never fails.
    It never drops a record.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        """Set the ids on ``record``; always keep it."""
        found = record.__dict__
        for name, value in (current_ids() or _NONE).items():
            found.setdefault(name, value)
        return True


_NONE: dict[str, Any] = dict.fromkeys(FIELDS)
