"""The engine's side of the hooks seam: which observers a run reports to, and its events.

A run's observers are its engine's plus the process-wide ones, resolved once per run
(:func:`hooks_of`). ``RunState.hooks`` is ``None`` when there are none: every call
site checks that one attribute and builds nothing else. The functions below turn the
engine's objects (the run context, the step's spec, its record) into an event's
keyword arguments, so that a call site stays one line.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from orchestrate.errors import StepTimeoutError
from orchestrate.observe import _dispatch
from orchestrate.observe import observer as _observer
from orchestrate.observe._dispatch import Dispatch
from orchestrate.store.base import RunRecord, StepRecord
from orchestrate.types import StepStatus

if TYPE_CHECKING:
    from orchestrate._engine.runner import Engine
    from orchestrate._engine.state import RunState, StepSpec

CARRIER = "observe"
"""The run option holding what observers asked to carry with the run (trace context)."""


def hooks_of(engine: Engine) -> Dispatch | None:
    """The dispatch of the engine's observers and the process-wide ones (cached)."""
    gen = _observer.generation()
    cached: tuple[int, Dispatch | None] = engine._hooks
    if cached[0] != gen:
        cached = engine._hooks = (gen, _dispatch.combined(engine._observers))
    return cached[1]


def carrier_of(run: RunRecord) -> dict[str, str]:
    """What observers stored with the run."""
    found = run.options.get(CARRIER) if run.options else None
    return found if isinstance(found, dict) else {}


# steps ------------------------------------------------------------------------------------
def step_started(hooks: Dispatch, ctx: RunState, spec: StepSpec, key: str, attempt: int, hashed: str) -> None:
    """A step begins executing."""
    if not hooks.methods["step_started"]:
        return
    hooks.emit(
        "step_started",
        workflow=ctx.workflow,
        run_id=ctx.run_id,
        step=key,
        name=spec.name,
        attempt=attempt,
        input_hash=hashed,
        at=ctx.engine.clock.now(),
    )


def attempt_failed(
    hooks: Dispatch,
    ctx: RunState,
    spec: StepSpec,
    key: str,
    attempt: int,
    exc: BaseException,
    latency_s: float,
    retry_in: float | None,
    at: float,
) -> None:
    """An attempt raised."""
    if not hooks.methods["step_attempt_failed"]:
        return
    hooks.emit(
        "step_attempt_failed",
        workflow=ctx.workflow,
        run_id=ctx.run_id,
        step=key,
        name=spec.name,
        attempt=attempt,
        error=exc,
        error_class=type(exc).__qualname__,
        latency_s=latency_s,
        retry_in=retry_in,
        timed_out=isinstance(exc, StepTimeoutError),
        at=at,
    )


def retried(hooks: Dispatch, ctx: RunState, spec: StepSpec, key: str, attempt: int, delay: float, at: float) -> None:
    """The retry is recorded; ``attempt`` is the next one."""
    if not hooks.methods["step_retried"]:
        return
    hooks.emit(
        "step_retried",
        workflow=ctx.workflow,
        run_id=ctx.run_id,
        step=key,
        name=spec.name,
        attempt=attempt,
        delay=delay,
        at=at,
    )


def step_ended(hooks: Dispatch, ctx: RunState, spec: StepSpec, record: StepRecord) -> None:
    """The step's record was written: succeeded, answered by a fallback, or failed."""
    meta = record.meta
    if record.status is StepStatus.SUCCEEDED and (record.fallback is None or record.fallback.startswith("route:")):
        methods = hooks.methods["step_succeeded"]
        if not methods:
            return
        hooks.emit(
            "step_succeeded",
            workflow=ctx.workflow,
            run_id=ctx.run_id,
            step=record.step_key,
            name=spec.name,
            attempts=record.attempts,
            latency_s=record.finished_at - record.started_at,
            at=record.finished_at,
            input_hash=record.input_hash,
            cached=bool(meta.get("cached")),
            model=meta.get("model"),
            route=meta.get("route"),
            output=record.output,
        )
        return
    common: dict[str, Any] = {
        "workflow": ctx.workflow,
        "run_id": ctx.run_id,
        "step": record.step_key,
        "name": spec.name,
        "attempts": record.attempts,
        "latency_s": (record.finished_at - record.started_at),
        "at": record.finished_at,
    }
    error = record.error or {}
    if record.fallback is not None:
        hooks.emit(
            "step_fallback",
            **common,
            fallback=record.fallback,
            reason=str(meta.get("fallback_reason") or error.get("name") or ""),
            error_class=str(error.get("name") or ""),
            flag=meta.get("flag"),
        )
    else:
        hooks.emit(
            "step_failed",
            **common,
            error_class=str(error.get("name") or ""),
            error=str(error.get("message") or ""),
        )


# runs -------------------------------------------------------------------------------------
def run_created(hooks: Dispatch, run: RunRecord, *, claimed: bool) -> None:
    """A run was inserted by this process."""
    hooks.emit(
        "run_created",
        workflow=run.workflow,
        run_id=run.run_id,
        version=run.version,
        queue=run.queue,
        parent_run_id=run.parent_run_id,
        claimed=claimed,
        carrier=carrier_of(run),
        at=run.created_at,
    )


def run_resumed(hooks: Dispatch, run: RunRecord, replayed: int, at: float) -> None:
    """This process picked the run up from the store."""
    hooks.emit(
        "run_resumed",
        workflow=run.workflow,
        run_id=run.run_id,
        replayed_steps=replayed,
        carrier=carrier_of(run),
        at=at,
    )


def run_parked(hooks: Dispatch, run: RunRecord, reason: str, wake_at: float | None, at: float) -> None:
    """The run waits and this process lets it go."""
    hooks.emit("run_parked", workflow=run.workflow, run_id=run.run_id, reason=reason, wake_at=wake_at, at=at)


def run_ended(
    hooks: Dispatch,
    run: RunRecord,
    status: str,
    at: float,
    *,
    step: str | None = None,
    error_class: str | None = None,
) -> None:
    """The run ended."""
    hooks.emit(
        "run_ended",
        workflow=run.workflow,
        run_id=run.run_id,
        status=status,
        step=step,
        error_class=error_class,
        duration_s=max(at - run.created_at, 0.0),
        at=at,
    )
