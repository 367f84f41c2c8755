"""The engine: starts runs, drives them to the next park or end, and wakes due runs.

A run is driven by replaying its entry point (the graph interpreter or the durable
function) against the step records in the store: finished steps return their recorded
outputs, the first unfinished one executes. Parking raises :class:`Suspend`, which the
engine turns into a ``waiting`` run with a timer or a signal to wait for; nothing is
held in memory while a run waits.
"""

from __future__ import annotations

import asyncio
import contextvars
import os
import time
import weakref
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar, cast, overload

from orchestrate import _codec
from orchestrate._definitions.calls import CallPlan
from orchestrate._definitions.nodes import Step
from orchestrate._engine import hooks as _hooks
from orchestrate._engine.clock import Clock, SystemClock
from orchestrate._engine.context import RunContext
from orchestrate._engine.interpreter import run_graph
from orchestrate._engine.isolation import StepThreads
from orchestrate._engine.leases import heartbeat as _heartbeat
from orchestrate._engine.leases import owner_id, owner_is_dead
from orchestrate._engine.state import StepSpec, Suspend, current_run
from orchestrate._engine.steps import run_step
from orchestrate._engine.worker import Progress, WorkerLoop, replaced
from orchestrate.errors import (
    ApprovalRequired,
    DeadlineExceededError,
    InvalidInputError,
    LeaseLostError,
    OrchestrateError,
    PayloadTooLargeError,
    RunFailedError,
    RunNotFoundError,
    SerializationError,
    StepFailedError,
    StoreError,
    WorkflowNotFoundError,
    WorkflowVersionNotFoundError,
    error_info,
)
from orchestrate.observe import get_logger
from orchestrate.observe._dispatch import Dispatch
from orchestrate.observe.correlation import RUN
from orchestrate.policies import StepPolicy
from orchestrate.review.gate import AnyGate, HumanReviewGate, TieredGate, queue_gate
from orchestrate.state import compression_in
from orchestrate.store import Store
from orchestrate.store.base import Capability, Event, RunRecord, RunUpdate, capabilities_of
from orchestrate.store.retrying import RetryingStore
from orchestrate.types import RunStatus
from orchestrate.workflow import AnyWorkflow, DurableFunction, Workflow

INPUT_TYPE = "input_type"
"""Run option naming the type a run's input revives into, when it is one of a named type."""

_INPUT_CODECS: weakref.WeakKeyDictionary[Any, _codec.Plan] = weakref.WeakKeyDictionary()


def input_codec(wf: AnyWorkflow) -> _codec.Plan:
    """How a workflow's run input is stored and revived: by what its entry declares.

    A durable function's input parameter, or a graph's first step's lone parameter.
    """
    found = _INPUT_CODECS.get(wf)
    if found is None:
        fn: Any = None
        annotation: Any = None
        if isinstance(wf, DurableFunction):
            fn = wf.fn
            plan = CallPlan.of(wf.fn, f"workflow {wf.name!r}")
            # (ctx, input): the input is the lone parameter that is not ctx
            annotation = plan.first_type
        else:
            first = wf.nodes[0] if wf.nodes else None
            if isinstance(first, Step) and first.plan is not None:
                fn, annotation = first.plan.fn, first.plan.first_type
        found = _INPUT_CODECS[wf] = _codec.plan_for(fn, annotation)
    return found


Out = TypeVar("Out")

_TURN_SECONDS = 0.002
"""The longest an engine drives runs one after another without giving its loop a turn."""


class Engine(WorkerLoop):
    """Runs workflows against a store.

    Args:
        store: where state lives (opened by :meth:`open` if not yet).
        workflows: workflows (and older versions of them) this engine can run.
        clock: the time source (``FakeClock`` in tests).
        lease_seconds: how long a claim holds a run without a heartbeat.
        park_after_seconds: waits longer than this (retry backoffs, sleeps) park the
            run and release it instead of sleeping in memory.
        max_threads: threads for sync steps.
        store_retry_seconds: how long a store call is retried on transient errors.
        max_crashes: crashed attempts after which a run goes to the dead-letter queue
            (``reason: crashed``) instead of being driven again. An attempt crashed when
            its process died (or stalled past its lease) before the run recorded another
            step: a step that kills its process (``os._exit``, a segfault, an OOM kill)
            would otherwise be taken up, and take a worker down, forever. The store counts
            them when it hands the run to the next worker.
        retain_seconds: with it, :meth:`work` deletes the runs that ended (succeeded,
            failed or cancelled) longer ago than this, with their steps, history and
            review items (:meth:`~orchestrate.store.Store.prune_runs`), a batch at a time
            every few minutes. ``None`` (the default): runs are kept until pruned.
        observers: :class:`~orchestrate.observe.Observer` s told about this engine's
            runs, steps, reviews and model calls (besides the process-wide ones).
        review_queues: this engine's human queues by name: the gate of the items a step
            routes to with ``Fallback(name, doc)``. A queue not named here is the one
            configured for the process with :func:`~orchestrate.review.review_queue`
            (or an open one).
    """

    diversions: Any = None
    """Actions of alerts on this engine's steps (:class:`orchestrate.observe.alerts.Diversions`); ``None``: none."""
    drift: Any = None
    """Drift scores written into this engine's step records (a :class:`orchestrate.observe.MonitorObserver`
    attached with its ``attach``); ``None``: none."""

    def __init__(
        self,
        store: Store,
        *,
        workflows: Iterable[AnyWorkflow] = (),
        clock: Clock | None = None,
        lease_seconds: float = 30.0,
        park_after_seconds: float = 5.0,
        max_threads: int = 32,
        store_retry_seconds: float = 30.0,
        max_crashes: int = 3,
        retain_seconds: float | None = None,
        observers: Iterable[Any] = (),
        review_queues: Mapping[str, AnyGate] | None = None,
    ) -> None:
        # Transient failures (a dropped connection, a lost acknowledgement) are retried:
        # every store write is idempotent or compare-and-set. The in-memory store has no
        # I/O to fail, so it goes unwrapped (the wrapper would cost every step a layer).
        self.store: Store = (
            store
            if Capability.TRANSIENT_FAILURES not in capabilities_of(store)
            else cast(Store, RetryingStore(store, total_seconds=store_retry_seconds))
        )
        self.clock: Clock = clock or SystemClock()
        self.owner = owner_id()
        self.lease_seconds = lease_seconds
        if isinstance(max_crashes, bool) or not isinstance(max_crashes, int) or max_crashes < 1:
            raise InvalidInputError(f"max_crashes must be an int >= 1, got {max_crashes!r}")
        self.max_crashes = max_crashes
        if retain_seconds is not None and not (isinstance(retain_seconds, int | float) and retain_seconds > 0):
            raise InvalidInputError(f"retain_seconds must be a number of seconds > 0, got {retain_seconds!r}")
        self.retain_seconds = retain_seconds
        self.park_after_seconds = park_after_seconds
        self.log = get_logger()
        self._workflows: dict[str, dict[str, AnyWorkflow]] = {}
        self._latest: dict[str, AnyWorkflow] = {}
        self._specs: dict[int, StepSpec] = {}
        self._fn_specs: dict[Any, StepSpec] = {}
        self._plans: dict[Any, CallPlan] = {}
        self._step_limits: dict[tuple[str, str], asyncio.Semaphore] = {}
        self._run_limits: dict[str, asyncio.Semaphore] = {}
        # Sync steps' threads; a thread that a timed-out call still holds is replaced.
        self._threads = StepThreads(max_threads, log=self.log)
        self.turn_at = 0.0
        self._leased = Capability.SHARED in capabilities_of(store)
        self._missing_reported: set[tuple[str, str]] = set()
        self._opened = False
        self._observers = tuple(observers)
        self.review_queues = _check_queues(review_queues)
        self._hooks: tuple[int, Dispatch | None] = (-1, None)  # (process observers' generation, dispatch)
        for wf in workflows:
            self.register(wf)

    # registry ----------------------------------------------------------------------------
    def register(self, wf: AnyWorkflow) -> AnyWorkflow:
        """Make ``wf`` (this exact version) runnable here; the last registered is the latest."""
        if not isinstance(wf, Workflow | DurableFunction):
            raise InvalidInputError(f"not a workflow: {wf!r}")
        wf.freeze()
        self._workflows.setdefault(wf.name, {})[wf.version] = wf
        self._latest[wf.name] = wf
        return wf

    def has_version(self, name: str, version: str) -> bool:
        """Whether this engine can run ``name`` at ``version``."""
        return version in self._workflows.get(name, {})

    def get_workflow(self, name: str, version: str | None = None) -> AnyWorkflow:
        """The registered workflow, by default its latest version."""
        versions = self._workflows.get(name)
        if not versions:
            known = ", ".join(sorted(self._workflows)) or "none"
            raise WorkflowNotFoundError(f"no workflow named {name!r} is registered here (registered: {known})")
        if version is None:
            return self._latest[name]
        found = versions.get(version)
        if found is None:
            raise WorkflowVersionNotFoundError(
                f"workflow {name!r} version {version!r} is not available in this process "
                f"(it has {', '.join(sorted(versions))}); runs pinned to it must be resumed "
                "by a process that still has that definition"
            )
        return found

    # step plumbing --------------------------------------------------------------------------
    def plan_for(self, fn: Callable[..., Any]) -> CallPlan:
        """The cached call plan of ``fn``."""
        plan = self._plans.get(fn)
        if plan is None:
            plan = self._plans[fn] = CallPlan.of(fn, f"step {getattr(fn, '__name__', fn)!r}")
        return plan

    def spec_of_step(self, step: Step) -> StepSpec:
        """The cached spec of a graph step."""
        spec = self._specs.get(id(step))
        if spec is None:
            assert step.plan is not None, "steps are bound when their workflow is validated"
            spec = StepSpec(step.name, step.plan, step.policy, step.gate, step.options)
            self._specs[id(step)] = spec
        return spec

    def spec_for(self, fn: Callable[..., Any], name: str, policy_args: dict[str, Any]) -> StepSpec:
        """The spec of a ``ctx.step`` call (cached when no policy arguments are given)."""
        if not policy_args:
            spec = self._fn_specs.get((fn, name))
            if spec is None:
                spec = StepSpec(name, self.plan_for(fn), StepPolicy())
                self._fn_specs[(fn, name)] = spec
            return spec
        return StepSpec(name, self.plan_for(fn), StepPolicy.build(**policy_args, where=f"step {name!r}"))

    async def to_thread(self, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        """Run a sync function on the engine's thread pool."""
        return await self._threads.call(fn, args, kwargs)

    def step_semaphore(self, workflow: str, spec: StepSpec) -> asyncio.Semaphore:
        """The per-process concurrency limit of a step."""
        key = (workflow, spec.name)
        sem = self._step_limits.get(key)
        if sem is None:
            sem = self._step_limits[key] = asyncio.Semaphore(spec.policy.max_concurrency or 1)
        return sem

    def queue_gate(self, name: str) -> AnyGate:
        """The gate of the human queue ``name``: this engine's, else the process's."""
        found = self.review_queues.get(name)
        return found if found is not None else queue_gate(name)

    # lifecycle -------------------------------------------------------------------------------
    async def open(self) -> Engine:
        """Open the store."""
        if not self._opened:
            await self.store.open()
            self._opened = True
            if self._threads.closed:  # reopened after close()
                self._threads = StepThreads(self._threads.max_threads, log=self.log)
        return self

    async def close(self) -> None:
        """Close the store and the thread pool."""
        if self._opened:
            await self.store.close()
            self._opened = False
        self._threads.close()

    async def __aenter__(self) -> Engine:
        return await self.open()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # starting ----------------------------------------------------------------------------------
    async def start(
        self,
        wf: AnyWorkflow | str,
        input: Any = None,
        *,
        run_id: str | None = None,
        options: dict[str, Any] | None = None,
        parent_run_id: str | None = None,
        queue: str = "default",
        claim: bool = False,
        start_at: float | None = None,
    ) -> str:
        """Create a run (``pending``, or ``running`` and held by this engine with ``claim``).

        With ``start_at`` (POSIX seconds) the pending run is claimable from then on.
        """
        run = await self._create(
            wf,
            input,
            run_id=run_id,
            options=options,
            parent_run_id=parent_run_id,
            queue=queue,
            claim=claim,
            start_at=start_at,
        )
        return run.run_id

    async def _create(
        self,
        wf: AnyWorkflow | str,
        input: Any,
        *,
        run_id: str | None = None,
        options: dict[str, Any] | None = None,
        parent_run_id: str | None = None,
        queue: str = "default",
        claim: bool = False,
        start_at: float | None = None,
    ) -> RunRecord:
        """Insert the run; return the stored record (an existing one if the id was taken)."""
        await self.open()
        workflow = self.get_workflow(wf) if isinstance(wf, str) else self._ensure(wf)
        # The input is stored as a step's output is: refused now if it would not come back
        # the same, and revived into what the first step declares (see ``_entry``).
        input, _, input_type = input_codec(workflow).settle(input, f"workflow {workflow.name!r}", "input")
        if input_type is not None:
            options = {**(options or {}), INPUT_TYPE: input_type}
        now = self.clock.now()
        run_id = run_id or os.urandom(16).hex()  # as unique as a uuid4, cheaper to make
        hooks = _hooks.hooks_of(self)
        if hooks is not None and (carried := hooks.carry(workflow=workflow.name, run_id=run_id)):
            options = {**(options or {}), _hooks.CARRIER: carried}
        run = RunRecord(
            run_id=run_id,
            workflow=workflow.name,
            version=workflow.version,
            status=RunStatus.RUNNING if claim else RunStatus.PENDING,
            input=input,
            created_at=now,
            updated_at=now,
            owner=self.owner if claim else None,
            lease_expires_at=now + self.lease_seconds if claim else None,
            fence=1 if claim else 0,
            # A pending run with a due time is claimable from then on (a delayed start).
            wake_at=None if claim or start_at is None or start_at <= now else start_at,
            deadline_at=max(now, start_at or now) + workflow.timeout if workflow.timeout else None,
            queue=queue,
            options=options or {},
            parent_run_id=parent_run_id,
        )
        stored = await self.store.create_run(
            run,
            event=Event(run_id=run.run_id, kind="run_created", at=now, data={"version": run.version, "claimed": claim}),
        )
        # The store may hand back an existing run (same id): only ours is fresh.
        if stored.fence != run.fence or stored.owner != run.owner or stored.created_at != now:
            return stored
        if hooks is not None:
            _hooks.run_created(hooks, run, claimed=claim)
        return run

    def _ensure(self, wf: AnyWorkflow) -> AnyWorkflow:
        if not self.has_version(wf.name, wf.version):
            self.register(wf)
        return wf

    @overload
    async def run(self, wf: DurableFunction[Out], input: Any = None, *, run_id: str | None = None) -> Out: ...

    @overload
    async def run(self, wf: Workflow | str, input: Any = None, *, run_id: str | None = None) -> Any: ...

    async def run(self, wf: AnyWorkflow | str, input: Any = None, *, run_id: str | None = None) -> Any:
        """Run to the end in this process (sleeping through timers) and return the output.

        A durable function's output has its return type (``DurableFunction[Out]``).

        Raises:
            RunFailedError: the run ended failed, dead or cancelled.
            ApprovalRequired: the run parked waiting for a signal (a person).
        """
        record = await self.run_record(wf, input, run_id=run_id)
        return outcome(record)

    async def run_record(
        self,
        wf: AnyWorkflow | str,
        input: Any = None,
        *,
        run_id: str | None = None,
        options: dict[str, Any] | None = None,
    ) -> RunRecord:
        """Like :meth:`run` but return the final (or parked) record instead of raising."""
        run = await self._create(wf, input, run_id=run_id, options=options, claim=True)
        if run.owner != self.owner:
            return await self.settle(run.run_id)  # the id existed: follow that run
        record = await self._drive(run, fresh=True)
        if record.status is RunStatus.WAITING and record.wake_at is not None:
            return await self.settle(run.run_id)
        return record

    # driving ------------------------------------------------------------------------------------
    async def execute(self, run_id: str, *, force: bool = False) -> RunRecord | None:
        """Claim the run if it is due and drive it; ``None`` if it was not claimable here."""
        await self.open()
        current = await self.store.get_run(run_id)
        if current is None:
            raise RunNotFoundError(f"run {run_id!r} does not exist")
        if not self.has_version(current.workflow, current.version):
            self.get_workflow(current.workflow, current.version)  # raises a clear error
        run = await self.store.claim_run(
            run_id, owner=self.owner, now=self.clock.now(), lease_seconds=self.lease_seconds, force=force
        )
        if run is None:
            return None
        if run.crashes and (dead := await self._count_crash(run)) is not None:
            return dead
        return await self._drive(run, fresh=False)

    async def settle(self, run_id: str, *, poll_seconds: float = 0.2) -> RunRecord:
        """Drive the run until it ends or waits for a signal, sleeping through its timers."""
        while True:
            run = await self.store.get_run(run_id)
            if run is None:
                raise RunNotFoundError(f"run {run_id!r} does not exist")
            now = self.clock.now()
            if run.status.terminal or (run.status is RunStatus.WAITING and run.wake_at is None):
                return run
            if (
                run.status is RunStatus.WAITING
                and (run.wait_reason or "").startswith("signal:")
                and (run.wake_at or 0) > now
            ):
                # Waiting for a person whose decision has a deadline (a review SLA): that is
                # still waiting for a person; a worker wakes the run if the deadline passes.
                return run
            if run.status is RunStatus.RUNNING and owner_is_dead(run.owner):
                await self.execute(run_id, force=True)
                continue
            due_at = run.wake_at if run.status is not RunStatus.RUNNING else run.lease_expires_at
            if due_at is not None and due_at > now:
                await self.clock.sleep(min(due_at - now, 60.0) if run.status is not RunStatus.RUNNING else poll_seconds)
                continue
            if await self.execute(run_id) is None:
                await self.clock.sleep(poll_seconds)

    async def _drive(self, run: RunRecord, *, fresh: bool, progressed: asyncio.Event | None = None) -> RunRecord:
        wf = self.get_workflow(run.workflow, run.version)
        if time.monotonic() >= self.turn_at:
            await self.turn()
        if fresh:
            recorded: dict[str, Any] = {}
            attempts: dict[str, Any] = {}
        else:
            recorded = {s.step_key: s for s in await self.store.get_steps(run.run_id)}
            if progressed is not None:  # a suspect (``work``): its first new record says so
                recorded = Progress(recorded, progressed)
            attempts = await self.store.get_attempts(run.run_id)
            await self.store.append_event(
                Event(
                    run_id=run.run_id,
                    kind="run_resumed",
                    at=self.clock.now(),
                    data={"replayed_steps": len(recorded), "fence": run.fence},
                )
            )
        ctx = RunContext(self, run, recorded, attempts, check_order=isinstance(wf, DurableFunction))
        ctx.compression = compression_in(wf)  # state that stays small: compress_after
        if not fresh and ctx.hooks is not None:
            _hooks.run_resumed(ctx.hooks, run, len(recorded), self.clock.now())
        token = current_run.set(ctx)
        ids = RUN.set(ctx)  # the correlation ids of log lines and model calls
        limit = self._run_limit(wf)
        task = asyncio.current_task()
        heartbeat: asyncio.Task[None] | None = None
        timer: asyncio.TimerHandle | None = None
        if self._leased and task is not None:
            # The heartbeat renews the lease on the engine's clock. On the system clock it
            # starts a third of the lease in, from a loop timer: a timer costs a short run
            # nothing, a task per run would (and would wake the loop twice). It runs in an
            # empty context: a cancelled timer stays in the loop's queue until the loop
            # turns, and a copy of this one would hold the RunContext (``current_run``).
            def beat(task: asyncio.Task[Any] = task, first: bool = True) -> None:
                nonlocal heartbeat
                heartbeat = asyncio.create_task(
                    _heartbeat(
                        run,
                        task,
                        store=self.store,
                        clock=self.clock,
                        owner=self.owner,
                        lease_seconds=self.lease_seconds,
                        log=self.log,
                        first=first,
                    ),
                    context=contextvars.Context(),
                )

            if type(self.clock) is SystemClock:
                timer = asyncio.get_running_loop().call_later(
                    self.lease_seconds / 3, beat, context=contextvars.Context()
                )
            else:  # another clock (``FakeClock``): its own sleep says when
                beat(first=False)
        try:
            if limit is not None:
                async with limit:
                    return await self._body(ctx, wf, run)
            return await self._body(ctx, wf, run)
        except asyncio.CancelledError:
            if heartbeat is not None and heartbeat.done() and not heartbeat.cancelled():
                # Our lease was taken over: stop quietly, the new holder owns the run.
                return await self.store.get_run(run.run_id) or run
            raise
        finally:
            current_run.reset(token)
            RUN.reset(ids)
            if timer is not None:
                timer.cancel()
            if heartbeat is not None:
                heartbeat.cancel()

    async def turn(self) -> None:
        """Give the event loop a turn; the next is due a slice (``_TURN_SECONDS``) later.

        Runs whose steps never suspend (async steps on SQLite, whose writes run on the
        caller's thread) never hand the loop back: its other tasks would wait for the
        whole sequence of runs, and its cancelled timers would pile up. A turn costs a
        few microseconds: one per slice, not one per run, keeps it out of the cost of a
        step. Callers check ``time.monotonic() >= self.turn_at`` first, inline.
        """
        await asyncio.sleep(0)
        self.turn_at = time.monotonic() + _TURN_SECONDS

    def _run_limit(self, wf: AnyWorkflow) -> asyncio.Semaphore | None:
        if not wf.max_concurrency:
            return None
        sem = self._run_limits.get(wf.name)
        if sem is None:
            sem = self._run_limits[wf.name] = asyncio.Semaphore(wf.max_concurrency)
        return sem

    async def _entry(self, ctx: RunContext, wf: AnyWorkflow, run: RunRecord) -> Any:
        value = run.input
        codec = input_codec(wf)
        if not codec.plain or INPUT_TYPE in run.options:
            value = ctx.input = codec.revive(value, run.options.get(INPUT_TYPE), f"input of run {run.run_id}")
        if isinstance(wf, DurableFunction):
            return await wf(ctx, value)
        return await run_graph(ctx, wf, value)

    async def _body(self, ctx: RunContext, wf: AnyWorkflow, run: RunRecord) -> RunRecord:
        store = self.store
        try:
            if run.deadline_at is not None:
                remaining = run.deadline_at - self.clock.now()
                if remaining <= 0:
                    raise DeadlineExceededError(f"run {run.run_id} passed its deadline")
                try:
                    async with asyncio.timeout(remaining):
                        output = await self._entry(ctx, wf, run)
                except TimeoutError as exc:
                    if isinstance(exc, OrchestrateError):
                        raise
                    raise DeadlineExceededError(
                        f"run {run.run_id} exceeded its time budget of {wf.timeout:g}s"
                    ) from None
            else:
                output = await self._entry(ctx, wf, run)
        except Suspend as suspend:
            return await self._park(ctx, run, suspend)
        except StoreError as exc:
            if isinstance(exc, LeaseLostError):
                self.log.warning("lease_lost", run_id=run.run_id, workflow=run.workflow, error=str(exc))
                return await store.get_run(run.run_id) or run
            # The store stayed unreachable past the retries: record nothing (it would not
            # land either); the run keeps its lease, which expires, and a worker resumes it.
            self.log.error("store_unavailable", run_id=run.run_id, workflow=run.workflow, error=str(exc))
            raise
        except StepFailedError as exc:
            return await self._fail(ctx, wf, run, exc, RunStatus.DEAD, step=exc.step)
        except Exception as exc:  # noqa: BLE001 - any other error fails the run, recorded
            return await self._fail(ctx, wf, run, exc, RunStatus.FAILED, step=None)
        now = self.clock.now()
        if ctx.finished:  # the final step's record ended the run already
            ctx.log.info("run_succeeded", workflow=run.workflow, run_id=run.run_id, version=run.version)
            if ctx.hooks is not None:
                _hooks.run_ended(ctx.hooks, run, "succeeded", now)
            return replaced(run, status=RunStatus.SUCCEEDED, output=output, updated_at=now)
        try:
            await store.update_run(
                run.run_id,
                fence=run.fence,
                now=now,
                update=RunUpdate(status=RunStatus.SUCCEEDED, output=_codec.to_json(output)),
                event=Event(run_id=run.run_id, kind="run_succeeded", at=now),
            )
        except LeaseLostError:
            return await store.get_run(run.run_id) or run
        except PayloadTooLargeError as exc:  # never retried: the run is dead, not left running
            return await self._fail(ctx, wf, run, exc, RunStatus.DEAD, step=None)
        except SerializationError as exc:  # an output that cannot be stored: the run fails, named
            return await self._fail(ctx, wf, run, exc, RunStatus.FAILED, step=None)
        ctx.log.info("run_succeeded", workflow=run.workflow, run_id=run.run_id, version=run.version)
        if ctx.hooks is not None:
            _hooks.run_ended(ctx.hooks, run, "succeeded", now)
        return replaced(run, status=RunStatus.SUCCEEDED, output=output, updated_at=now)

    async def _park(self, ctx: RunContext, run: RunRecord, suspend: Suspend) -> RunRecord:
        now = self.clock.now()
        update = RunUpdate(status=RunStatus.WAITING, wake_at=suspend.wake_at, wait_reason=suspend.reason)
        try:
            await self.store.update_run(
                run.run_id,
                fence=run.fence,
                now=now,
                update=update,
                event=Event(
                    run_id=run.run_id,
                    kind="run_waiting",
                    at=now,
                    data={"reason": suspend.reason, "wake_at": suspend.wake_at},
                ),
            )
        except LeaseLostError:
            return await self.store.get_run(run.run_id) or run
        if suspend.signal is not None:
            # A signal may have landed between the step that asked for it and this write.
            if any(s.step_key == suspend.signal for s in await self.store.get_steps(run.run_id)):
                await self.store.wake_run(run.run_id, now=now)
                update.wake_at = now
        self.log.info(
            "run_waiting", workflow=run.workflow, run_id=run.run_id, reason=suspend.reason, wake_at=suspend.wake_at
        )
        if ctx.hooks is not None:
            _hooks.run_parked(ctx.hooks, run, suspend.reason, update.wake_at, now)
        return replaced(run, status=RunStatus.WAITING, wake_at=update.wake_at, wait_reason=suspend.reason, owner=None)

    async def _fail(
        self,
        ctx: RunContext,
        wf: AnyWorkflow,
        run: RunRecord,
        exc: BaseException,
        status: RunStatus,
        *,
        step: str | None,
    ) -> RunRecord:
        info = error_info(exc)
        if isinstance(exc, StepFailedError):
            # The run's error names the step's own error class, not the wrapper.
            info.update(type=exc.cause_type, name=exc.cause_type.rsplit(".", 1)[-1])
        if step is not None:
            info["step"] = step
        handler = wf.error_handler
        if handler is not None:
            report = {"run_id": run.run_id, "workflow": run.workflow, "step": step, "error": info, "input": run.input}
            try:
                await run_step(ctx, self.spec_of_step(handler), report, "error_handler")
            except (StepFailedError, Suspend) as handler_exc:
                self.log.error("error_handler_failed", run_id=run.run_id, error=str(handler_exc))
            except LeaseLostError:
                return await self.store.get_run(run.run_id) or run
        now = self.clock.now()
        try:
            await self.store.update_run(
                run.run_id,
                fence=run.fence,
                now=now,
                update=RunUpdate(status=status, error=info),
                event=Event(run_id=run.run_id, kind=f"run_{status.value}", at=now, step_key=step, data={"error": info}),
            )
        except LeaseLostError:
            return await self.store.get_run(run.run_id) or run
        self.log.error(
            f"run_{status.value}",
            workflow=run.workflow,
            run_id=run.run_id,
            step=step,
            error_class=info["name"],
            error=info["message"],
        )
        if ctx.hooks is not None:
            _hooks.run_ended(ctx.hooks, run, status.value, now, step=step, error_class=info["name"])
        return replaced(run, status=status, error=info, updated_at=now)


def _check_queues(queues: Mapping[str, AnyGate] | None) -> dict[str, AnyGate]:
    if queues is None:
        return {}
    if not isinstance(queues, Mapping):
        raise InvalidInputError(f"review_queues must map queue names to gates, got {queues!r}")
    for name, gate in queues.items():
        if not isinstance(name, str) or not name:
            raise InvalidInputError(f"review_queues: a queue name must be a non-empty string, got {name!r}")
        if not isinstance(gate, HumanReviewGate | TieredGate):
            raise InvalidInputError(
                f"review_queues[{name!r}] must be a HumanReviewGate or TieredGate, got {type(gate).__name__}"
            )
    return dict(queues)


def outcome(record: RunRecord) -> Any:
    """The output of a finished run, or the matching exception."""
    if record.status is RunStatus.SUCCEEDED:
        return record.output
    if record.status is RunStatus.WAITING:
        raise ApprovalRequired(
            f"run {record.run_id} is waiting ({record.wait_reason}); decide with the client or "
            f"`orchestrate signal`, then it resumes",
            run=record,
        )
    error = record.error or {}
    where = f" at step {error['step']!r}" if error.get("step") else ""
    raise RunFailedError(
        f"run {record.run_id} {record.status.value}{where}: {error.get('name', '')}: {error.get('message', '')}",
        run=record,
    )
