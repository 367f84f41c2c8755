"""The step executor: runs one step under its policy and writes what happened.

It carries out what :mod:`~orchestrate._engine.decisions` decides (the attempt's timeout,
retry or give up, the budget, the next fallback, what the record holds): the I/O is here
(calling the function on the loop, a thread or a process; the cache; the records and
retry timers in the store; the hooks and logs), the rules are there.
"""

from __future__ import annotations

import asyncio
import contextvars
import time
from collections.abc import Awaitable
from typing import Any

from orchestrate import _codec, _serde
from orchestrate._engine import decisions as decide
from orchestrate._engine import diversion as _diversion
from orchestrate._engine import hooks as _hooks
from orchestrate._engine.gates import await_review, open_flag
from orchestrate._engine.isolation import QUICK_SECONDS, SyncPlacement, call_in_process
from orchestrate._engine.state import Args, RunState, StepSpec, current_run
from orchestrate.errors import (
    DeadlineExceededError,
    NonDeterminismError,
    PayloadTooLargeError,
    StepFailedError,
    StepTimeoutError,
    error_info,
    redact_text,
)
from orchestrate.observe.correlation import STEP
from orchestrate.policies import MISSING, Fallback
from orchestrate.review._outcomes import continue_with
from orchestrate.store import _blobs
from orchestrate.store.base import AttemptState, Event, StepRecord
from orchestrate.types import StepStatus


async def run_step(ctx: RunState, spec: StepSpec, value: Any, key: str) -> tuple[Any, str | None]:
    """Run (or replay) the step ``key``; return ``(output, route target or None)``."""
    try:
        record = ctx.replayed(key, spec.name)
    except NonDeterminismError:
        record = await ctx.replayed_after_siblings(key, spec.name)
    gate = spec.gate
    diverted = None  # an alert's action on the step (_engine/diversion.py), when one took it
    if record is None:
        if key in ctx.overrides:
            value = ctx.overrides[key]
        if gate is not None and gate.at == "before":
            # The step's side effect waits for people: they approve (or edit) its input.
            value, route = await _gate_input(ctx, spec, key, value)
            if route is not None:
                return value, route
        if ctx.engine.diversions is not None:  # alert actions: asked only when attached to the engine
            diverted = await _diversion.decide(ctx, spec, key, ctx.engine.diversions)
        token = STEP.set(key)  # the correlation ids of log lines written by the step
        try:
            if diverted == "fallback":
                record = await _diverted_fallback(ctx, spec, value, key)
            else:
                record = await _execute(ctx, spec, value, key)
        finally:
            STEP.reset(token)
        if ctx.hooks is not None:
            _hooks.step_ended(ctx.hooks, ctx, spec, record)
    else:
        diverted = _diversion.recorded(ctx, key)  # what an alert decided on the first drive
    if record.meta and _blobs.PACKED in record.meta:
        record = await ctx.unpacked(record)  # compressed or offloaded: read back when needed
    output = ctx.output_of(record, spec)
    ctx.outputs[key] = output
    route = record.meta.get("route") if record.fallback else None
    if record.fallback is not None and "flag" in record.meta:
        await open_flag(ctx, record)  # people look at it; the run does not wait
    if gate is not None and gate.at == "after" and record.status is StepStatus.SUCCEEDED:
        output, gate_route = await _gate(ctx, spec, key, output)
        ctx.outputs[key] = output
        route = gate_route or route
    if diverted == "review" and record.status is StepStatus.SUCCEEDED:
        output, divert_route = await _diversion.review(ctx, spec, key, output)  # people look first
        ctx.outputs[key] = output
        route = divert_route or route
    return output, route


async def _diverted_fallback(ctx: RunState, spec: StepSpec, value: Any, key: str) -> StepRecord:
    """Take the step's fallbacks without calling it: an alert diverted it (``fallback_reason`` ``alert``)."""
    hashed = _serde.input_hash(value.for_hash() if isinstance(value, Args) else value)
    cache_key = f"{spec.cache_prefix}:{hashed}" if decide.wants_cache(spec.policy) else None
    error = _diversion.AlertDivertedError(f"step {key!r} was diverted to its fallback by an alert")
    now = ctx.engine.clock.now()
    gave_up = decide.GiveUp(error, reason="alert")
    return await _fallbacks(ctx, spec, value, key, hashed, cache_key, 0, now, gave_up, None, [])


async def _gate(ctx: RunState, spec: StepSpec, key: str, output: Any) -> tuple[Any, str | None]:
    """Park until people decide on the step's output (a review item on ``review:<key>``)."""
    outcome = await await_review(ctx, spec.gate, key=f"review:{key}", step_key=key, payload=output)
    return continue_with(
        outcome, rejected=f"step {key!r} was rejected by a reviewer", codec=spec.codec, where=f"step {key!r}"
    )


async def _gate_input(ctx: RunState, spec: StepSpec, key: str, value: Any) -> tuple[Any, str | None]:
    """Park until people approve the input of step ``key`` (a review item on ``review:<key>``).

    Returns the input to run with (edited when they edited it), or a route to take instead.
    """
    outcome = await await_review(ctx, spec.gate, key=f"review:{key}", step_key=key, payload=value, before=True)
    return continue_with(
        outcome,
        rejected=f"the input of step {key!r} was rejected by a reviewer",
        codec=_codec.plan_for(spec.plan.fn, spec.plan.first_type),
        where=f"the input of step {key!r}",
    )


async def _invoke(
    ctx: RunState, spec: StepSpec, fn_plan: Any, value: Any, key: str, attempt: int, timeout: float | None
) -> Any:
    plan = fn_plan
    if isinstance(value, Args):
        args, kwargs = value.args, dict(value.kwargs)
    else:
        args, kwargs = plan.arguments(value)
    if plan.wants_ctx:
        step_ctx = ctx.step_context(key, attempt, spec)
        if plan.ctx_index is not None and plan.ctx_index < len(args):
            # ``def fn(ctx, value)``: positional arguments go after ctx, not into it.
            args = (*args[: plan.ctx_index], step_ctx, *args[plan.ctx_index :])
        else:
            kwargs["ctx"] = step_ctx
    engine = ctx.engine
    isolation = spec.policy.isolation
    if plan.is_async:
        call = plan.fn(*args, **kwargs)
    elif isolation == "inline" and timeout is None:
        return plan.fn(*args, **kwargs)
    elif isolation == "process":
        call = call_in_process(plan.fn, args, kwargs)
    elif isolation == "auto" and timeout is None and engine._threads.placement.inline(plan.fn):
        # Only a step without a timeout runs on the loop: a call there cannot be stopped,
        # so a step with a timeout always runs where the engine can stop waiting for it.
        return _inline(ctx, plan.fn, args, kwargs, key, attempt)
    else:
        about = {"workflow": ctx.workflow, "run_id": ctx.run_id, "step": key, "attempt": attempt}
        # The thread runs in a copy of this task's context: log lines keep their ids.
        fn = plan.fn
        if isolation == "auto":  # timed in its thread: quick enough to run inline next time?
            fn, args = _learning, (engine._threads.placement, fn, *args)
        call = engine._threads.call(
            _in_context,
            (contextvars.copy_context(), fn, args, kwargs),
            {},
            owner=(ctx.workflow, spec.name),
            about=about,
        )
    if timeout is None:
        return await call
    return await _timed(ctx, call, key, attempt, timeout)


def _inline(ctx: RunState, fn: Any, args: tuple[Any, ...], kwargs: dict[str, Any], key: str, attempt: int) -> Any:
    """Call a sync function known to be quick on the loop, timed (see :mod:`.isolation`).

    A call that held the loop too long sends the function back to the threads
    (:class:`~.isolation.SyncPlacement`). Only steps without a timeout come here.
    """
    started = time.perf_counter()
    try:
        return_value = fn(*args, **kwargs)
    finally:
        ended = time.perf_counter()
        held = ended - started
        if held > QUICK_SECONDS:
            about = {"workflow": ctx.workflow, "run_id": ctx.run_id, "step": key, "attempt": attempt}
            ctx.engine._threads.placement.ran_inline(fn, held, about, now=ended)
    return return_value


def _learning(placement: SyncPlacement, fn: Any, *args: Any, **kwargs: Any) -> Any:
    """Call ``fn`` in its thread, timed: a quick call lets its next ones run inline."""
    started = time.perf_counter()
    try:
        return fn(*args, **kwargs)
    finally:
        placement.ran_in_thread(fn, time.perf_counter() - started)


def _in_context(context: contextvars.Context, fn: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    return context.run(_detached, fn, args, kwargs)


def _detached(fn: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    current_run.set(None)  # a thread is not the run's task: no ``ctx.step`` from there
    return fn(*args, **kwargs)


async def _timed(ctx: RunState, call: Awaitable[Any], key: str, attempt: int, timeout: float) -> Any:
    """Await ``call`` under the attempt's timeout.

    Only the engine's own timer firing becomes :class:`StepTimeoutError` (with the time it
    measured); a ``TimeoutError`` the step raised itself goes through with its own class,
    message and traceback.
    """
    clock = ctx.engine.clock
    started = clock.now()
    timer = asyncio.timeout(timeout)
    try:
        async with timer:
            return await call
    except TimeoutError:
        if not timer.expired():
            raise
        waited = clock.now() - started
        raise StepTimeoutError(
            f"step {key!r} attempt {attempt} timed out: no result after {waited:.3g}s (its limit is {timeout:g}s)"
        ) from None


def _execute(ctx: RunState, spec: StepSpec, value: Any, key: str) -> Awaitable[StepRecord]:
    """Run the step's attempts (through its cache and concurrency limit, if it has them)."""
    policy = spec.policy
    hashed = _serde.input_hash(value.for_hash() if isinstance(value, Args) else value)
    deadline_at = ctx.run.deadline_at
    if deadline_at is not None and decide.deadline_passed(deadline_at, ctx.engine.clock.now()):
        raise DeadlineExceededError(f"run {ctx.run_id} passed its deadline before step {key!r}")
    if policy.max_concurrency or policy.cache is not None or (policy.fallback and decide.wants_cache(policy)):
        return _execute_with_policy(ctx, spec, value, key, hashed)
    return _attempts(ctx, spec, value, key, hashed, None)  # the common case, one coroutine frame fewer


async def _execute_with_policy(ctx: RunState, spec: StepSpec, value: Any, key: str, hashed: str) -> StepRecord:
    engine = ctx.engine
    policy = spec.policy
    now = engine.clock.now()
    cache_key = f"{spec.cache_prefix}:{hashed}" if decide.wants_cache(policy) else None
    if policy.cache is not None and cache_key is not None:
        entry = await engine.store.cache_get(cache_key)
        if entry is not None and now - entry.stored_at <= policy.cache.ttl:
            cached, type_name = spec.codec.from_cache(entry.value)
            try:
                return await ctx.record(
                    _step_record(ctx, key, spec, hashed, decide.cached(cached, now=now, type_name=type_name)),
                    pack=spec,
                )
            except PayloadTooLargeError:
                pass  # cached under a higher payload limit: run the step, as on a miss
    if not policy.max_concurrency:
        return await _attempts(ctx, spec, value, key, hashed, cache_key)
    async with engine.step_semaphore(ctx.workflow, spec):
        return await _attempts(ctx, spec, value, key, hashed, cache_key)


def _step_record(ctx: RunState, key: str, spec: StepSpec, hashed: str, record: decide.Record) -> StepRecord:
    return StepRecord(
        run_id=ctx.run_id,
        step_key=key,
        name=spec.name,
        status=record.status,
        output=record.output,
        error=record.error,
        attempts=record.attempts,
        started_at=record.started_at,
        finished_at=record.finished_at,
        input_hash=hashed,
        fallback=record.fallback,
        meta=record.meta,
    )


async def _attempts(
    ctx: RunState, spec: StepSpec, value: Any, key: str, hashed: str, cache_key: str | None
) -> StepRecord:
    engine = ctx.engine
    clock = engine.clock
    policy = spec.policy
    deadline_at = ctx.run.deadline_at
    state = ctx.attempts.pop(key, None)
    attempt = state.attempts + 1 if state else 1
    first_started = state.first_started_at if state else None
    attempt_log: list[dict[str, Any]] = []
    if state is not None:
        await ctx.delay_until(state.next_at, reason=f"retry:{key}")
    hooks = ctx.hooks
    if hooks is not None:
        _hooks.step_started(hooks, ctx, spec, key, attempt, hashed)
    gave_up = None if deadline_at is None else decide.check_budget(policy, now=clock.now(), deadline_at=deadline_at)
    last_info: dict[str, Any] | None = None
    while gave_up is None:
        started = clock.now()
        if attempt > 1:
            STEP.set((key, attempt))  # reset with the step's own token in ``run_step``
        if first_started is None:
            first_started = started
        timeout = None
        if policy.timeout.total is not None or policy.timeout.attempt is not None or deadline_at is not None:
            gave_up = decide.before_attempt(policy.timeout, key, now=started, first_started=first_started)
            if gave_up is not None:
                break
            timeout = decide.attempt_timeout(
                policy.timeout, now=started, first_started=first_started, deadline_at=deadline_at
            )
        plan = spec.plan
        try:
            if plan.is_async and timeout is None and not plan.wants_ctx and type(value) is not Args:
                args, kwargs = plan.arguments(value)  # the common case, one coroutine frame fewer
                output = await plan.fn(*args, **kwargs)
            else:
                output = await _invoke(ctx, spec, plan, value, key, attempt, timeout)
        except Exception as exc:  # noqa: BLE001 - every step error goes through the policy
            finished = clock.now()
            info = error_info(exc, with_traceback=True)
            attempt_log.append(decide.attempt_entry(attempt, info["name"], started, finished))
            decision = decide.after_failure(
                policy, attempt, exc, finished=finished, first_started=first_started, deadline_at=deadline_at
            )
            retry = decision if isinstance(decision, decide.Retry) else None
            _attempt_failed(ctx, spec, key, attempt, exc, info, started, finished, retry)
            if retry is None:
                gave_up, last_info = decide.GiveUp(exc), info
                break
            await _retry_later(ctx, spec, key, attempt, first_started, finished, info, retry)
            attempt += 1
            continue
        # The common case, inline: a coroutine of its own would cost every step a frame.
        finished = clock.now()
        model = _model_quality(output)
        route = None
        if isinstance(output, Fallback):
            route, output = output.target, output.payload
        # Refused here, on the first drive, if it would not come back the same after a restart.
        stored, handed, type_name = spec.codec.settle(output, f"step {key!r}")
        drift = engine.drift  # quality: a drift monitor's score of the step, when one is attached
        drift_score = None if drift is None else drift.score(ctx.workflow, spec.name)
        meta = decide.success_meta(first_started, finished, type_name, model, attempt_log, route, output, drift_score)
        record = StepRecord(
            run_id=ctx.run_id,
            step_key=key,
            name=spec.name,
            status=StepStatus.SUCCEEDED,
            output=stored,
            attempts=attempt,
            started_at=first_started,
            finished_at=finished,
            input_hash=hashed,
            fallback=f"route:{route}" if route else None,
            meta=meta,
        )
        event = (
            Event(run_id=ctx.run_id, kind="step_routed", at=finished, step_key=key, data={"target": route})
            if route
            else None
        )
        try:
            if cache_key is not None and route is None:
                await engine.store.cache_put(cache_key, spec.codec.to_cache(stored, type_name), now=finished)
            written = await ctx.record(record, event=event, pack=spec)
        except PayloadTooLargeError as exc:
            # Too large to store: the step failed, and another attempt would return as much.
            # (Without its traceback, whose frames hold the value and its JSON.)
            error = exc.with_traceback(None)
            gave_up, last_info = decide.GiveUp(error), error_info(error)
            attempt_log.append(decide.attempt_entry(attempt, last_info["name"], started, finished))
            break
        if handed is not stored and written is record:
            ctx.handed[key] = (record, handed)
        if ctx.log_info:
            ctx.log.info(
                "step_succeeded",
                workflow=ctx.workflow,
                run_id=ctx.run_id,
                step=key,
                attempts=attempt,
                latency_ms=meta["latency_ms"],
                input_hash=hashed,
                fallback=record.fallback,
            )
        return written
    if first_started is None:  # no attempt was made (not enough budget left)
        first_started = clock.now()
    return await _fallbacks(
        ctx, spec, value, key, hashed, cache_key, attempt, first_started, gave_up, last_info, attempt_log
    )


def _attempt_failed(
    ctx: RunState,
    spec: StepSpec,
    key: str,
    attempt: int,
    exc: BaseException,
    info: dict[str, Any],
    started: float,
    finished: float,
    retry: decide.Retry | None,
) -> None:
    delay = retry.delay if retry is not None else None
    ctx.log.warning(
        "step_attempt_failed",
        workflow=ctx.workflow,
        run_id=ctx.run_id,
        step=key,
        attempt=attempt,
        error_class=type(exc).__qualname__,
        error=info["message"],
        retry_in=delay,
    )
    if ctx.hooks is not None:
        _hooks.attempt_failed(ctx.hooks, ctx, spec, key, attempt, exc, finished - started, delay, finished)


async def _retry_later(
    ctx: RunState,
    spec: StepSpec,
    key: str,
    attempt: int,
    first_started: float,
    finished: float,
    info: dict[str, Any],
    retry: decide.Retry,
) -> None:
    """Save the retry's timer (it survives a restart), then wait for it or park the run."""
    state = AttemptState(
        run_id=ctx.run_id, step_key=key, attempts=attempt, next_at=retry.at, first_started_at=first_started, error=info
    )
    data = {"attempt": attempt, "error": info, "delay": round(retry.delay, 3)}
    await ctx.engine.store.save_attempts(
        state, fence=ctx.fence, event=Event(run_id=ctx.run_id, kind="step_retry", at=finished, step_key=key, data=data)
    )
    ctx.attempts[key] = state
    if ctx.hooks is not None:
        _hooks.retried(ctx.hooks, ctx, spec, key, attempt + 1, retry.delay, finished)
    await ctx.delay_until(retry.at, reason=f"retry:{key}")
    ctx.attempts.pop(key, None)


async def _fallbacks(
    ctx: RunState,
    spec: StepSpec,
    value: Any,
    key: str,
    hashed: str,
    cache_key: str | None,
    attempts: int,
    first_started: float,
    gave_up: decide.GiveUp,
    error_details: dict[str, Any] | None,
    attempt_log: list[dict[str, Any]],
) -> StepRecord:
    """Take the step's fallbacks in order; record the first that gives an output, or the failure."""
    clock = ctx.engine.clock
    info = error_details or error_info(gave_up.error)
    tried: list[dict[str, Any]] = []
    chain = spec.policy.fallback
    use = decide.next_fallback(chain, -1)
    while use is not None:
        fallback = use.fallback
        stored = await _try_fallback(
            ctx,
            spec,
            value,
            key,
            hashed,
            cache_key,
            fallback,
            attempts,
            first_started,
            gave_up,
            info,
            attempt_log,
            tried,
        )
        if stored is not None:
            return stored
        use = decide.next_fallback(chain, use.index)
    finished = clock.now()
    outcome = decide.failed(
        error=info,
        attempts=attempts,
        first_started=first_started,
        finished=finished,
        attempt_log=attempt_log,
        tried=tried,
    )
    stored = await ctx.record(
        _step_record(ctx, key, spec, hashed, outcome),
        event=Event(
            run_id=ctx.run_id, kind="step_failed", at=finished, step_key=key, data={"error": info, "attempts": attempts}
        ),
    )
    if ctx.hooks is not None:
        _hooks.step_ended(ctx.hooks, ctx, spec, stored)
    ctx.engine.log.error(
        "step_failed",
        workflow=ctx.workflow,
        run_id=ctx.run_id,
        step=key,
        attempts=attempts,
        error_class=info["name"],
        error=info["message"],
        input_hash=hashed,
    )
    raise StepFailedError(
        f"step {key!r} failed after {attempts} attempt(s): {info['name']}: {info['message']}",
        step=key,
        cause_type=info["type"],
    )


async def _try_fallback(
    ctx: RunState,
    spec: StepSpec,
    value: Any,
    key: str,
    hashed: str,
    cache_key: str | None,
    fallback: Fallback,
    attempts: int,
    first_started: float,
    gave_up: decide.GiveUp,
    info: dict[str, Any],
    attempt_log: list[dict[str, Any]],
    tried: list[dict[str, Any]],
) -> StepRecord | None:
    """Record ``fallback``'s output; ``None`` (noted in ``tried``) when it gave none."""
    engine = ctx.engine
    clock = engine.clock
    type_name: str | None = None
    try:
        if fallback.kind == "cached":
            entry = await engine.store.cache_get(cache_key) if cache_key else None
            if entry is None or not decide.cached_usable(fallback, stored_at=entry.stored_at, now=clock.now()):
                tried.append({"fallback": "cached", "error": "no cached output"})
                return None
            output, type_name = spec.codec.from_cache(entry.value)
        elif fallback.kind == "call":
            assert fallback.fn is not None  # validated by Fallback.call
            plan = engine.plan_for(fallback.fn)
            backup = StepSpec(spec.name, plan, spec.policy, options=spec.options)
            now = clock.now()
            timeout = decide.attempt_timeout(
                spec.policy.timeout, now=now, first_started=now, deadline_at=ctx.run.deadline_at
            )
            output = await _invoke(ctx, backup, plan, value, key, attempts, timeout)
        elif fallback.kind == "value":
            output = fallback.payload
        else:
            output = MISSING
    except Exception as exc:  # noqa: BLE001 - a failing fallback hands over to the next
        tried.append({"fallback": fallback.label, "error": redact_text(f"{type(exc).__qualname__}: {exc}")})
        return None
    skipped = fallback.kind not in ("cached", "call", "value")
    handed: Any = output
    if not skipped and fallback.kind != "cached":
        output, handed, type_name = spec.codec.settle(output, f"step {key!r} (fallback {fallback.label})")
    finished = clock.now()
    outcome = decide.fell_back(
        fallback,
        output,
        skipped=skipped,
        error=info,
        reason=gave_up.reason,
        attempts=attempts,
        first_started=first_started,
        finished=finished,
        type_name=type_name,
        attempt_log=attempt_log,
        tried=tried,
    )
    record = _step_record(ctx, key, spec, hashed, outcome)
    data = {"fallback": fallback.label, "reason": outcome.meta["fallback_reason"], "error": info}
    if fallback.flag:
        data["flag"] = fallback.flag
    try:
        stored = await ctx.record(
            record,
            event=Event(run_id=ctx.run_id, kind="step_fallback", at=finished, step_key=key, data=data),
            pack=spec,
        )
    except PayloadTooLargeError as exc:
        tried.append({"fallback": fallback.label, "error": redact_text(f"{type(exc).__qualname__}: {exc}")})
        return None
    if handed is not output and stored is record:
        ctx.handed[key] = (record, handed)
    engine.log.warning(
        "step_fallback",
        workflow=ctx.workflow,
        run_id=ctx.run_id,
        step=key,
        attempts=attempts,
        error_class=info["name"],
        fallback=fallback.label,
        flag=fallback.flag,
        input_hash=hashed,
    )
    return stored


_PLAIN = frozenset({int, str, float, bool, dict, list, tuple, type(None)})


def _model_quality(output: Any) -> dict[str, Any] | None:
    """Model, tokens and cost of a step that returned a model result (duck-typed: the
    engine never imports the model layer)."""
    if type(output) in _PLAIN:
        return None
    usage = getattr(output, "usage", None)
    tokens_in = getattr(usage, "input_tokens", None)
    if not isinstance(tokens_in, int):
        return None
    quality: dict[str, Any] = {
        "model": getattr(output, "model", None),
        "version": getattr(output, "version", None),
        "tokens_in": tokens_in,
        "tokens_out": getattr(usage, "output_tokens", 0),
    }
    cost = getattr(output, "cost", None)
    if isinstance(cost, int | float):
        quality["cost"] = cost
    extra = getattr(output, "meta", None)
    if isinstance(extra, dict) and extra.get("cache"):
        quality["cache"] = extra["cache"]
    return quality
