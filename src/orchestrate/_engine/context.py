"""Per-run state during execution, and the public ``RunContext`` of durable functions."""

from __future__ import annotations

import asyncio
import contextvars
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any

from orchestrate import _codec, _serde
from orchestrate._engine.hooks import hooks_of
from orchestrate.errors import NonDeterminismError, StepFailedError, StepTimeoutError
from orchestrate.policies import MISSING, Fallback, StepPolicy
from orchestrate.store.base import AttemptState, Event, RunRecord, RunUpdate, StepRecord
from orchestrate.types import RunStatus, StepStatus
from orchestrate.workflow import CallPlan

if TYPE_CHECKING:
    from orchestrate._engine.runner import Engine
    from orchestrate.review.gate import ReviewOutcome


current_run: contextvars.ContextVar[RunContext | None] = contextvars.ContextVar("orchestrate_run", default=None)
"""The run being executed by this task (inherited by tasks it creates)."""


class Suspend(BaseException):
    """Unwinds a run that must park: on a timer (``wake_at``) or for a signal."""

    def __init__(self, *, wake_at: float | None, reason: str, signal: str | None = None) -> None:
        super().__init__(reason)
        self.wake_at = wake_at
        self.reason = reason
        self.signal = signal


@dataclass(frozen=True)
class StepSpec:
    """What the engine needs to run one step: name, call plan, policy, options."""

    name: str
    plan: CallPlan
    policy: StepPolicy
    gate: Any = None
    options: dict[str, Any] = field(default_factory=dict)

    @cached_property
    def codec(self) -> _codec.Plan:
        """How this step's outputs are stored and revived (see :mod:`orchestrate._codec`)."""
        return _codec.plan_for(self.plan.fn, self.plan.returns)

    @property
    def cache_prefix(self) -> str:
        """Cache keys: step name and a fingerprint of its code."""
        return f"{self.name}:{_code_fingerprint(self.plan.fn)}"


_FINGERPRINTS: dict[Any, str] = {}


def _code_fingerprint(fn: Any) -> str:
    found = _FINGERPRINTS.get(fn)
    if found is None:
        from orchestrate.workflow import _source

        found = _serde.input_hash(_source(fn))[:8]
        _FINGERPRINTS[fn] = found
    return found


@dataclass
class StepContext:
    """Handed to a step function that declares a ``ctx`` parameter.

    Attributes:
        run_id: the run.
        step_key: this step's key in the run.
        attempt: 1 for the first attempt.
        idempotency_key: stable across attempts and resumes; pass it to external APIs.
        options: the step's free-form options (``model=``...).
        missing: keys of steps that were skipped; their outputs are ``MISSING``.
        deadline_at: the run's deadline (POSIX seconds) or ``None``.
    """

    run_id: str
    step_key: str
    attempt: int
    idempotency_key: str
    options: dict[str, Any]
    missing: frozenset[str]
    deadline_at: float | None


class RunContext:
    """The handle a durable function uses to run durable steps.

    ``await ctx.step(fn, *args, **policy)`` runs ``fn`` once per run (replayed from the
    store afterwards); ``await ctx.sleep(seconds)``, ``await ctx.wait(key)`` and
    ``await ctx.review(payload, ...)`` park the run without holding a worker.
    """

    def __init__(
        self,
        engine: Engine,
        run: RunRecord,
        recorded: dict[str, StepRecord],
        attempts: dict[str, AttemptState],
        *,
        check_order: bool,
    ) -> None:
        self.engine = engine
        # The logger as configured when the run started, resolved once: the engine's
        # logger looks the configuration up on every call, a cost the per-step path
        # should not pay.
        self.log: Any = engine.log.bind()
        enabled = getattr(self.log, "is_enabled_for", None)
        self.log_info = enabled(logging.INFO) if callable(enabled) else True  # skip building filtered lines
        # The run's observers, or None: the one attribute each event's call site checks.
        self.hooks = hooks_of(engine)
        self.run = run
        self.run_id = run.run_id
        self.workflow = run.workflow
        self.version = run.version
        self.input = run.input
        self.recorded = recorded
        self.attempts = attempts
        self.outputs: dict[str, Any] = {}
        # Values of a declared or named type revived when their record was written, by
        # step key with that record: spares reviving them again right away.
        self.handed: dict[str, tuple[StepRecord, Any]] = {}
        self.missing: set[str] = set()
        self.flags: list[str] = []
        self.jump_targets: frozenset[str] = frozenset()
        self.last_key: str | None = None
        # The step whose successful record also ends the run (the last node of a graph,
        # when it is a plain step): one transaction instead of two. ``finished`` says it did.
        self.final_key: str | None = None
        self.finished = False
        self._counts: dict[str, int] = {}
        # Replays of durable functions must consume the history in order.
        self._unconsumed = [k for k in recorded if not k.startswith(("wait:", "sleep:"))] if check_order else []
        self._check_order = check_order
        self.overrides: dict[str, Any] = dict(run.options.get("overrides", {}))

    # public API ---------------------------------------------------------------------------
    @property
    def fence(self) -> int:
        """The fencing token this execution writes under."""
        return self.run.fence

    async def step(
        self,
        fn: Callable[..., Any],
        *args: Any,
        name: str | None = None,
        key: str | None = None,
        **kwargs: Any,
    ) -> Any:
        """Run ``fn(*args, **kwargs)`` as a durable step and return its output.

        Policy keywords (``retry``, ``timeout``, ``fallback``, ``cache``,
        ``max_concurrency``, ``isolation``, ``min_budget``) configure the step; other
        keywords are passed to ``fn``. The step key is ``name`` (default: the function's
        name), suffixed ``#2``, ``#3``... on repeated calls, unless ``key`` is given.
        """
        policy_args = {k: kwargs.pop(k) for k in _POLICY_KEYS if k in kwargs}
        step_name = name or str(getattr(fn, "__name__", "step"))
        spec = self.engine.spec_for(fn, step_name, policy_args)
        step_key = key or self._next_key(step_name)
        self.last_key = step_key
        value = _Args(args, kwargs)
        from orchestrate._engine.steps import run_step

        output, route = await run_step(self, spec, value, step_key)
        if route is not None:
            return Fallback(route, output)
        return output

    async def gather(self, *aws: Awaitable[Any]) -> list[Any]:
        """Like ``asyncio.gather`` but lets every branch finish or park before parking the run."""
        return await gather_all(aws)

    async def sleep(self, seconds: float, *, key: str | None = None) -> None:
        """Durable sleep: survives restarts; long sleeps release the worker."""
        step_key = f"sleep:{key or self._next_key('sleep')}"
        if step_key in self.recorded:
            return
        now = self.engine.clock.now()
        state = self.attempts.get(step_key)
        if state is None:
            state = AttemptState(self.run_id, step_key, 0, now + seconds, now)
            await self.engine.store.save_attempts(
                state,
                fence=self.fence,
                event=Event(self.run_id, "timer_set", now, step_key, {"wake_at": state.next_at}),
            )
            self.attempts[step_key] = state
        await self.delay_until(state.next_at, reason=f"sleep:{step_key}")
        await self.record(
            StepRecord(
                self.run_id,
                step_key,
                step_key,
                StepStatus.SUCCEEDED,
                None,
                started_at=state.first_started_at,
                finished_at=self.engine.clock.now(),
            )
        )

    async def wait(self, key: str, *, timeout: float | None = None, payload: Any = None) -> Any:
        """Park until ``Client.signal(run_id, key, value)`` delivers a value; return it.

        Raises:
            StepTimeoutError: no signal came within ``timeout`` seconds.
        """
        step_key = f"wait:{key}"
        found = self.recorded.get(step_key)
        if found is not None:
            return found.output
        now = self.engine.clock.now()
        state = self.attempts.get(step_key)
        if state is None:
            deadline = now + timeout if timeout is not None else float("inf")
            state = AttemptState(self.run_id, step_key, 0, deadline if timeout is not None else 0.0, now)
            await self.engine.store.save_attempts(
                state,
                fence=self.fence,
                event=Event(self.run_id, "wait_started", now, step_key, {"timeout": timeout, "payload": payload}),
            )
            self.attempts[step_key] = state
        if timeout is not None and state.next_at and now >= state.next_at:
            raise StepTimeoutError(f"no signal {key!r} for run {self.run_id} within {timeout}s")
        raise Suspend(wake_at=state.next_at or None, reason=f"signal:{key}", signal=step_key)

    async def review(
        self,
        payload: Any,
        *,
        gate: Any = None,
        key: str | None = None,
        step: str | None = None,
        **options: Any,
    ) -> ReviewOutcome:
        """Park until people decide on ``payload``; return how they decided.

        ``gate`` is a :class:`~orchestrate.review.HumanReviewGate` or a
        :class:`~orchestrate.review.TieredGate`; without it the keywords build a
        ``HumanReviewGate`` (``roles=``, ``required_approvals=``, ``timeout=``,
        ``priority=``...). The review's key is ``key`` (default ``review``, numbered
        ``review#2``... on repeated calls); the run waits for ``review:<key>``.

        Returns:
            the outcome: ``approved``, the (possibly edited) ``payload``, ``reason``,
            ``route`` when a rejection or a timeout routes elsewhere, ``timed_out``.
            A person's rejection is returned for your code to act on.

        Raises:
            ReviewExpiredError: nobody decided within the SLA and the gate's
                ``on_timeout`` is ``"fail"`` (the default): expired reviews fail closed.
            RejectedError: the SLA passed and ``on_timeout="reject"``, with no route.
        """
        from orchestrate.review._runtime import await_review, fail_if_expired
        from orchestrate.review.gate import HumanReviewGate

        if gate is None:
            gate = HumanReviewGate(**options)
        elif options:
            raise TypeError(f"ctx.review: give gate= or gate options, not both ({', '.join(sorted(options))})")
        review_key = key or self._next_key("review")
        outcome = await await_review(
            self, gate, key=f"review:{review_key}", step_key=step or self.last_key or review_key, payload=payload
        )
        fail_if_expired(outcome, what=f"review {review_key!r}")
        return outcome

    # engine internals -----------------------------------------------------------------------
    def _next_key(self, name: str) -> str:
        n = self._counts.get(name, 0) + 1
        self._counts[name] = n
        return name if n == 1 else f"{name}#{n}"

    def replayed(self, step_key: str, name: str) -> StepRecord | None:
        """The recorded step for ``step_key``, checking the durable-function order."""
        record = self.recorded.get(step_key)
        if not self._check_order:
            return record
        if record is not None:
            if record.name != name:
                raise NonDeterminismError(
                    f"run {self.run_id}: step {step_key!r} was recorded as {record.name!r} "
                    f"but the replay called {name!r}; the workflow's code changed under a running run"
                )
            if step_key in self._unconsumed:
                self._unconsumed.remove(step_key)
            return record
        if self._unconsumed:
            raise NonDeterminismError(
                f"run {self.run_id}: the replay called new step {step_key!r} while recorded "
                f"steps {self._unconsumed[:3]} were not replayed yet; the workflow's code changed "
                "under a running run"
            )
        return None

    async def replayed_after_siblings(self, step_key: str, name: str) -> StepRecord | None:
        """:meth:`replayed` for a step that may run beside others (``ctx.gather``, a map).

        Concurrent steps replay their records in whatever order their tasks run: a new
        step may meet records of siblings that have not replayed yet. Let them go first;
        only records still unreplayed once they stop moving mean the history diverged.
        """
        still = 0
        while self._unconsumed and still < _SIBLING_PASSES:
            left = len(self._unconsumed)
            await asyncio.sleep(0)
            still = still + 1 if len(self._unconsumed) == left else 0
        return self.replayed(step_key, name)

    async def record(self, record: StepRecord, *, event: Event | None = None) -> StepRecord:
        """Write a step record under this run's fence; the stored one wins.

        The final step's plain success also marks the run succeeded, in the same write.
        """
        update = None
        if (
            record.step_key == self.final_key
            and event is None
            and record.status is StepStatus.SUCCEEDED
            and record.fallback is None
        ):
            update = RunUpdate(RunStatus.SUCCEEDED, output=record.output)
            event = Event(self.run_id, "run_succeeded", record.finished_at)
        stored = await self.engine.store.record_step(
            record, fence=self.fence, now=record.finished_at, event=event, run_update=update
        )
        self.recorded[record.step_key] = stored
        if update is not None and stored is record:
            self.finished = True
        engine = self.engine
        if time.monotonic() >= engine._turn_at:  # a long run of steps that never suspend
            await engine._turn()  # still lets the loop's other tasks run, once per slice
        return stored

    async def delay_until(self, at: float, *, reason: str) -> None:
        """Sleep until ``at`` if it is near; park the run (release the worker) if not."""
        remaining = at - self.engine.clock.now()
        if remaining <= 0:
            return
        if remaining > self.engine.park_after_seconds:
            raise Suspend(wake_at=at, reason=reason)
        await self.engine.clock.sleep(remaining)

    def step_context(self, step_key: str, attempt: int, spec: StepSpec) -> StepContext:
        """The :class:`StepContext` for one attempt."""
        return StepContext(
            run_id=self.run_id,
            step_key=step_key,
            attempt=attempt,
            idempotency_key=f"{self.run_id}:{step_key}",
            options=spec.options,
            missing=frozenset(self.missing),
            deadline_at=self.run.deadline_at,
        )

    def output_of(self, record: StepRecord, spec: StepSpec | None) -> Any:
        """The value a recorded step hands downstream (revived into its return type)."""
        if record.status is StepStatus.SKIPPED:
            self.missing.add(record.step_key)
            return MISSING
        if record.status is StepStatus.FAILED:
            error = record.error or {}
            raise StepFailedError(
                f"step {record.step_key!r} failed: {error.get('name')}: {error.get('message')}",
                step=record.step_key,
                cause_type=str(error.get("type")),
            )
        if spec is None:
            return record.output
        codec = spec.codec
        type_name = record.meta.get(_codec.TYPE_KEY) if record.meta else None
        if codec.plain and type_name is None:
            return record.output  # JSON-native: handed on as stored (the common case)
        live = self.handed.pop(record.step_key, None)
        if live is not None and live[0] is record:
            return live[1]  # revived when it was recorded, a moment ago
        return codec.revive(record.output, type_name, f"step {record.step_key!r}")


_SIBLING_PASSES = 8  # event-loop turns without progress before a replay is called divergent

_POLICY_KEYS = ("retry", "timeout", "fallback", "cache", "max_concurrency", "isolation", "min_budget")


@dataclass(frozen=True)
class _Args:
    """Arguments of a ``ctx.step`` call (as opposed to a single flowing value)."""

    args: tuple[Any, ...]
    kwargs: dict[str, Any]

    def for_hash(self) -> Any:
        return [list(self.args), self.kwargs]


def new_signal_id() -> str:
    """A unique id written with a signal, to tell whether our write won."""
    return uuid.uuid4().hex


async def gather_all(aws: Any) -> list[Any]:
    """Run awaitables concurrently; errors win over parking, parking waits for all."""
    results = await asyncio.gather(*aws, return_exceptions=True)
    suspends: list[Suspend] = []
    for result in results:
        if isinstance(result, Suspend):
            suspends.append(result)
        elif isinstance(result, BaseException):
            raise result
    if suspends:
        timed = [s.wake_at for s in suspends if s.wake_at is not None]
        first = suspends[0]
        signal = next((s.signal for s in suspends if s.signal), None)
        raise Suspend(wake_at=min(timed) if timed else None, reason=first.reason, signal=signal)
    return list(results)
