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
from typing import Any

FIELDS = ("workflow", "run_id", "step", "attempt")
"""The correlation ids, as they are named on log records."""

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
    """``{"workflow", "run_id", "step", "attempt"}`` of the code running now (empty outside a run).

    ``step`` and ``attempt`` are ``None`` in a run's own code between steps.
    """
    run = RUN.get()
    if run is None:
        return {}
    step, attempt = step_of(STEP.get())
    return {"workflow": run.workflow, "run_id": run.run_id, "step": step, "attempt": attempt}


class CorrelationFilter(logging.Filter):
    """Adds ``workflow``, ``run_id``, ``step`` and ``attempt`` to every record it sees.

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
