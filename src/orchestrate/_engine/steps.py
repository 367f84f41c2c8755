"""Executing one step under its policy: cache, budget, attempts, retries, fallbacks, gate."""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Awaitable
from typing import Any

from orchestrate import _codec, _serde
from orchestrate._engine import hooks as _hooks
from orchestrate._engine.context import RunContext, StepSpec, _Args, current_run
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
from orchestrate.store.base import AttemptState, Event, StepRecord
from orchestrate.types import StepStatus


async def run_step(ctx: RunContext, spec: StepSpec, value: Any, key: str) -> tuple[Any, str | None]:
    """Run (or replay) the step ``key``; return ``(output, route target or None)``."""
    try:
        record = ctx.replayed(key, spec.name)
    except NonDeterminismError:
        record = await ctx.replayed_after_siblings(key, spec.name)
    gate = spec.gate
    if record is None:
        if key in ctx.overrides:
            value = ctx.overrides[key]
        if gate is not None and gate.at == "before":
            # The step's side effect waits for people: they approve (or edit) its input.
            value, route = await _gate_input(ctx, spec, key, value)
            if route is not None:
                return value, route
        token = STEP.set(key)  # the correlation ids of log lines written by the step
        try:
            record = await _execute(ctx, spec, value, key)
        finally:
            STEP.reset(token)
        if ctx.hooks is not None:
            _hooks.step_ended(ctx.hooks, ctx, spec, record)
    output = ctx.output_of(record, spec)
    ctx.outputs[key] = output
    route = record.meta.get("route") if record.fallback else None
    if record.fallback is not None and "flag" in record.meta:
        from orchestrate.review._runtime import open_flag

        await open_flag(ctx, record)  # people look at it; the run does not wait
    if gate is not None and gate.at == "after" and record.status is StepStatus.SUCCEEDED:
        output, gate_route = await _gate(ctx, spec, key, output)
        ctx.outputs[key] = output
        route = gate_route or route
    return output, route


async def _gate(ctx: RunContext, spec: StepSpec, key: str, output: Any) -> tuple[Any, str | None]:
    """Park until people decide on the step's output (a review item on ``review:<key>``)."""
    from orchestrate.review._runtime import await_review, continue_with

    outcome = await await_review(ctx, spec.gate, key=f"review:{key}", step_key=key, payload=output)
    return continue_with(
        outcome, rejected=f"step {key!r} was rejected by a reviewer", codec=spec.codec, where=f"step {key!r}"
    )


async def _gate_input(ctx: RunContext, spec: StepSpec, key: str, value: Any) -> tuple[Any, str | None]:
    """Park until people approve the input of step ``key`` (a review item on ``review:<key>``).

    Returns the input to run with (edited when they edited it), or a route to take instead.
    """
    from orchestrate.review._runtime import await_review, continue_with

    outcome = await await_review(ctx, spec.gate, key=f"review:{key}", step_key=key, payload=value, before=True)
    return continue_with(
        outcome,
        rejected=f"the input of step {key!r} was rejected by a reviewer",
        codec=_codec.plan_for(spec.plan.fn, spec.plan.first_type),
        where=f"the input of step {key!r}",
    )


async def _invoke(
    ctx: RunContext, spec: StepSpec, fn_plan: Any, value: Any, key: str, attempt: int, timeout: float | None
) -> Any:
    plan = fn_plan
    if isinstance(value, _Args):
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
    if plan.is_async:
        call = plan.fn(*args, **kwargs)
    elif spec.policy.isolation == "inline" and timeout is None:
        return plan.fn(*args, **kwargs)
    elif spec.policy.isolation == "process":
        from orchestrate._engine.isolation import call_in_process

        call = call_in_process(plan.fn, args, kwargs)
    else:
        about = {"workflow": ctx.workflow, "run_id": ctx.run_id, "step": key, "attempt": attempt}
        # The thread runs in a copy of this task's context: log lines keep their ids.
        call = engine._threads.call(
            _in_context,
            (contextvars.copy_context(), plan.fn, args, kwargs),
            {},
            owner=(ctx.workflow, spec.name),
            about=about,
        )
    if timeout is None:
        return await call
    return await _timed(ctx, call, key, attempt, timeout)


def _in_context(context: contextvars.Context, fn: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    return context.run(_detached, fn, args, kwargs)


def _detached(fn: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    current_run.set(None)  # a thread is not the run's task: no ``ctx.step`` from there
    return fn(*args, **kwargs)


async def _timed(ctx: RunContext, call: Awaitable[Any], key: str, attempt: int, timeout: float) -> Any:
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


def _attempt_timeout(ctx: RunContext, spec: StepSpec, now: float, first_started: float) -> float | None:
    policy = spec.policy.timeout
    if policy.attempt is None and policy.total is None and ctx.run.deadline_at is None:
        return None  # the common case, without building a list
    limits = []
    if policy.attempt is not None:
        limits.append(policy.attempt)
    if policy.total is not None:
        limits.append(policy.total - (now - first_started))
    if ctx.run.deadline_at is not None:
        limits.append(ctx.run.deadline_at - now)
    if not limits:
        return None
    return max(min(limits), 0.001)


def _execute(ctx: RunContext, spec: StepSpec, value: Any, key: str) -> Awaitable[StepRecord]:
    """Run the step's attempts (through its cache and concurrency limit, if it has them)."""
    policy = spec.policy
    hashed = _serde.input_hash(value.for_hash() if isinstance(value, _Args) else value)
    if ctx.run.deadline_at is not None and ctx.engine.clock.now() >= ctx.run.deadline_at:
        raise DeadlineExceededError(f"run {ctx.run_id} passed its deadline before step {key!r}")
    if policy.max_concurrency or policy.cache is not None or _wants_cache(policy):
        return _execute_with_policy(ctx, spec, value, key, hashed)
    return _attempts(ctx, spec, value, key, hashed, None)  # the common case, one coroutine frame fewer


async def _execute_with_policy(ctx: RunContext, spec: StepSpec, value: Any, key: str, hashed: str) -> StepRecord:
    engine = ctx.engine
    policy = spec.policy
    now = engine.clock.now()
    cache_key = f"{spec.cache_prefix}:{hashed}" if (policy.cache or _wants_cache(policy)) else None
    if policy.cache is not None and cache_key is not None:
        entry = await engine.store.cache_get(cache_key)
        if entry is not None and now - entry.stored_at <= policy.cache.ttl:
            cached, type_name = spec.codec.from_cache(entry.value)
            meta: dict[str, Any] = {"cached": True, "latency_ms": 0.0}
            if type_name is not None:
                meta[_codec.TYPE_KEY] = type_name
            try:
                return await ctx.record(
                    StepRecord(
                        ctx.run_id,
                        key,
                        spec.name,
                        StepStatus.SUCCEEDED,
                        cached,
                        attempts=0,
                        started_at=now,
                        finished_at=now,
                        input_hash=hashed,
                        meta=meta,
                    )
                )
            except PayloadTooLargeError:
                pass  # cached under a higher payload limit: run the step, as on a miss
    if not policy.max_concurrency:
        return await _attempts(ctx, spec, value, key, hashed, cache_key)
    async with engine.step_semaphore(ctx.workflow, spec):
        return await _attempts(ctx, spec, value, key, hashed, cache_key)


def _wants_cache(policy: Any) -> bool:
    return bool(policy.fallback) and any(f.kind == "cached" for f in policy.fallback)


async def _attempts(
    ctx: RunContext, spec: StepSpec, value: Any, key: str, hashed: str, cache_key: str | None
) -> StepRecord:
    engine = ctx.engine
    clock = engine.clock
    policy = spec.policy
    log = ctx.log
    state = ctx.attempts.pop(key, None)
    attempt = state.attempts + 1 if state else 1
    first_started = state.first_started_at if state else None
    attempt_log: list[dict[str, Any]] = []
    if state is not None:
        await ctx.delay_until(state.next_at, reason=f"retry:{key}")
    hooks = ctx.hooks
    if hooks is not None:
        _hooks.step_started(hooks, ctx, spec, key, attempt, hashed)
    last_error: BaseException | None = None
    last_info: dict[str, Any] | None = None
    reason = None
    remaining = None if ctx.run.deadline_at is None else ctx.run.deadline_at - clock.now()
    if policy.min_budget is not None and remaining is not None and remaining < policy.min_budget and policy.fallback:
        reason = "budget"
        last_error = DeadlineExceededError(f"{remaining:.3f}s of budget left, step needs {policy.min_budget:g}s")
    while reason is None:
        started = clock.now()
        if attempt > 1:
            STEP.set((key, attempt))  # reset with the step's own token in ``run_step``
        if first_started is None:
            first_started = started
        if policy.timeout.total is not None and started - first_started >= policy.timeout.total:
            last_error = StepTimeoutError(f"step {key!r} exceeded its total timeout of {policy.timeout.total:g}s")
            break
        timeout = (
            None
            if policy.timeout.attempt is None and policy.timeout.total is None and ctx.run.deadline_at is None
            else _attempt_timeout(ctx, spec, started, first_started)
        )
        plan = spec.plan
        try:
            if plan.is_async and timeout is None and not plan.wants_ctx and type(value) is not _Args:
                args, kwargs = plan.arguments(value)  # the common case, one coroutine frame fewer
                output = await plan.fn(*args, **kwargs)
            else:
                output = await _invoke(ctx, spec, plan, value, key, attempt, timeout)
        except Exception as exc:  # noqa: BLE001 - every step error goes through the policy
            finished = clock.now()
            info = error_info(exc, with_traceback=True)
            attempt_log.append({"attempt": attempt, "error": info["name"], "ms": round((finished - started) * 1000, 3)})
            delay = policy.retry.next_delay(attempt, exc)
            if (
                delay is not None
                and policy.timeout.total is not None
                and finished + delay - first_started >= policy.timeout.total
            ):
                delay = None
            if delay is not None and ctx.run.deadline_at is not None and finished + delay >= ctx.run.deadline_at:
                delay = None
            log.warning(
                "step_attempt_failed",
                workflow=ctx.workflow,
                run_id=ctx.run_id,
                step=key,
                attempt=attempt,
                error_class=type(exc).__qualname__,
                error=info["message"],
                retry_in=delay,
            )
            if hooks is not None:
                _hooks.attempt_failed(hooks, ctx, spec, key, attempt, exc, finished - started, delay, finished)
            if delay is None:
                last_error = exc
                last_info = info
                break
            next_at = finished + delay
            new_state = AttemptState(ctx.run_id, key, attempt, next_at, first_started, info)
            await engine.store.save_attempts(
                new_state,
                fence=ctx.fence,
                event=Event(
                    ctx.run_id,
                    "step_retry",
                    finished,
                    key,
                    {"attempt": attempt, "error": info, "delay": round(delay, 3)},
                ),
            )
            ctx.attempts[key] = new_state
            if hooks is not None:
                _hooks.retried(hooks, ctx, spec, key, attempt + 1, delay, finished)
            await ctx.delay_until(next_at, reason=f"retry:{key}")
            ctx.attempts.pop(key, None)
            attempt += 1
            continue
        finished = clock.now()
        meta: dict[str, Any] = {"latency_ms": round((finished - first_started) * 1000, 3)}
        model = _model_quality(output)
        if model is not None:
            meta["model"] = model
        if attempt_log:
            meta["attempt_log"] = attempt_log
        route = None
        if isinstance(output, Fallback):
            route, output = output.target, output.payload
            meta["route"] = route
        # Refused here, on the first drive, if it would not come back the same after a restart.
        stored, handed, type_name = spec.codec.settle(output, f"step {key!r}")
        if type_name is not None:
            meta[_codec.TYPE_KEY] = type_name
        record = StepRecord(
            ctx.run_id,
            key,
            spec.name,
            StepStatus.SUCCEEDED,
            stored,
            attempts=attempt,
            started_at=first_started,
            finished_at=finished,
            input_hash=hashed,
            fallback=f"route:{route}" if route else None,
            meta=meta,
        )
        event = Event(ctx.run_id, "step_routed", finished, key, {"target": route}) if route else None
        try:
            if cache_key is not None and route is None:
                await engine.store.cache_put(cache_key, spec.codec.to_cache(stored, type_name), now=finished)
            written = await ctx.record(record, event=event)
        except PayloadTooLargeError as exc:
            # Too large to store: the step failed, and another attempt would return as much.
            # (Without its traceback, whose frames hold the value and its JSON.)
            last_error = exc.with_traceback(None)
            last_info = error_info(last_error)
            attempt_log.append(
                {"attempt": attempt, "error": last_info["name"], "ms": round((finished - started) * 1000, 3)}
            )
            break
        if handed is not stored and written is record:
            ctx.handed[key] = (record, handed)
        if ctx.log_info:
            log.info(
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
    assert last_error is not None
    if first_started is None:  # no attempt was made (not enough budget left)
        first_started = clock.now()
    return await _fallbacks(
        ctx, spec, value, key, hashed, cache_key, attempt, first_started, last_error, last_info, attempt_log, reason
    )


async def _fallbacks(
    ctx: RunContext,
    spec: StepSpec,
    value: Any,
    key: str,
    hashed: str,
    cache_key: str | None,
    attempts: int,
    first_started: float,
    error: BaseException,
    error_details: dict[str, Any] | None,
    attempt_log: list[dict[str, Any]],
    reason: str | None,
) -> StepRecord:
    engine = ctx.engine
    clock = engine.clock
    info = error_details or error_info(error)
    tried: list[dict[str, Any]] = []
    for fallback in spec.policy.fallback:
        status = StepStatus.SUCCEEDED
        type_name: str | None = None
        try:
            if fallback.kind == "cached":
                entry = await engine.store.cache_get(cache_key) if cache_key else None
                if entry is None or (fallback.max_age is not None and clock.now() - entry.stored_at > fallback.max_age):
                    tried.append({"fallback": "cached", "error": "no cached output"})
                    continue
                output, type_name = spec.codec.from_cache(entry.value)
            elif fallback.kind == "call":
                from orchestrate._engine.context import StepSpec as _Spec

                assert fallback.fn is not None  # validated by Fallback.call
                plan = engine.plan_for(fallback.fn)
                backup = _Spec(spec.name, plan, spec.policy, options=spec.options)
                output = await _invoke(
                    ctx, backup, plan, value, key, attempts, _attempt_timeout(ctx, spec, clock.now(), clock.now())
                )
            elif fallback.kind == "value":
                output = fallback.payload
            else:
                output, status = MISSING, StepStatus.SKIPPED
        except Exception as exc:  # noqa: BLE001 - a failing fallback hands over to the next
            tried.append({"fallback": fallback.label, "error": redact_text(f"{type(exc).__qualname__}: {exc}")})
            continue
        handed: Any = output
        if status is StepStatus.SUCCEEDED and fallback.kind != "cached":
            output, handed, type_name = spec.codec.settle(output, f"step {key!r} (fallback {fallback.label})")
        finished = clock.now()
        meta: dict[str, Any] = {
            "latency_ms": round((finished - first_started) * 1000, 3),
            "fallback_reason": reason or info["name"],
            "error_class": info["name"],
        }
        if fallback.flag:
            meta["flag"] = fallback.flag
        if type_name is not None:
            meta[_codec.TYPE_KEY] = type_name
        if attempt_log:
            meta["attempt_log"] = attempt_log
        if tried:
            meta["fallbacks_failed"] = tried
        record = StepRecord(
            ctx.run_id,
            key,
            spec.name,
            status,
            None if status is StepStatus.SKIPPED else output,
            error=info,
            attempts=attempts,
            started_at=first_started,
            finished_at=finished,
            input_hash=hashed,
            fallback=fallback.label,
            meta=meta,
        )
        data = {"fallback": fallback.label, "reason": meta["fallback_reason"], "error": info}
        if fallback.flag:
            data["flag"] = fallback.flag
        try:
            stored = await ctx.record(record, event=Event(ctx.run_id, "step_fallback", finished, key, data))
        except PayloadTooLargeError as exc:
            tried.append({"fallback": fallback.label, "error": redact_text(f"{type(exc).__qualname__}: {exc}")})
            continue
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
    finished = clock.now()
    meta = {"latency_ms": round((finished - first_started) * 1000, 3), "error_class": info["name"]}
    if attempt_log:
        meta["attempt_log"] = attempt_log
    if tried:
        meta["fallbacks_failed"] = tried
    record = StepRecord(
        ctx.run_id,
        key,
        spec.name,
        StepStatus.FAILED,
        None,
        error=info,
        attempts=attempts,
        started_at=first_started,
        finished_at=finished,
        input_hash=hashed,
        meta=meta,
    )
    stored = await ctx.record(
        record, event=Event(ctx.run_id, "step_failed", finished, key, {"error": info, "attempts": attempts})
    )
    if ctx.hooks is not None:
        _hooks.step_ended(ctx.hooks, ctx, spec, stored)
    engine.log.error(
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
