"""What the conformance suite's tests share: the suite's clock, records and set-ups."""

from __future__ import annotations

import json
from typing import Any, cast

from orchestrate.store._limits import PayloadLimits
from orchestrate.store.base import (
    ReviewRecord,
    RunRecord,
    RunUpdate,
    StepRecord,
    Store,
)
from orchestrate.types import RunStatus, StepStatus

T0 = 1_700_000_000.0
"""The suite's "now"; every timestamp is an offset from it."""

LEASE = 30.0

ODD_VALUE: dict[str, Any] = {
    "text": 'naïve café — 東京 🚀 "quoted" \\ back\nslash\ttab \x00 nul',
    "ints": [0, -1, 2**40, 7],
    "floats": [0.1, -2.5, 3.141592653589793, 1e-300, 1e300],
    "flags": [True, False, None],
    "nested": {"a": {"b": {"c": [{"d": None}, [], {}]}}, "ключ": "значение"},
    "empty": "",
}
"""A JSON value with the awkward parts: unicode, escapes, NUL, floats, nulls, nesting."""


class _Unserialisable:
    def __repr__(self) -> str:
        return "<unserialisable>"


def make_run(run_id: str, *, workflow: str = "wf", created_at: float = T0, **fields: Any) -> RunRecord:
    """A run record with sensible defaults for the suite."""
    return RunRecord(
        run_id=run_id, workflow=workflow, version="1", created_at=created_at, updated_at=created_at, **fields
    )


def make_step(run_id: str, step_key: str, output: Any = None, **fields: Any) -> StepRecord:
    """A succeeded step record for the suite."""
    fields.setdefault("status", StepStatus.SUCCEEDED)
    return StepRecord(
        run_id=run_id,
        step_key=step_key,
        name=step_key.split("[")[0],
        output=output,
        started_at=T0,
        finished_at=T0 + 1,
        **fields,
    )


def make_review(review_id: str, run_id: str = "r1", **fields: Any) -> ReviewRecord:
    """A pending review item for the suite."""
    fields.setdefault("created_at", T0)
    fields.setdefault("updated_at", fields["created_at"])
    return ReviewRecord(
        review_id=review_id,
        run_id=run_id,
        workflow="wf",
        step_key="summary",
        gate_key=fields.pop("gate_key", f"review:{review_id}"),
        **fields,
    )


async def claimed(store: Store, run_id: str, *, owner: str = "w1", now: float = T0) -> RunRecord:
    """Create a pending run and claim it; return the claimed record."""
    await store.create_run(make_run(run_id))
    run = await store.claim_run(run_id, owner=owner, now=now, lease_seconds=LEASE)
    assert run is not None, f"a fresh pending run {run_id!r} could not be claimed"
    return run


def _ids(runs: list[RunRecord]) -> list[str]:
    return [r.run_id for r in runs]


def _limit(store: Store, max_bytes: int, warn_bytes: int) -> None:
    """Set small payload limits on ``store`` (every backend has ``payload_limits``)."""
    cast(Any, store).payload_limits = PayloadLimits(max_bytes, warn_bytes)


def _json_size(value: Any) -> int:
    """The length of ``value``'s JSON as the standard library writes it (compact, ASCII)."""
    return len(json.dumps(value, separators=(",", ":")))


def _nested(depth: int) -> Any:
    value: Any = "bottom"
    for _ in range(depth):
        value = [value]
    return value


async def parked(store: Store, run_id: str = "r1") -> RunRecord:
    """A claimed run parked on a review gate's signal (waiting, no timer)."""
    run = await claimed(store, run_id)
    update = RunUpdate(status=RunStatus.WAITING, wait_reason="signal:review:summary")
    await store.update_run(run_id, fence=run.fence, now=T0, update=update, event=None)
    stored = await store.get_run(run_id)
    assert stored is not None and stored.status is RunStatus.WAITING and stored.wake_at is None
    return stored
