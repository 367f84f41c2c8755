"""Schema 8: step results by name, outcome feedback and durable alerts."""

from __future__ import annotations

QUALITY_STATEMENTS: list[str] = [
    # A step's newest records by name (``Client.step_results``, ``orchestrate stats``) and
    # the records a monitor evaluator has not read yet: one index range, whatever the table's size.
    "CREATE INDEX IF NOT EXISTS orchestrate_steps_name ON orchestrate_steps (name, finished_at)",
    # What happened after a run; one row per feedback id (insert-if-absent).
    """CREATE TABLE IF NOT EXISTS orchestrate_feedback (
        feedback_id TEXT PRIMARY KEY,
        run_id TEXT NOT NULL,
        workflow TEXT NOT NULL,
        at {real} NOT NULL,
        given_by TEXT NOT NULL,
        outcome TEXT,
        score {real},
        label TEXT,
        step TEXT,
        data TEXT NOT NULL DEFAULT '{{}}'
    )""",
    "CREATE INDEX IF NOT EXISTS orchestrate_feedback_run ON orchestrate_feedback (run_id, at)",
    "CREATE INDEX IF NOT EXISTS orchestrate_feedback_workflow ON orchestrate_feedback (workflow, at)",
    "CREATE INDEX IF NOT EXISTS orchestrate_feedback_at ON orchestrate_feedback (at)",
    # One row per incident of a monitor: inserted if absent (two workers firing the same
    # incident make one row), then moved with compare-and-set on ``version``.
    """CREATE TABLE IF NOT EXISTS orchestrate_alerts (
        alert_id TEXT PRIMARY KEY,
        workflow TEXT NOT NULL,
        monitor TEXT NOT NULL,
        step TEXT,
        incident INTEGER NOT NULL,
        state TEXT NOT NULL,
        value {real} NOT NULL,
        reason TEXT NOT NULL,
        action TEXT,
        fired_at {real} NOT NULL,
        updated_at {real} NOT NULL,
        resolved_at {real},
        acked_at {real},
        acked_by TEXT,
        version BIGINT NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS orchestrate_alerts_monitor ON orchestrate_alerts (workflow, monitor, incident)",
    "CREATE INDEX IF NOT EXISTS orchestrate_alerts_fired ON orchestrate_alerts (fired_at)",
]
"""Schema 8's statements, shared by the SQL stores (``{real}`` filled in by each)."""
