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
import hashlib
import os
import socket
import time
import uuid
import weakref
from collections.abc import Callable, Iterable, Sequence
from typing import Any, cast

from orchestrate import _codec
from orchestrate._engine import hooks as _hooks
from orchestrate._engine.clock import Clock, SystemClock
from orchestrate._engine.context import RunContext, StepSpec, Suspend, current_run
from orchestrate._engine.isolation import StepThreads
from orchestrate.errors import (
    ApprovalRequired,
    DeadlineExceededError,
    InvalidInputError,
    LeaseLostError,
    OrchestrateError,
    PayloadTooLargeError,
    RunCrashedError,
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
from orchestrate.store import Store, open_store
from orchestrate.store.base import Capability, ClaimingStore, Event, RunRecord, RunUpdate, capabilities_of
from orchestrate.store.retrying import RetryingStore
from orchestrate.types import RunStatus
from orchestrate.workflow import AnyWorkflow, CallPlan, DurableFunction, Step, Workflow

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


_PRUNE_EVERY_SECONDS = 300.0
"""How often a worker with ``retain_seconds`` deletes the runs whose retention has passed."""

_TURN_SECONDS = 0.002
"""The longest an engine drives runs one after another without giving its loop a turn."""


def _host_identity() -> str:
    """What tells this process's pids apart from another host's or container's.

    The hostname alone does not: containers often share one, and each has its own pid
    namespace, where another container's live worker has a pid that does not exist. The
    kernel's boot id (one per machine boot) and the inode of this process's pid
    namespace do; where they cannot be read, the identity is unique to this process, so
    no other process is ever judged dead from its pid, only from its lease.
    """
    parts = []
    try:
        with open("/proc/sys/kernel/random/boot_id") as fh:
            parts.append(fh.read().strip())
        parts.append(os.readlink("/proc/self/ns/pid").strip("pid:[]"))
    except OSError:
        return uuid.uuid4().hex
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:12]


_HOST = _host_identity()


def _owner_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{_HOST}:{uuid.uuid4().hex[:8]}"


def _owner_is_dead(owner: str | None) -> bool:
    """Whether a lease owner is a process of this host and pid namespace that no longer exists.

    An owner elsewhere (another machine, another container's pid namespace, or an id
    without this host identity) is never judged from its pid: its lease says when it
    stopped renewing.
    """
    if not owner:
        return False
    host, _, rest = owner.partition(":")
    pid_text, _, rest = rest.partition(":")
    identity = rest.partition(":")[0]
    if host != socket.gethostname() or identity != _HOST or not pid_text.isdigit():
        return False
    pid = int(pid_text)
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


class Engine:
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
    """

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
        self.owner = _owner_id()
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
        self._turn_at = 0.0
        self._leased = Capability.SHARED in capabilities_of(store)
        self._missing_reported: set[tuple[str, str]] = set()
        self._opened = False
        self._observers = tuple(observers)
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
            run, event=Event(run.run_id, "run_created", now, data={"version": run.version, "claimed": claim})
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

    async def run(self, wf: AnyWorkflow | str, input: Any = None, *, run_id: str | None = None) -> Any:
        """Run to the end in this process (sleeping through timers) and return the output.

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
            if run.status is RunStatus.RUNNING and _owner_is_dead(run.owner):
                await self.execute(run_id, force=True)
                continue
            due_at = run.wake_at if run.status is not RunStatus.RUNNING else run.lease_expires_at
            if due_at is not None and due_at > now:
                await self.clock.sleep(min(due_at - now, 60.0) if run.status is not RunStatus.RUNNING else poll_seconds)
                continue
            if await self.execute(run_id) is None:
                await self.clock.sleep(poll_seconds)

    async def _heartbeat(self, run: RunRecord, task: asyncio.Task[Any]) -> None:
        """Renew the run's lease now and every third of the lease (started a third in)."""
        interval = self.lease_seconds / 3
        while True:
            try:
                ok = await self.store.renew_lease(
                    run.run_id,
                    owner=self.owner,
                    fence=run.fence,
                    now=self.clock.now(),
                    lease_seconds=self.lease_seconds,
                )
            except StoreError as exc:
                # The store is unreachable for now: keep the run going and try again; if the
                # lease runs out meanwhile, the fence refuses this worker's next write.
                self.log.warning("lease_renew_failed", run_id=run.run_id, error=str(exc))
                await asyncio.sleep(interval)
                continue
            if not ok:
                self.log.warning("lease_lost", run_id=run.run_id, workflow=run.workflow, fence=run.fence)
                task.cancel()
                return
            await asyncio.sleep(interval)

    async def _drive(self, run: RunRecord, *, fresh: bool, progressed: asyncio.Event | None = None) -> RunRecord:
        wf = self.get_workflow(run.workflow, run.version)
        if time.monotonic() >= self._turn_at:
            await self._turn()
        if fresh:
            recorded: dict[str, Any] = {}
            attempts: dict[str, Any] = {}
        else:
            recorded = {s.step_key: s for s in await self.store.get_steps(run.run_id)}
            if progressed is not None:  # a suspect (``work``): its first new record says so
                recorded = _Progress(recorded, progressed)
            attempts = await self.store.get_attempts(run.run_id)
            await self.store.append_event(
                Event(
                    run.run_id,
                    "run_resumed",
                    self.clock.now(),
                    data={"replayed_steps": len(recorded), "fence": run.fence},
                )
            )
        ctx = RunContext(self, run, recorded, attempts, check_order=isinstance(wf, DurableFunction))
        if not fresh and ctx.hooks is not None:
            _hooks.run_resumed(ctx.hooks, run, len(recorded), self.clock.now())
        token = current_run.set(ctx)
        ids = RUN.set(ctx)  # the correlation ids of log lines and model calls
        limit = self._run_limit(wf)
        task = asyncio.current_task()
        heartbeat: asyncio.Task[None] | None = None
        timer: asyncio.TimerHandle | None = None
        if self._leased and task is not None:
            # The heartbeat starts a third of the lease in: a timer costs a short run
            # nothing, a task per run would (and would wake the loop twice). It runs in
            # an empty context: a cancelled timer stays in the loop's queue until the loop
            # turns, and a copy of this one would hold the RunContext (``current_run``).
            def beat(task: asyncio.Task[Any] = task) -> None:
                nonlocal heartbeat
                heartbeat = asyncio.create_task(self._heartbeat(run, task))

            timer = asyncio.get_running_loop().call_later(self.lease_seconds / 3, beat, context=contextvars.Context())
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

    async def _turn(self) -> None:
        """Give the event loop a turn; the next is due a slice (``_TURN_SECONDS``) later.

        Runs whose steps never suspend (async steps on SQLite, whose writes run on the
        caller's thread) never hand the loop back: its other tasks would wait for the
        whole sequence of runs, and its cancelled timers would pile up. A turn costs a
        few microseconds: one per slice, not one per run, keeps it out of the cost of a
        step. Callers check ``time.monotonic() >= self._turn_at`` first, inline.
        """
        await asyncio.sleep(0)
        self._turn_at = time.monotonic() + _TURN_SECONDS

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
        from orchestrate._engine.interpreter import run_graph

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
            return _with(run, status=RunStatus.SUCCEEDED, output=output, updated_at=now)
        try:
            await store.update_run(
                run.run_id,
                fence=run.fence,
                now=now,
                update=RunUpdate(RunStatus.SUCCEEDED, output=_codec.to_json(output)),
                event=Event(run.run_id, "run_succeeded", now),
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
        return _with(run, status=RunStatus.SUCCEEDED, output=output, updated_at=now)

    async def _park(self, ctx: RunContext, run: RunRecord, suspend: Suspend) -> RunRecord:
        now = self.clock.now()
        update = RunUpdate(RunStatus.WAITING, wake_at=suspend.wake_at, wait_reason=suspend.reason)
        try:
            await self.store.update_run(
                run.run_id,
                fence=run.fence,
                now=now,
                update=update,
                event=Event(
                    run.run_id, "run_waiting", now, data={"reason": suspend.reason, "wake_at": suspend.wake_at}
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
        return _with(run, status=RunStatus.WAITING, wake_at=update.wake_at, wait_reason=suspend.reason, owner=None)

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
            from orchestrate._engine.steps import run_step

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
                update=RunUpdate(status, error=info),
                event=Event(run.run_id, f"run_{status.value}", now, step, {"error": info}),
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
        return _with(run, status=status, error=info, updated_at=now)

    # working -------------------------------------------------------------------------------------
    async def recover_orphans(self) -> int:
        """Claim and drive runs held by processes of this host that died; return how many."""
        await self.open()
        count = 0
        for run in await self.store.list_runs(status=[RunStatus.RUNNING], limit=1000, values=False):
            if _owner_is_dead(run.owner) and self.has_version(run.workflow, run.version):
                if await self.execute(run.run_id, force=True) is not None:
                    count += 1
        return count

    async def work(
        self,
        *,
        concurrency: int = 10,
        poll_seconds: float = 0.5,
        until_idle: bool = False,
        stop: asyncio.Event | None = None,
        queues: Sequence[str] | None = None,
        drain_seconds: float | None = None,
    ) -> int:
        """Run due runs until ``stop`` is set (or, with ``until_idle``, none is left).

        Claims only runs of workflow versions registered here (runs of other versions are
        reported once, never claimed) and, with ``queues``, only runs of those queues.
        On a store that claims in one statement (every built-in one) free slots are
        filled in one claim; an idle worker sleeps until the next timer or lease expiry,
        at most ``poll_seconds``, and a store notification (PostgreSQL's ``NOTIFY``)
        wakes it early.

        When ``stop`` is set, no more runs are claimed and the runs in flight finish (or
        park); with ``drain_seconds``, those still going after that long are interrupted
        and released at once, for another worker to resume from their last recorded
        step. Cancelling ``work`` itself releases them the same way.

        A run whose previous attempt crashed (see ``max_crashes``) is a *suspect*: this
        worker drives at most one suspect at a time, beside its other runs, until the
        suspect records a step (or parks, or ends). So when a suspect kills the process
        again, the runs that die with it were not suspects: a healthy run is not counted
        crash after crash with a poisoned one until it reaches the dead-letter queue.

        Returns the number of runs driven.
        """
        await self.open()
        store = self.store
        claiming = store if isinstance(store, ClaimingStore) else None
        versions = [(name, version) for name, found in self._workflows.items() for version in found]
        driven = 0
        tasks: dict[asyncio.Task[Any], RunRecord | None] = {}
        # The suspect in flight: its task, and the event its first new step record sets.
        suspect: tuple[asyncio.Task[Any], asyncio.Event] | None = None

        def launch(run: RunRecord | None, run_id: str) -> None:
            nonlocal suspect
            progressed = asyncio.Event() if run is not None and 0 < run.crashes < self.max_crashes else None
            task = asyncio.create_task(
                self._work_claimed(run, progressed) if run is not None else self._work_one(run_id)
            )
            tasks[task] = run
            task.add_done_callback(lambda t: tasks.pop(t, None))
            if progressed is not None:
                suspect = (task, progressed)

        def busy_with_suspect() -> asyncio.Event | None:
            """The event of the suspect in flight that has not recorded a step yet, if any."""
            if suspect is None or suspect[0].done() or suspect[1].is_set():
                return None
            return suspect[1]

        pruning: asyncio.Task[int] | None = None
        next_prune = 0.0
        try:
            orphans, dead_owners = await self._claim_orphans(concurrency, queues, claiming)
            for orphan in orphans:
                launch(orphan, orphan.run_id)
                driven += 1
            next_report = 0.0
            while stop is None or not stop.is_set():
                if self.retain_seconds is not None and time.monotonic() >= next_prune:
                    if pruning is None or pruning.done():
                        pruning = asyncio.create_task(self.prune_ended())
                    next_prune = time.monotonic() + _PRUNE_EVERY_SECONDS
                free = concurrency - len(tasks)
                if free <= 0:
                    own: set[asyncio.Future[Any]] = {asyncio.ensure_future(stop.wait())} if stop else set()
                    await _first({*tasks, *own}, own=own)
                    continue
                now = self.clock.now()
                if claiming is not None:
                    claimed = await claiming.claim_due(
                        owner=self.owner,
                        now=now,
                        lease_seconds=self.lease_seconds,
                        limit=free,
                        versions=versions,
                        queues=queues,
                        orphans_of=dead_owners,
                        suspects=0 if busy_with_suspect() else 1,
                    )
                    for run in claimed:
                        launch(run, run.run_id)
                    due_ids = [r.run_id for r in claimed]
                else:
                    due = await store.due_runs(now=now, limit=free)
                    due_ids = [r.run_id for r in due if self._runnable(r) and (queues is None or r.queue in queues)]
                    for run_id in due_ids:
                        launch(None, run_id)
                driven += len(due_ids)
                if due_ids:
                    continue  # there may be more due than there were free slots
                if until_idle and not tasks and not await self._pending_timers(queues):
                    break
                if now >= next_report:  # say once which due runs this worker cannot take
                    next_report = now + 30.0
                    for run in await store.due_runs(now=now, limit=50):
                        self._runnable(run)
                wait = poll_seconds
                progressed = busy_with_suspect()
                if claiming is not None:
                    until = await claiming.seconds_until_due(now=now, versions=versions, queues=queues)
                    # Due now yet not claimed while a suspect is in flight: another
                    # suspect, for when this one records a step (which ends the wait).
                    if until is not None and not (until == 0 and progressed is not None):
                        wait = max(min(wait, until), 0.02)
                await self._idle(wait, stop, claiming, progressed)
            if tasks:
                _, pending = await asyncio.wait(set(tasks), timeout=drain_seconds)
                if pending:
                    await self._release(tasks, pending)
        except asyncio.CancelledError:
            await asyncio.shield(self._release(tasks, set(tasks)))
            raise
        finally:
            if pruning is not None and not pruning.done():
                pruning.cancel()  # a batch is one transaction: it lands whole or not at all
        return driven

    async def prune_ended(self, *, batch: int = 500) -> int:
        """Delete the runs that ended more than ``retain_seconds`` ago, a batch at a time.

        What :meth:`work` does every few minutes when the engine has ``retain_seconds``.
        Succeeded, failed and cancelled runs are deleted with their steps, history and
        review items; dead runs (the dead-letter queue) and runs still going are kept.

        Returns:
            How many runs were deleted (0 without ``retain_seconds``). Store errors are
            logged, not raised: the next round tries again.
        """
        if self.retain_seconds is None:
            return 0
        before = self.clock.now() - self.retain_seconds
        pruned = 0
        try:
            while True:
                done = await self.store.prune_runs(before=before, limit=batch)
                pruned += done
                if done < batch:
                    break
                await asyncio.sleep(0)  # one batch, one transaction: let the runs' writes in between
        except StoreError as exc:
            self.log.warning("runs_prune_failed", error=str(exc), pruned=pruned)
            return pruned
        if pruned:
            self.log.info("runs_pruned", pruned=pruned, ended_before=before, retain_seconds=self.retain_seconds)
        return pruned

    async def _idle(
        self,
        seconds: float,
        stop: asyncio.Event | None,
        claiming: ClaimingStore | None,
        progressed: asyncio.Event | None = None,
    ) -> None:
        """Wait ``seconds`` (on the engine's clock unless ``stop`` is given), a store hint,
        ``stop``, or ``progressed``."""
        waits: set[asyncio.Future[Any]] = set()
        if progressed is not None:
            waits.add(asyncio.ensure_future(progressed.wait()))
        if stop is not None:
            waits.add(asyncio.ensure_future(asyncio.wait_for(stop.wait(), seconds)))
        else:
            waits.add(asyncio.ensure_future(self.clock.sleep(seconds)))
        if claiming is not None:
            waits.add(asyncio.ensure_future(claiming.wait_for_work(seconds)))
        await _first(waits, own=waits)

    async def _claim_orphans(
        self, limit: int, queues: Sequence[str] | None, claiming: ClaimingStore | None
    ) -> tuple[list[RunRecord], list[str]]:
        """Claim runs held by dead processes of this host, without waiting for their lease.

        Returns the runs claimed and the dead owners found. On a claiming store that is
        one run (each is a suspect): the work loop claims the others one after another.
        """
        running = await self.store.list_runs(status=[RunStatus.RUNNING], limit=1000, values=False)
        dead = sorted({r.owner for r in running if r.owner and _owner_is_dead(r.owner)})
        if not dead:
            return [], []
        if claiming is not None:
            # Conditional on the dead owner still holding the run: a live worker that took
            # it over meanwhile keeps it.
            claimed = await claiming.claim_due(
                owner=self.owner,
                now=self.clock.now(),
                lease_seconds=self.lease_seconds,
                limit=limit,
                versions=[(name, version) for name, found in self._workflows.items() for version in found],
                queues=queues,
                orphans_of=dead,
                suspects=1,
            )
        else:
            claimed = []
            for run in running:
                if len(claimed) >= limit:
                    break
                if run.owner not in dead or not self.has_version(run.workflow, run.version):
                    continue
                if queues is not None and run.queue not in queues:
                    continue
                got = await self.store.claim_run(
                    run.run_id, owner=self.owner, now=self.clock.now(), lease_seconds=self.lease_seconds, force=True
                )
                if got is not None:
                    claimed.append(got)
        for run in claimed:
            self.log.info("run_recovered", run_id=run.run_id, workflow=run.workflow)
        return claimed, dead

    async def _release(self, tasks: dict[asyncio.Task[Any], RunRecord | None], which: set[asyncio.Task[Any]]) -> None:
        """Interrupt runs in flight and hand them back (pending, lease dropped) under their fence."""
        # Runs claimed one by one (recorded as ``None``) keep their lease until it expires.
        runs = [run for task in which if (run := tasks.get(task)) is not None]
        for task in which:
            task.cancel()
        await asyncio.gather(*which, return_exceptions=True)
        for run in runs:
            now = self.clock.now()
            try:
                await self.store.update_run(
                    run.run_id,
                    fence=run.fence,
                    now=now,
                    update=RunUpdate(RunStatus.PENDING),
                    event=Event(run.run_id, "run_released", now, data={"owner": self.owner, "fence": run.fence}),
                )
            except OrchestrateError as exc:  # parked or finished meanwhile, or the store is down
                self.log.info("run_release_skipped", run_id=run.run_id, reason=str(exc))
                continue
            self.log.warning("run_released", run_id=run.run_id, workflow=run.workflow, fence=run.fence)

    async def _work_claimed(self, run: RunRecord, progressed: asyncio.Event | None = None) -> None:
        try:
            if run.crashes and await self._count_crash(run) is not None:
                return
            await self._drive(run, fresh=False, progressed=progressed)
        except Exception as exc:  # noqa: BLE001 - a worker keeps going; the error is logged
            self.log.error("run_execution_error", run_id=run.run_id, error=str(exc), error_class=type(exc).__qualname__)

    async def _count_crash(self, run: RunRecord) -> RunRecord | None:
        """Note a run's crashed attempt in its history; at ``max_crashes``, move it to the DLQ.

        Returns the dead run's record when it was moved (it is not driven), else ``None``.
        """
        now = self.clock.now()
        if run.crashes < self.max_crashes:
            data = {"crashes": run.crashes, "max_crashes": self.max_crashes, "owner": run.crashed_owner}
            await self.store.append_event(Event(run.run_id, "attempt_crashed", now, data=data))
            self.log.warning(
                "run_attempt_crashed",
                run_id=run.run_id,
                workflow=run.workflow,
                crashes=run.crashes,
                max_crashes=self.max_crashes,
                owner=run.crashed_owner,
            )
            return None
        exc = RunCrashedError(
            f"run {run.run_id} crashed its worker {run.crashes} times in a row without recording a step "
            f"(last worker {run.crashed_owner}); moved to the dead-letter queue (max_crashes={self.max_crashes})"
        )
        info = {**error_info(exc), "reason": "crashed", "crashes": run.crashes, "owner": run.crashed_owner}
        try:
            await self.store.update_run(
                run.run_id,
                fence=run.fence,
                now=now,
                update=RunUpdate(RunStatus.DEAD, error=info),
                event=Event(run.run_id, "run_dead", now, data={"error": info}),
            )
        except LeaseLostError:
            return await self.store.get_run(run.run_id) or run
        self.log.error(
            "run_dead",
            workflow=run.workflow,
            run_id=run.run_id,
            reason="crashed",
            crashes=run.crashes,
            owner=run.crashed_owner,
            error_class=info["name"],
            error=info["message"],
        )
        return _with(run, status=RunStatus.DEAD, error=info, owner=None, lease_expires_at=None, updated_at=now)

    async def _pending_timers(self, queues: Sequence[str] | None = None) -> bool:
        runs = await self.store.list_runs(
            status=[RunStatus.WAITING, RunStatus.PENDING, RunStatus.RUNNING], limit=1000, values=False
        )
        return any(
            (r.status is not RunStatus.WAITING or r.wake_at is not None)
            and self.has_version(r.workflow, r.version)
            and (queues is None or r.queue in queues)
            for r in runs
        )

    def _runnable(self, run: RunRecord) -> bool:
        if self.has_version(run.workflow, run.version):
            return True
        key = (run.workflow, run.version)
        if key not in self._missing_reported:
            self._missing_reported.add(key)
            self.log.warning(
                "workflow_version_missing",
                workflow=run.workflow,
                version=run.version,
                run_id=run.run_id,
                message="not claiming runs of a workflow version this worker does not have",
            )
        return False

    async def _work_one(self, run_id: str) -> None:
        try:
            await self.execute(run_id)
        except Exception as exc:  # noqa: BLE001 - a worker keeps going; the error is logged
            self.log.error("run_execution_error", run_id=run_id, error=str(exc), error_class=type(exc).__qualname__)


async def _first(waits: set[asyncio.Future[Any]], *, own: set[asyncio.Future[Any]]) -> None:
    """Wait until one of ``waits`` is done; cancel the ones in ``own`` that are not."""
    try:
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in own:
            if not waiter.done():
                waiter.cancel()
        await asyncio.gather(*own, return_exceptions=True)


class _Progress(dict[str, Any]):
    """The step records of a suspect run (see :meth:`Engine.work`): a new one sets ``progressed``."""

    def __init__(self, records: dict[str, Any], progressed: asyncio.Event) -> None:
        super().__init__(records)
        self.progressed = progressed

    def __setitem__(self, key: str, value: Any) -> None:
        super().__setitem__(key, value)
        self.progressed.set()


def _with(run: RunRecord, **changes: Any) -> RunRecord:
    copy = run.copy()
    for key, value in changes.items():
        setattr(copy, key, value)
    return copy


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


_DEFAULT_ENGINES: dict[str, Engine] = {}

_SHORTHANDS = {
    "sqlite": "sqlite:///.orchestrate/orchestrate.db",
    "memory": "memory://",
    "postgresql": "postgresql:///orchestrate",
    "postgres": "postgresql:///orchestrate",
}


async def default_engine(state_store: Any = None) -> Engine:
    """The process-wide engine for a store URL (shorthands ``sqlite``, ``memory``, ``postgresql``).

    ``ORCHESTRATE_STORE`` overrides the default URL.
    """
    if state_store is not None and not isinstance(state_store, str):
        key = f"object:{id(state_store)}"
        engine = _DEFAULT_ENGINES.get(key)
        if engine is None:
            engine = _DEFAULT_ENGINES[key] = Engine(state_store)
        return await engine.open()
    url = state_store or os.environ.get("ORCHESTRATE_STORE") or "sqlite"
    url = _SHORTHANDS.get(url, url)
    engine = _DEFAULT_ENGINES.get(url)
    if engine is None:
        engine = _DEFAULT_ENGINES[url] = Engine(open_store(url))
    return await engine.open()
