"""The worker loop: claim due runs, drive them side by side, recover the dead's runs.

:class:`WorkerLoop` is the part of :class:`~orchestrate.Engine` that works a queue
(``Engine.work``): filling free slots in one claim, sleeping until the next timer or a
store notification, taking over runs whose process died, counting crashed attempts and
moving a run that keeps killing its worker to the dead-letter queue, handing runs back
when stopped, and pruning ended runs. It drives each run through the engine
(``_drive``, ``execute``), which it is mixed into.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from orchestrate._engine.clock import Clock
from orchestrate._engine.leases import owner_is_dead
from orchestrate.errors import LeaseLostError, OrchestrateError, RunCrashedError, StoreError, error_info
from orchestrate.store import _blobs
from orchestrate.store.base import ClaimingStore, Event, RunRecord, RunUpdate, Store
from orchestrate.types import RunStatus

if TYPE_CHECKING:
    from orchestrate.workflow import AnyWorkflow

_PRUNE_EVERY_SECONDS = 300.0
"""How often a worker with ``retain_seconds`` deletes the runs whose retention has passed."""


class WorkerLoop:
    """The worker side of an engine (see the module docstring); mixed into ``Engine``."""

    store: Store
    clock: Clock
    owner: str
    lease_seconds: float
    max_crashes: int
    retain_seconds: float | None
    log: Any
    _workflows: dict[str, dict[str, AnyWorkflow]]
    _missing_reported: set[tuple[str, str]]

    # what the engine provides ------------------------------------------------------------
    async def open(self) -> Any:
        """Open the store (the engine's)."""
        raise NotImplementedError

    def has_version(self, name: str, version: str) -> bool:
        """Whether the engine can run ``name`` at ``version``."""
        raise NotImplementedError

    async def execute(self, run_id: str, *, force: bool = False) -> RunRecord | None:
        """Claim the run if it is due and drive it (the engine's)."""
        raise NotImplementedError

    async def _drive(self, run: RunRecord, *, fresh: bool, progressed: asyncio.Event | None = None) -> RunRecord:
        raise NotImplementedError

    # working -----------------------------------------------------------------------------
    async def recover_orphans(self) -> int:
        """Claim and drive runs held by processes of this host that died; return how many.

        What :meth:`work` does first, once, without going on to other runs.
        """
        await self.open()
        store = self.store
        claiming = store if isinstance(store, ClaimingStore) else None
        count = 0
        while True:
            claimed, _ = await self._claim_orphans(1000, None, claiming)
            if not claimed:
                return count
            for run in claimed:
                await self._work_claimed(run)
                count += 1

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
            try:
                await _blobs.sweep(self.store)  # the pruned runs' offloaded values go with them
            except (StoreError, OSError) as exc:
                self.log.warning("blobs_sweep_failed", error=str(exc))
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
        dead = sorted({r.owner for r in running if r.owner and owner_is_dead(r.owner)})
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
                    update=RunUpdate(status=RunStatus.PENDING),
                    event=Event(
                        run_id=run.run_id, kind="run_released", at=now, data={"owner": self.owner, "fence": run.fence}
                    ),
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
            await self.store.append_event(Event(run_id=run.run_id, kind="attempt_crashed", at=now, data=data))
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
                update=RunUpdate(status=RunStatus.DEAD, error=info),
                event=Event(run_id=run.run_id, kind="run_dead", at=now, data={"error": info}),
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
        return replaced(run, status=RunStatus.DEAD, error=info, owner=None, lease_expires_at=None, updated_at=now)

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


class Progress(dict[str, Any]):
    """The step records of a suspect run (see :meth:`Engine.work`): a new one sets ``progressed``."""

    def __init__(self, records: dict[str, Any], progressed: asyncio.Event) -> None:
        super().__init__(records)
        self.progressed = progressed

    def __setitem__(self, key: str, value: Any) -> None:
        super().__setitem__(key, value)
        self.progressed.set()


def replaced(run: RunRecord, **changes: Any) -> RunRecord:
    """A copy of ``run`` with ``changes``: the record as the store now holds it."""
    copy = run.copy()
    for key, value in changes.items():
        setattr(copy, key, value)
    return copy
