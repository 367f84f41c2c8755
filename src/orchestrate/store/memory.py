"""``InMemoryStore``: the store for tests and for runs that need no durability.

Same semantics as the SQL stores (the conformance suite checks it). Reads hand out
copies; written records are kept by reference, so values must not be mutated after
they were written (the engine never does). User values are still checked to be JSON
serialisable, and within the store's payload limits on the size of the JSON a SQL store
would write, so that what works here does not fail on a durable store.
"""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import enum
import math
from collections.abc import Sequence
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from orchestrate import _serde
from orchestrate.errors import LeaseLostError, RunNotFoundError, RunStateError
from orchestrate.store import _limits, _sql
from orchestrate.store._limits import PayloadLimits
from orchestrate.store.base import (
    PRIORITY_RANKS,
    PRUNED_BY_DEFAULT,
    REPLAYED_EVENT,
    SCHEMA_VERSION,
    AttemptState,
    BreakerRecord,
    CacheEntry,
    Capability,
    Event,
    RateGrant,
    ReviewRecord,
    ReviewStatus,
    RunRecord,
    RunUpdate,
    StepRecord,
    decide_rate,
)
from orchestrate.types import RunStatus

_SCALARS = frozenset({str, int, bool, type(None)})
_ATOMS = (str, int, float, bool, type(None), enum.Enum)


def _storable(value: Any) -> bool:
    """Whether ``value`` certainly encodes as JSON: a scalar, or a flat dict of scalars.

    A cheap test that spares the hot path a trial encoding; anything else is checked
    by encoding it, which raises the error the SQL stores would.
    """
    kind = type(value)
    if kind in _SCALARS:
        return True
    if kind is float:
        return math.isfinite(value)
    if kind is dict:
        for k, v in value.items():
            if type(k) is not str or not (type(v) in _SCALARS or (type(v) is float and math.isfinite(v))):
                return False
        return True
    return False


_NOT_NATIVE: Any = object()


def _native_copy(value: Any, depth: int, size: list[int]) -> Any:
    """A deep copy of JSON data (str-keyed dicts, lists, scalars, finite floats); else ``_NOT_NATIVE``.

    What a SQL store reads back for it, at a quarter of the cost of encoding and decoding.
    Adds to ``size`` what bounds the length of its JSON: ``[characters of strings and
    keys, values and entries]`` (see :func:`_bound`).
    """
    kind = type(value)
    if kind is str:
        size[0] += len(value)
        return value
    if kind in _SCALARS:
        if kind is int and not -_BIG_INT < value < _BIG_INT:
            size[0] += value.bit_length()  # more than its digits
        return value
    if kind is float:
        return value if math.isfinite(value) else _NOT_NATIVE
    if depth > 200:
        return _NOT_NATIVE
    chars = 0
    if kind is dict:
        out: dict[str, Any] = {}
        for k, v in value.items():
            if type(k) is not str:
                return _NOT_NATIVE
            chars += len(k)
            kind = type(v)
            if kind is str:
                chars += len(v)
                out[k] = v
            elif kind in _SCALARS:
                if kind is int and not -_BIG_INT < v < _BIG_INT:
                    chars += v.bit_length()
                out[k] = v
            else:
                copied = _native_copy(v, depth + 1, size)
                if copied is _NOT_NATIVE:
                    return _NOT_NATIVE
                out[k] = copied
        size[0] += chars
        size[1] += len(value) + 1
        return out
    if kind is list:
        items = []
        for v in value:
            kind = type(v)
            if kind is str:
                chars += len(v)
                items.append(v)
            elif kind in _SCALARS:
                if kind is int and not -_BIG_INT < v < _BIG_INT:
                    chars += v.bit_length()
                items.append(v)
            else:
                copied = _native_copy(v, depth + 1, size)
                if copied is _NOT_NATIVE:
                    return _NOT_NATIVE
                items.append(copied)
        size[0] += chars
        size[1] += len(value) + 1
        return items
    return _NOT_NATIVE


_BIG_INT = 10**20  # an int within this has at most 21 characters of JSON


def _bound(size: list[int]) -> int:
    """A bound on the JSON length of a value whose :func:`_native_copy` added up ``size``.

    A character of a string takes at most 12 in JSON (``\\ud83d\\ude00``), a value or an
    entry at most 28 beyond its strings' characters (quotes, colon, comma; a float's 24).
    """
    return 12 * size[0] + 28 * size[1] + 28


def _detach(value: Any, floor: int) -> tuple[Any, int]:
    """``(copy, size)``: :func:`_native_copy` of ``value``, and the length of its JSON when
    that may be over ``floor`` (else a bound under it). ``(_NOT_NATIVE, 0)`` for a value
    that is not JSON data."""
    kind = type(value)
    if kind in _SCALARS or kind is float:
        if kind is float and not math.isfinite(value):
            return _NOT_NATIVE, 0
        if kind is str:
            bound = 12 * len(value) + 2
        elif kind is int and not -_BIG_INT < value < _BIG_INT:
            bound = floor + 1  # a huge int: measured
        else:
            bound = 24
        if bound <= floor:
            return value, bound
        try:
            return value, len(_serde.encode(value))
        except ValueError:  # an int too long to write: encoding says so
            return _NOT_NATIVE, 0
    size = [0, 0]
    copied = _native_copy(value, 0, size)
    if copied is _NOT_NATIVE:
        return copied, 0
    bound = _bound(size)
    return copied, bound if bound <= floor else len(_serde.encode(copied))


def _deep_copy(record: RunRecord, **detached: Any) -> RunRecord:
    """``copy.deepcopy(record)``, deep-copying only the fields that are not immutable atoms
    (nor given, already ``detached``)."""
    clone = object.__new__(type(record))
    fields = clone.__dict__
    for name, value in record.__dict__.items():
        if name in detached:
            fields[name] = detached[name]
        elif type(value) in _SCALARS or isinstance(value, _ATOMS):
            fields[name] = value
        elif type(value) is dict and not value:
            fields[name] = {}
        else:
            fields[name] = copy.deepcopy(value)
    return clone


class InMemoryStore:
    """A store kept in this process's memory (``memory://``).

    Args:
        url: ``memory://``, optionally with ``?max_payload_bytes=`` and ``?warn_payload_bytes=``.
        payload_limits: how large a value's JSON may be (default: the URL's, else
            ``$ORCHESTRATE_MAX_PAYLOAD_BYTES``, else 2 MiB), measured as a SQL store
            would write it.
    """

    capabilities: frozenset[Capability] = frozenset({Capability.CLAIMING, Capability.LIMITS})
    """Private to this process (not :attr:`~Capability.SHARED`): no other worker can claim its
    runs; and no I/O (not :attr:`~Capability.TRANSIENT_FAILURES`): nothing to retry."""

    def __init__(self, url: str = "memory://", *, payload_limits: PayloadLimits | None = None) -> None:
        self.url = url
        options = dict(parse_qsl(urlsplit(url).query))
        self.payload_limits = PayloadLimits.resolve(payload_limits, options, where=f"store URL {url!r}")
        self._runs: dict[str, RunRecord] = {}
        self._steps: dict[str, dict[str, StepRecord]] = {}
        self._attempts: dict[str, dict[str, AttemptState]] = {}
        self._events: dict[str, list[Event]] = {}
        self._cache: dict[str, CacheEntry] = {}
        self._reviews: dict[str, ReviewRecord] = {}
        self._rate_log: dict[str, list[tuple[float, float]]] = {}
        self._breakers: dict[str, BreakerRecord] = {}
        self._claim_steps: dict[str, int] = {}  # step records a run had when last claimed
        self._event_id = 0

    async def open(self) -> None:
        """Nothing to connect to."""

    async def close(self) -> None:
        """Nothing to release."""

    async def schema_version(self) -> int:
        """Always the current version."""
        return SCHEMA_VERSION

    # helpers ----------------------------------------------------------------------------
    def _check_step(self, step: StepRecord) -> tuple[Any, Event | None]:
        """Check the record as the SQL stores' serialisation does (same messages, same
        payload limits); return its output detached from the caller's objects, as a SQL
        store would read it back, and the ``payload_large`` event of a large one."""
        output = step.output
        limits = self.payload_limits
        if output is None:
            detached, size = None, 0
        else:
            detached, size = _detach(output, limits.warn_bytes)
            if detached is _NOT_NATIVE:  # not JSON data: encoding says what is wrong, or converts it
                text = _serde.dumps(output, what=f"output of step {step.step_key!r}")
                detached, size = _serde.loads(text), len(text)
        if not _storable(step.error):
            _serde.dumps(step.error, what=f"error of step {step.step_key!r}")
        if not _storable(step.meta):
            _serde.dumps(step.meta, what=f"metadata of step {step.step_key!r}")
        return detached, None if size <= limits.warn_bytes else _limits.step_check(step, size, limits)

    def _check_value(self, value: Any, what: str) -> tuple[Any, int]:
        """``value`` detached as a SQL store would read it back, and its JSON size (exact over the warning size)."""
        if value is None:
            return None, 0
        detached, size = _detach(value, self.payload_limits.warn_bytes)
        if detached is _NOT_NATIVE:
            text = _serde.dumps(value, what=what)
            detached, size = _serde.loads(text), len(text)
        return detached, size

    def _add_event(self, event: Event | None) -> None:
        if event is None:
            return
        self._event_id += 1
        event = dataclasses.replace(event, id=self._event_id)
        self._events.setdefault(event.run_id, []).append(event)

    def _fenced(self, run_id: str, fence: int) -> RunRecord:
        run = self._runs.get(run_id)
        if run is None:
            raise RunNotFoundError(f"run {run_id!r} does not exist")
        if run.fence != fence or run.status is not RunStatus.RUNNING:
            raise LeaseLostError(
                f"run {run_id!r} is no longer held under fence {fence} "
                f"(now fence {run.fence}, status {run.status.value})"
            )
        return run

    @staticmethod
    def _apply(run: RunRecord, update: RunUpdate, now: float, output: Any = None) -> None:
        """Apply ``update``; ``output``: its output, detached (:meth:`_check_value`)."""
        run.status = update.status
        run.updated_at = now
        if output is not None:
            run.output = output
        if update.error is not None:
            run.error = dict(update.error)
        run.wake_at = update.wake_at
        run.wait_reason = update.wait_reason
        if update.release:
            run.owner = None
            run.lease_expires_at = None

    # runs -------------------------------------------------------------------------------
    async def create_run(self, run: RunRecord, *, event: Event | None = None) -> RunRecord:
        """Insert unless present."""
        existing = self._runs.get(run.run_id)
        if existing is not None:
            return existing.copy()
        limits = self.payload_limits
        detached, size = self._check_value(run.input, f"input of run {run.run_id}")
        large = None if size <= limits.warn_bytes else _limits.input_check(run, size, limits)
        stored = _deep_copy(run, input=detached)
        self._runs[run.run_id] = stored
        self._add_event(event)
        self._add_event(large)
        return stored.copy()

    async def get_run(self, run_id: str) -> RunRecord | None:
        """The run or ``None``."""
        run = self._runs.get(run_id)
        return None if run is None else copy.deepcopy(run)

    async def list_runs(
        self,
        *,
        status: Sequence[RunStatus] | None = None,
        workflow: str | None = None,
        limit: int = 100,
        values: bool = True,
    ) -> list[RunRecord]:
        """Newest first."""
        runs = [
            r
            for r in self._runs.values()
            if (status is None or r.status in status) and (workflow is None or r.workflow == workflow)
        ]
        runs.sort(key=lambda r: (r.created_at, r.run_id), reverse=True)
        return [self._listed(r, values) for r in runs[:limit]]

    @staticmethod
    def _listed(run: RunRecord, values: bool) -> RunRecord:
        if values:
            return copy.deepcopy(run)
        return _deep_copy(run, input=None, output=None)

    async def find_run_ids(self, prefix: str, *, limit: int = 5) -> list[str]:
        """In id order."""
        return sorted(run_id for run_id in self._runs if run_id.startswith(prefix))[:limit]

    async def list_dead_letters(
        self, *, workflow: str | None = None, limit: int = 100, values: bool = True
    ) -> list[RunRecord]:
        """Newest first."""
        runs = [
            r
            for r in self._runs.values()
            if r.status is RunStatus.DEAD
            and (workflow is None or r.workflow == workflow)
            and not any(e.kind == REPLAYED_EVENT for e in self._events.get(r.run_id, ()))
        ]
        runs.sort(key=lambda r: (r.created_at, r.run_id), reverse=True)
        return [self._listed(r, values) for r in runs[:limit]]

    async def prune_runs(
        self,
        *,
        before: float,
        status: Sequence[RunStatus] = PRUNED_BY_DEFAULT,
        limit: int = 500,
        dry_run: bool = False,
    ) -> int:
        """Delete a batch of ended runs with everything kept under their ids."""
        wanted = set(_sql.prune_statuses(status))
        found = [r for r in self._runs.values() if r.status.value in wanted and r.updated_at < before]
        if dry_run:
            return len(found)
        gone = {r.run_id for r in found[:limit]}
        for run_id in gone:
            del self._runs[run_id]
            for table in (self._steps, self._attempts, self._events, self._claim_steps):
                table.pop(run_id, None)
        for review_id in [k for k, v in self._reviews.items() if v.run_id in gone]:
            del self._reviews[review_id]
        return len(gone)

    @staticmethod
    def _claimable(run: RunRecord, now: float) -> bool:
        if run.status is RunStatus.PENDING:
            return run.wake_at is None or run.wake_at <= now
        if run.status is RunStatus.WAITING:
            return run.wake_at is not None and run.wake_at <= now
        if run.status is RunStatus.RUNNING:
            return run.lease_expires_at is not None and run.lease_expires_at <= now
        return False

    async def due_runs(self, *, now: float, limit: int = 100) -> list[RunRecord]:
        """Claimable runs, oldest first."""
        due = [r for r in self._runs.values() if self._claimable(r, now)]
        due.sort(key=lambda r: (r.wake_at or r.created_at, r.run_id))
        return [copy.deepcopy(r) for r in due[:limit]]

    async def claim_run(
        self, run_id: str, *, owner: str, now: float, lease_seconds: float, force: bool = False
    ) -> RunRecord | None:
        """Compare-and-set claim."""
        run = self._runs.get(run_id)
        if run is None:
            return None
        if not self._claimable(run, now) and not (force and run.status is RunStatus.RUNNING):
            return None
        # Crashed attempts, counted as the SQL stores' claim does (``_sql.crash_count``).
        steps = len(self._steps.get(run_id, ()))
        crashes = 0 if steps > self._claim_steps.get(run_id, 0) else run.crashes
        if run.status is RunStatus.RUNNING:
            crashes += 1
            run.crashed_owner = run.owner
        run.crashes = crashes
        self._claim_steps[run_id] = steps
        run.status = RunStatus.RUNNING
        run.owner = owner
        run.lease_expires_at = now + lease_seconds
        run.fence += 1
        run.updated_at = now
        return copy.deepcopy(run)

    async def renew_lease(self, run_id: str, *, owner: str, fence: int, now: float, lease_seconds: float) -> bool:
        """Extend if still held."""
        run = self._runs.get(run_id)
        if run is None or run.fence != fence or run.status is not RunStatus.RUNNING:
            return False
        run.lease_expires_at = now + lease_seconds
        return True

    async def update_run(self, run_id: str, *, fence: int, now: float, update: RunUpdate, event: Event | None) -> None:
        """Fenced transition."""
        limits = self.payload_limits
        output, size = self._check_value(update.output, "run output")
        large = None if size <= limits.warn_bytes else _limits.output_check(run_id, size, limits, now)
        run = self._fenced(run_id, fence)
        self._apply(run, update, now, output)
        self._add_event(event)
        self._add_event(large)

    async def cancel_run(self, run_id: str, *, now: float, reason: str) -> RunRecord:
        """Cancel a non-terminal run."""
        run = self._runs.get(run_id)
        if run is None:
            raise RunNotFoundError(f"run {run_id!r} does not exist")
        if run.status.terminal:
            raise RunStateError(f"run {run_id!r} is already {run.status.value}")
        run.fence += 1
        self._apply(
            run,
            RunUpdate(status=RunStatus.CANCELLED, error={"type": "cancelled", "message": reason}),
            now,
        )
        self._add_event(Event(run_id=run_id, kind="run_cancelled", at=now, data={"reason": reason}))
        return copy.deepcopy(run)

    async def wake_run(self, run_id: str, *, now: float) -> None:
        """Make a waiting run due."""
        run = self._runs.get(run_id)
        if run is not None and run.status is RunStatus.WAITING:
            run.wake_at = now

    # workers ----------------------------------------------------------------------------
    @staticmethod
    def _wanted(run: RunRecord, versions: Sequence[tuple[str, str]] | None, queues: Sequence[str] | None) -> bool:
        return (versions is None or (run.workflow, run.version) in versions) and (queues is None or run.queue in queues)

    async def claim_due(
        self,
        *,
        owner: str,
        now: float,
        lease_seconds: float,
        limit: int,
        versions: Sequence[tuple[str, str]] | None = None,
        queues: Sequence[str] | None = None,
        orphans_of: Sequence[str] = (),
        suspects: int | None = None,
    ) -> list[RunRecord]:
        """Claim due runs of these versions and queues (and runs of dead owners), oldest first."""
        due = [
            r
            for r in self._runs.values()
            if (self._claimable(r, now) or (r.status is RunStatus.RUNNING and r.owner in orphans_of))
            and self._wanted(r, versions, queues)
        ]
        due.sort(key=lambda r: (r.created_at if r.wake_at is None else r.wake_at, r.run_id))
        if suspects is not None:
            suspect = [r for r in due if r.status is RunStatus.RUNNING or r.crashes > 0]
            due = suspect[: max(suspects, 0)] + [r for r in due if r.status is not RunStatus.RUNNING and not r.crashes]
        claimed = []
        for run in due[:limit]:
            got = await self.claim_run(run.run_id, owner=owner, now=now, lease_seconds=lease_seconds, force=True)
            if got is not None:
                claimed.append(got)
        return claimed

    async def seconds_until_due(
        self,
        *,
        now: float,
        versions: Sequence[tuple[str, str]] | None = None,
        queues: Sequence[str] | None = None,
    ) -> float | None:
        """Until the next timer, scheduled start or lease expiry."""
        times = []
        for run in self._runs.values():
            if not self._wanted(run, versions, queues):
                continue
            if run.status is RunStatus.PENDING:
                times.append(run.wake_at or 0.0)
            elif run.status is RunStatus.WAITING and run.wake_at is not None:
                times.append(run.wake_at)
            elif run.status is RunStatus.RUNNING and run.lease_expires_at is not None:
                times.append(run.lease_expires_at)
        return max(min(times) - now, 0.0) if times else None

    async def wait_for_work(self, timeout: float) -> bool:
        """No hints in memory: sleep (the engine polls)."""
        await asyncio.sleep(max(timeout, 0.0))
        return False

    # shared limits ----------------------------------------------------------------------
    async def acquire_rate(
        self, resource: str, *, limit: float, per_seconds: float, cost: float = 1.0, now: float
    ) -> RateGrant:
        """Sliding-window grant (see :func:`~orchestrate.store.base.decide_rate`)."""
        log = self._rate_log.setdefault(resource, [])
        log[:] = [(at, c) for at, c in log if at > now - per_seconds]
        grant = decide_rate(log, limit=limit, per_seconds=per_seconds, cost=cost, now=now)
        if grant.granted:
            log.append((grant.at, cost))
            log.sort(key=lambda entry: entry[0])
        return grant

    async def load_breaker(self, resource: str, *, now: float) -> tuple[BreakerRecord, float]:
        """The breaker's state and ``now``."""
        record = self._breakers.get(resource)
        return (copy.deepcopy(record) if record is not None else BreakerRecord(resource=resource)), now

    async def save_breaker(self, record: BreakerRecord, *, expected_version: int) -> bool:
        """Compare-and-set on the version."""
        stored = self._breakers.get(record.resource)
        if (stored.version if stored is not None else 0) != expected_version:
            return False
        record.version = expected_version + 1
        self._breakers[record.resource] = copy.deepcopy(record)
        return True

    # steps ------------------------------------------------------------------------------
    async def record_step(
        self,
        step: StepRecord,
        *,
        fence: int | None,
        now: float,
        event: Event | None = None,
        run_update: RunUpdate | None = None,
    ) -> StepRecord:
        """Insert-if-absent, fenced when ``fence`` is given."""
        if fence is None:  # a signal, from outside the run
            _limits.signal_depth(step)
        output, large = self._check_step(step)
        run_output = output
        if run_update is not None and run_update.output is not step.output:
            # (the final step's output is the run's, checked once)
            run_output, size = self._check_value(run_update.output, "run output")
            if size > self.payload_limits.warn_bytes:
                large = _limits.output_check(step.run_id, size, self.payload_limits, now) or large
        run = self._fenced(step.run_id, fence) if fence is not None else None
        steps = self._steps.setdefault(step.run_id, {})
        existing = steps.get(step.step_key)
        if existing is not None:
            return copy.deepcopy(existing)
        # The record is kept by reference (the engine never mutates one after writing it;
        # reads hand out deep copies), its output detached: a step that mutates a value it
        # received cannot change what a later read of this record returns.
        steps[step.step_key] = step if output is step.output else dataclasses.replace(step, output=output)
        attempts = self._attempts.get(step.run_id)
        if attempts:
            attempts.pop(step.step_key, None)
        self._add_event(event)
        self._add_event(large)
        if run_update is not None:
            target = run or self._runs[step.run_id]
            self._apply(target, run_update, now, run_output)
        return step

    async def get_steps(self, run_id: str) -> list[StepRecord]:
        """In finishing order."""
        return [copy.deepcopy(s) for s in self._steps.get(run_id, {}).values()]

    async def copy_steps(self, source_run_id: str, target_run_id: str, keys: Sequence[str]) -> int:
        """Copy records for a replay."""
        source = self._steps.get(source_run_id, {})
        target = self._steps.setdefault(target_run_id, {})
        copied = 0
        for key in keys:
            if key in source and key not in target:
                target[key] = dataclasses.replace(copy.deepcopy(source[key]), run_id=target_run_id)
                copied += 1
        return copied

    async def save_attempts(self, state: AttemptState, *, fence: int, event: Event | None) -> None:
        """Upsert retry progress."""
        self._fenced(state.run_id, fence)
        states = self._attempts.setdefault(state.run_id, {})
        stored = copy.deepcopy(state)
        previous = states.get(state.step_key)
        if previous is not None:  # an upsert keeps when the step first started
            stored = dataclasses.replace(stored, first_started_at=previous.first_started_at)
        states[state.step_key] = stored
        self._add_event(event)

    async def get_attempts(self, run_id: str) -> dict[str, AttemptState]:
        """Retry progress by step key."""
        return copy.deepcopy(self._attempts.get(run_id, {}))

    # events, cache ------------------------------------------------------------------------
    async def append_event(self, event: Event) -> None:
        """Append, unless the same event is there already (a retry)."""
        for seen in self._events.get(event.run_id, ()):
            if (seen.kind, seen.at, seen.step_key, seen.data) == (event.kind, event.at, event.step_key, event.data):
                return
        self._add_event(event)

    async def list_events(self, run_id: str) -> list[Event]:
        """Oldest first."""
        return copy.deepcopy(self._events.get(run_id, []))

    async def cache_get(self, key: str) -> CacheEntry | None:
        """Lookup."""
        entry = self._cache.get(key)
        return None if entry is None else copy.deepcopy(entry)

    async def cache_put(self, key: str, value: Any, *, now: float) -> None:
        """Replace."""
        size = len(_serde.dumps(value, what=f"cached value {key!r}"))
        if size > self.payload_limits.max_bytes:
            _limits.cache_check(key, size, self.payload_limits)
        self._cache[key] = CacheEntry(key=key, value=copy.deepcopy(value), stored_at=now)

    # reviews ------------------------------------------------------------------------------
    def _check_review(self, review: ReviewRecord, *, report: bool) -> Event | None:
        """Check the item as the SQL stores do; the ``payload_large`` event of a large payload (``report``)."""
        _limits.review_depth(review)
        what = f"review {review.review_id!r}"
        size = 0 if review.payload is None else len(_serde.dumps(review.payload, what=f"payload of {what}"))
        _serde.dumps(review.decision, what=f"decision of {what}")
        _serde.dumps(review.approvals, what=f"approvals of {what}")
        _serde.dumps(review.meta, what=f"metadata of {what}")
        if size <= self.payload_limits.warn_bytes:
            return None
        return _limits.review_check(review, size, self.payload_limits, report=report)

    async def create_review(self, review: ReviewRecord, *, event: Event | None = None) -> ReviewRecord:
        """Insert unless present."""
        existing = self._reviews.get(review.review_id)
        if existing is not None:
            return existing.copy()
        large = self._check_review(review, report=True)
        self._reviews[review.review_id] = review.copy()
        self._add_event(event)
        self._add_event(large)
        return review.copy()

    async def get_review(self, review_id: str) -> ReviewRecord | None:
        """The item or ``None``."""
        review = self._reviews.get(review_id)
        return None if review is None else review.copy()

    async def find_review_ids(self, prefix: str, *, limit: int = 5) -> list[str]:
        """In id order."""
        return sorted(review_id for review_id in self._reviews if review_id.startswith(prefix))[:limit]

    async def list_reviews(
        self,
        *,
        status: Sequence[ReviewStatus] | None = None,
        role: str | None = None,
        run_id: str | None = None,
        limit: int = 100,
    ) -> list[ReviewRecord]:
        """Most urgent first."""
        found = [
            r
            for r in self._reviews.values()
            if (status is None or not status or r.status in status)
            and (role is None or not r.allowed_roles or role in r.allowed_roles)
            and (run_id is None or r.run_id == run_id)
        ]
        found.sort(
            key=lambda r: (
                PRIORITY_RANKS.get(r.priority, len(PRIORITY_RANKS)),
                r.due_at is None,
                r.due_at or 0.0,
                r.created_at,
                r.review_id,
            )
        )
        return [r.copy() for r in found[:limit]]

    async def update_review(
        self,
        review: ReviewRecord,
        *,
        expected_version: int,
        now: float,
        events: Sequence[Event] = (),
        signal: StepRecord | None = None,
    ) -> bool:
        """Compare-and-set on the version; with ``signal``, record it and wake the run too."""
        self._check_review(review, report=False)
        if signal is not None:
            _limits.signal_depth(signal)
        large = self._check_step(signal)[1] if signal is not None else None
        stored = self._reviews.get(review.review_id)
        if stored is None or stored.version != expected_version:
            return False
        if signal is not None and signal.step_key in self._steps.get(signal.run_id, {}):
            return False
        updated = review.copy()
        # Only the mutable fields change, as in the SQL stores.
        for name in ("status", "payload", "due_at", "warn_at", "warned_at", "escalated_to", "approvals"):
            setattr(stored, name, getattr(updated, name))
        stored.decision, stored.decided_at, stored.meta = updated.decision, updated.decided_at, updated.meta
        stored.updated_at = now
        stored.version = expected_version + 1
        if signal is not None:
            self._steps.setdefault(signal.run_id, {})[signal.step_key] = copy.deepcopy(signal)
            attempts = self._attempts.get(signal.run_id)
            if attempts:
                attempts.pop(signal.step_key, None)
            await self.wake_run(signal.run_id, now=now)
        for event in events:
            self._add_event(copy.deepcopy(event))
        self._add_event(large)
        return True
