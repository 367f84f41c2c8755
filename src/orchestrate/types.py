"""Type aliases, ids and status enums shared across orchestrate."""

from __future__ import annotations

import enum
from typing import Any, NewType

RunId = NewType("RunId", str)
"""Identifier of a run (a UUID4 hex string unless the caller chose one)."""

StepKey = NewType("StepKey", str)
"""Deterministic key of a step execution inside a run, e.g. ``classify`` or ``docs[3]``."""

JSON = Any
"""A value that can be stored as JSON."""


class RunStatus(enum.StrEnum):
    """Where a run stands. Terminal: succeeded, failed, cancelled, dead."""

    PENDING = "pending"  # created, not yet claimed by a worker
    RUNNING = "running"  # held by a worker under a lease
    WAITING = "waiting"  # parked on a timer or an external signal; holds no worker
    SUCCEEDED = "succeeded"  # finished with an output
    FAILED = "failed"  # stopped by a workflow-level error (deadline, bad route, ...)
    CANCELLED = "cancelled"  # stopped on request
    DEAD = "dead"  # retries and fallbacks exhausted: in the dead-letter queue

    @property
    def terminal(self) -> bool:
        """Whether the run can no longer change (except through a replay)."""
        return self in _TERMINAL


_TERMINAL = frozenset({RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.CANCELLED, RunStatus.DEAD})


class StepStatus(enum.StrEnum):
    """Outcome recorded for a step execution."""

    SUCCEEDED = "succeeded"  # the step (or one of its fallbacks) produced the output
    SKIPPED = "skipped"  # policy exhausted; downstream steps see it as missing
    FAILED = "failed"  # exhausted with no fallback; the run goes to the dead-letter queue
