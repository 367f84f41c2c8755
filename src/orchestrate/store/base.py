"""The ``Store`` protocol and the records it keeps.

One async protocol at the domain level: runs, step records, attempt counters, events,
the step cache, signals and review items. Every write is idempotent or compare-and-set, because a
write may be retried after its acknowledgement was lost:

* step records are insert-if-absent under ``(run_id, step_key)``: the first write wins
  and a repeated write returns the stored record;
* writes made on behalf of a worker carry the run's *fencing token*; once the run was
  claimed again (lease expired, cancelled), the old holder's writes raise
  :class:`~orchestrate.errors.LeaseLostError` and change nothing.

Times are POSIX seconds (floats) from the engine's clock. Records are built with keyword
arguments; retry progress, events and cache entries are frozen (a store keeps what it
was given: change one with :func:`dataclasses.replace`); runs, review items and breakers
are updated in place by their compare-and-set writers, and they and step records (built
for every step, where a frozen dataclass's ``__init__`` would cost a tenth of a step's
instructions) are copied by the stores that hand them out.
"""

from __future__ import annotations

import copy
import dataclasses
import enum
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from orchestrate.policies import RateGrant as RateGrant  # the rate window's answer, which stores return
from orchestrate.policies import decide_rate as decide_rate  # the rate window's arithmetic, which stores apply
from orchestrate.types import RunStatus, StepStatus

SCHEMA_VERSION = 8
"""Version of the schema this code reads and writes (8: step results by name, outcome feedback, alerts)."""

PRUNED_BY_DEFAULT: tuple[RunStatus, ...] = (RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.CANCELLED)
"""The statuses :meth:`Store.prune_runs` deletes unless told otherwise.

Dead runs are left out: the dead-letter queue is work someone still has to do. Name
``dead`` explicitly to prune them too.
"""

REPLAYED_EVENT = "replayed"
"""The kind of the event a replay appends to the history of the run it replays.

A dead run with such an event has left the dead-letter queue (:meth:`Store.list_dead_letters`).
"""


class EventKind(enum.StrEnum):
    """The kinds of the events orchestrate writes into a run's history (:attr:`Event.kind`).

    The values are what the stores keep; an event of a kind not listed here (a custom
    one, appended by an application) is kept and shown as it is.
    """

    RUN_CREATED = "run_created"  # the run was created (data: version; claimed when this process runs it at once)
    RUN_RESUMED = "run_resumed"  # a worker claimed the run and replays its record (data: replayed_steps, fence)
    RUN_WAITING = "run_waiting"  # the run parked, holding no worker (data: reason; wake_at for a timer)
    RUN_RELEASED = "run_released"  # its worker let go of it before its end (draining): another will claim it
    RUN_SUCCEEDED = "run_succeeded"  # the run ended with its output
    RUN_FAILED = "run_failed"  # the run ended with an error (data: error)
    RUN_CANCELLED = "run_cancelled"  # someone cancelled the run (data: reason)
    RUN_DEAD = "run_dead"  # the run went to the dead-letter queue: policies exhausted, poison input, crashes
    ATTEMPT_CRASHED = "attempt_crashed"  # a claim found the previous attempt died without a record (data: crashes)
    STEP_RETRY = "step_retry"  # an attempt failed and the next is scheduled (data: attempt, error, delay)
    STEP_FALLBACK = "step_fallback"  # the step's policy gave up and a fallback answered (data: fallback, reason)
    STEP_FAILED = "step_failed"  # the step failed for good (data: error, attempts)
    STEP_ROUTED = "step_routed"  # the step returned a Fallback decision sending the run elsewhere (data: target)
    TIMER_SET = "timer_set"  # the run sleeps on a durable timer (data: wake_at)
    WAIT_STARTED = "wait_started"  # the run waits for a signal (data: timeout, payload)
    SIGNAL_RECEIVED = "signal_received"  # a signal was delivered to the run (data: by)
    REPLAY_STARTED = "replay_started"  # this run replays another (data: source, reused step keys)
    REPLAYED = REPLAYED_EVENT  # this run was replayed by another (data: replay); it leaves the dead-letter queue
    PAYLOAD_LARGE = "payload_large"  # a value over the store's warning size was written (data: what, size)
    REVIEW_CREATED = "review_created"  # a review item was opened at a gate
    REVIEW_AUTO_APPROVED = "review_auto_approved"  # a tiered gate let the output through without a person
    REVIEW_CLAIMED = "review_claimed"  # a reviewer took the item to work on it
    REVIEW_APPROVAL_RECORDED = "review_approval_recorded"  # one approval of several required is in
    REVIEW_DECIDED = "review_decided"  # the item's final decision: approved, rejected or edited
    REVIEW_ESCALATED = "review_escalated"  # the SLA passed and a new item went to another role
    REVIEW_EXPIRED = "review_expired"  # the SLA passed and the gate's default outcome was taken
    REVIEW_SLA_WARNING = "review_sla_warning"  # the warning before the item's deadline was given
    REVIEW_NOTIFY_FAILED = "review_notify_failed"  # a reviewer notification could not be delivered
    REVIEW_CANCELLED = "review_cancelled"  # the run was cancelled while the item waited
    MODEL_STREAM = "model_stream"  # a streaming model step's text, coalesced (data: text, seq, done, attempt)
    STEP_DIVERTED = "step_diverted"  # an alert's action diverted the step (data: alert_id, monitor, action)
    FEEDBACK_RECORDED = "feedback_recorded"  # feedback on the run (data: feedback_id, by, outcome, score, label, step)


@dataclass(kw_only=True)
class RunRecord:
    """A run as stored.

    Attributes:
        run_id: the run's id.
        workflow: workflow name.
        version: the workflow version the run is pinned to.
        status: where the run stands.
        input: the run's input (JSON).
        output: the run's output once succeeded.
        error: ``{"type", "name", "message", "step"?}`` once failed or dead.
        wake_at: when a waiting run becomes due again (``None``: only a signal wakes it).
        wait_reason: what a waiting run waits for (``"timer"``, ``"signal:review:x"``...).
        owner: the worker holding the lease while running.
        lease_expires_at: when the lease ends unless renewed.
        fence: fencing token, incremented by every claim and by cancellation.
        deadline_at: the run's deadline (time budget), if any.
        options: replay overrides and other run options (JSON object).
        parent_run_id: the run this one replays, if any.
        crashes: crashed attempts since the run last recorded a step: counted by the
            store when it hands the run to a worker while the previous holder still held
            it (the holder died or stalled and its lease expired) without a new step
            recorded since that holder's claim; a claim after a recorded step starts the
            count again.
        crashed_owner: the worker whose attempt was counted last.
    """

    run_id: str
    workflow: str
    version: str
    status: RunStatus = RunStatus.PENDING
    input: Any = None
    output: Any = None
    error: dict[str, Any] | None = None
    created_at: float = 0.0
    updated_at: float = 0.0
    wake_at: float | None = None
    wait_reason: str | None = None
    owner: str | None = None
    lease_expires_at: float | None = None
    fence: int = 0
    deadline_at: float | None = None
    queue: str = "default"
    options: dict[str, Any] = field(default_factory=dict)
    parent_run_id: str | None = None
    crashes: int = 0
    crashed_owner: str | None = None

    def copy(self) -> RunRecord:
        """A shallow copy (stores hand out copies, never their own objects)."""
        # What ``dataclasses.replace`` would build, without calling ``__init__`` field by
        # field: this runs a few times for every run.
        clone = object.__new__(type(self))
        clone.__dict__.update(self.__dict__)
        clone.options = dict(self.options)
        return clone


@dataclass(kw_only=True)  # not frozen: one is built for every step, and a frozen __init__ costs ~10% of a step
class StepRecord:
    """The recorded outcome of one step execution (exactly one per ``(run_id, step_key)``).

    Attributes:
        meta: quality metadata: ``latency_ms``, ``error_class``, ``fallback_reason``,
            ``flag``, ``cached``, ``idempotency_key``, ``attempt_log``...
    """

    run_id: str
    step_key: str
    name: str
    status: StepStatus
    output: Any = None
    error: dict[str, Any] | None = None
    attempts: int = 1
    started_at: float = 0.0
    finished_at: float = 0.0
    input_hash: str | None = None
    fallback: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass(kw_only=True, frozen=True)
class AttemptState:
    """Progress of a step that failed and waits for its next attempt (a durable timer)."""

    run_id: str
    step_key: str
    attempts: int
    next_at: float
    first_started_at: float
    error: dict[str, Any] | None = None


@dataclass(kw_only=True, frozen=True)
class Event:
    """One entry of a run's history: its audit trail and its timeline."""

    run_id: str
    kind: str
    at: float
    step_key: str | None = None
    data: dict[str, Any] = field(default_factory=dict)
    id: int = 0


@dataclass(kw_only=True)
class RunUpdate:
    """A status transition written together with a step record or on its own.

    Only the fields set are changed; ``release`` drops the lease.
    """

    status: RunStatus
    output: Any = None
    error: dict[str, Any] | None = None
    wake_at: float | None = None
    wait_reason: str | None = None
    release: bool = True


@dataclass(kw_only=True, frozen=True)
class CacheEntry:
    """A cached step output."""

    key: str
    value: Any
    stored_at: float


class ReviewStatus(enum.StrEnum):
    """Where a review item stands. Every status but ``pending`` is final."""

    PENDING = "pending"  # waiting for decisions; the run is parked on it
    APPROVED = "approved"  # every required approval is in (edits included); the run goes on
    REJECTED = "rejected"  # a permitted reviewer rejected it, with a reason
    ESCALATED = "escalated"  # its SLA passed and a new item for another role replaced it
    EXPIRED = "expired"  # its SLA passed and the gate's default (approve/reject/route/fail) was taken
    CANCELLED = "cancelled"  # the run was cancelled before anyone decided

    @property
    def final(self) -> bool:
        """Whether the item takes no more decisions."""
        return self is not ReviewStatus.PENDING


PRIORITY_RANKS: dict[str, int] = {"urgent": 0, "high": 1, "normal": 2, "low": 3}
"""Queue order of review priorities (lower first)."""


@dataclass(kw_only=True)
class ReviewRecord:
    """A review item: what people are asked to decide while a run waits at a gate.

    Attributes:
        review_id: the item's id (deterministic: a replay finds the same item).
        run_id: the parked run.
        workflow: the run's workflow.
        step_key: the step whose output is under review.
        gate_key: what the run waits for (``review:<step>`` or ``queue:<name>:<step>``).
        queue: the gate's or queue's name.
        payload: what the reviewer sees; an edit replaces it.
        status: where the item stands.
        roles: roles allowed to decide (empty with no ``required_roles``: anyone).
        required_roles: roles that must each approve before the run resumes.
        min_approvals: approvals from distinct reviewers needed at least.
        priority: ``urgent``, ``high``, ``normal`` or ``low``.
        sla_seconds: how long reviewers have; ``None``: no deadline.
        due_at: when the SLA passes.
        warn_at: when the warning before the deadline is due.
        warned_at: when that warning was given.
        level: 0 for the gate's item, n for its n-th escalation.
        parent_id: the item this one escalated from.
        escalated_to: the item that replaced this one.
        approvals: ``{"by", "role", "at", "outcome", "changes"?, "comment"?}`` per approval.
        decision: the final decision: ``{"outcome", "by", "role", "at", "reason"?, ...}``.
        meta: the tier chosen, the timeout policy, who created it...
        version: compare-and-set counter, incremented by every update.
    """

    review_id: str
    run_id: str
    workflow: str
    step_key: str
    gate_key: str
    payload: Any = None
    status: ReviewStatus = ReviewStatus.PENDING
    queue: str = "review"
    roles: list[str] = field(default_factory=list)
    required_roles: list[str] = field(default_factory=list)
    min_approvals: int = 1
    priority: str = "normal"
    sla_seconds: float | None = None
    due_at: float | None = None
    warn_at: float | None = None
    warned_at: float | None = None
    level: int = 0
    parent_id: str | None = None
    escalated_to: str | None = None
    approvals: list[dict[str, Any]] = field(default_factory=list)
    decision: dict[str, Any] | None = None
    created_at: float = 0.0
    updated_at: float = 0.0
    decided_at: float | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    version: int = 0

    @property
    def allowed_roles(self) -> list[str]:
        """Roles that may decide (``roles`` and ``required_roles``); empty: anyone."""
        return list(dict.fromkeys([*self.roles, *self.required_roles]))

    def copy(self) -> ReviewRecord:
        """A deep copy (stores hand out copies, never their own objects)."""
        return copy.deepcopy(self)

    def to_dict(self) -> dict[str, Any]:
        """The item as a JSON-ready dict (webhooks, the CLI's ``--json``)."""
        data = dataclasses.asdict(self)
        data["status"] = self.status.value
        return data


@dataclass(kw_only=True)
class BreakerRecord:
    """The shared state of one circuit breaker, written with compare-and-set.

    Attributes:
        resource: what the breaker guards (e.g. a model endpoint).
        state: ``"closed"``, ``"open"`` or ``"half_open"``.
        failures: times of the counted failures inside the window (closed state).
        opened_at: when the breaker last opened.
        trials: trial calls granted while half-open.
        successes: trial calls that succeeded while half-open.
        version: compare-and-set token; every save increments it (0: never saved).
    """

    resource: str
    state: str = "closed"
    failures: list[float] = field(default_factory=list)
    opened_at: float | None = None
    trials: int = 0
    successes: int = 0
    version: int = 0


class Capability(enum.StrEnum):
    """What a store offers beyond the :class:`Store` protocol; each store declares its own.

    A store lists them in a ``capabilities`` attribute; :func:`capabilities_of` reads it
    (and works out what a store that declares nothing offers). Code that needs one asks
    for the capability, never for a backend's class.
    """

    SHARED = "shared"  # other processes may claim its runs: a worker keeps its leases alive (heartbeats)
    CLAIMING = "claiming"  # claims due runs in one call and wakes idle workers (:class:`ClaimingStore`)
    LIMITS = "limits"  # keeps rate windows and breakers every worker shares (:class:`LimitsStore`)
    TRANSIENT_FAILURES = "transient_failures"  # its calls go through I/O that may fail once and work when retried


def capabilities_of(store: object) -> frozenset[Capability]:
    """The capabilities ``store``'s class declares in its ``capabilities`` attribute.

    A store whose class declares none (a wrapper such as
    :class:`~orchestrate.testing.FaultyStore`, whose faults are transient failures of
    their own; a third-party store written before capabilities) is taken to be shared
    and to fail transiently, the safe assumptions (leases kept alive, calls retried),
    and to offer claiming and shared limits when it has their methods.
    """
    declared = getattr(type(store), "capabilities", None)
    if declared is not None:
        return frozenset(Capability(c) for c in declared)
    found = {Capability.SHARED, Capability.TRANSIENT_FAILURES}
    if isinstance(store, ClaimingStore):
        found.add(Capability.CLAIMING)
    if isinstance(store, LimitsStore):
        found.add(Capability.LIMITS)
    return frozenset(found)


@runtime_checkable
class Store(Protocol):
    """Durable state of orchestrate: the one interface every backend implements.

    Run the conformance suite in :mod:`orchestrate.testing.store_suite` against a new
    backend before trusting it. A backend that offers more than this protocol says so in
    a ``capabilities`` attribute (a set of :class:`Capability`).
    """

    url: str

    async def open(self) -> None:
        """Connect and migrate the schema to :data:`SCHEMA_VERSION` (idempotent)."""

    async def close(self) -> None:
        """Release connections and threads."""

    async def schema_version(self) -> int:
        """The schema version recorded in the store."""

    # runs ---------------------------------------------------------------------------
    async def create_run(self, run: RunRecord, *, event: Event | None = None) -> RunRecord:
        """Insert the run unless its id exists; return the stored run either way."""

    async def get_run(self, run_id: str) -> RunRecord | None:
        """The run, or ``None``."""

    async def list_runs(
        self,
        *,
        status: Sequence[RunStatus] | None = None,
        workflow: str | None = None,
        limit: int = 100,
        values: bool = True,
    ) -> list[RunRecord]:
        """Runs, newest first, optionally filtered.

        With ``values=False`` the runs' inputs and outputs are not read (they come back
        ``None``): what a listing needs, whatever the size of the values.
        """

    async def find_run_ids(self, prefix: str, *, limit: int = 5) -> list[str]:
        """Ids of the runs whose id starts with ``prefix``, in id order, at most ``limit``.

        The prefix is taken literally and case-sensitively (``%``, ``_`` or ``*`` in it
        match only themselves).
        """

    async def list_dead_letters(
        self, *, workflow: str | None = None, limit: int = 100, values: bool = True
    ) -> list[RunRecord]:
        """The dead-letter queue, newest first: dead runs that were not replayed.

        A run was replayed when its history has a :data:`REPLAYED_EVENT`. ``values``: as
        for :meth:`list_runs`.
        """

    async def prune_runs(
        self,
        *,
        before: float,
        status: Sequence[RunStatus] = PRUNED_BY_DEFAULT,
        limit: int = 500,
        dry_run: bool = False,
    ) -> int:
        """Delete up to ``limit`` runs that ended before ``before``; return how many.

        A run goes with everything kept under its id: its step records, its history
        (events), its retry progress and its review items, in one transaction. Only runs
        in one of ``status`` (terminal statuses only) whose last change (``updated_at``)
        is before ``before`` are deleted; a run that is not terminal never is. Cached step
        outputs, rate-limit windows and breakers are not per run and stay. With
        ``dry_run`` nothing is deleted and the answer is how many runs would be, all of
        them (``limit`` aside).

        Raises:
            InvalidInputError: ``status`` names a status that is not terminal.
        """

    async def due_runs(self, *, now: float, limit: int = 100) -> list[RunRecord]:
        """Runs that a worker may claim now: pending, waiting and due, or lease expired."""

    async def claim_run(
        self, run_id: str, *, owner: str, now: float, lease_seconds: float, force: bool = False
    ) -> RunRecord | None:
        """Take the run's lease if it is claimable (or ``force`` for a dead owner).

        Increments the fence and sets the status to running. Counts a crashed attempt
        when the run was still ``running`` (its holder died or stalled): ``crashes``
        becomes one more than before, or 1 when a step was recorded since the previous
        claim, and ``crashed_owner`` names that holder; any other claim keeps the count,
        or resets it to 0 after a recorded step. Returns the claimed run, or ``None``
        when someone else holds it or it is not due.
        """

    async def renew_lease(self, run_id: str, *, owner: str, fence: int, now: float, lease_seconds: float) -> bool:
        """Extend the lease; ``False`` when the lease was lost."""

    async def update_run(self, run_id: str, *, fence: int, now: float, update: RunUpdate, event: Event | None) -> None:
        """Fenced status transition. Raises ``LeaseLostError`` if the fence moved."""

    async def cancel_run(self, run_id: str, *, now: float, reason: str) -> RunRecord:
        """Cancel a non-terminal run; bumps the fence so its worker stops at its next write."""

    async def wake_run(self, run_id: str, *, now: float) -> None:
        """Make a waiting run due now (used after a signal is delivered)."""

    # steps --------------------------------------------------------------------------
    async def record_step(
        self,
        step: StepRecord,
        *,
        fence: int | None,
        now: float,
        event: Event | None = None,
        run_update: RunUpdate | None = None,
    ) -> StepRecord:
        """Insert-if-absent; return the stored record (the first write wins).

        With ``fence`` the write is refused (``LeaseLostError``) unless the run is running
        under that fence. ``run_update`` is applied in the same transaction when the step
        was newly recorded. A newly recorded step's retry progress (``save_attempts``) is
        cleared; a record of ``attempts == 1`` has none (progress is saved only after a
        failed attempt), so stores may skip that delete for it.
        """

    async def get_steps(self, run_id: str) -> list[StepRecord]:
        """The run's step records in the order they finished."""

    async def copy_steps(self, source_run_id: str, target_run_id: str, keys: Sequence[str]) -> int:
        """Copy step records to another run (replay); returns how many were copied."""

    async def save_attempts(self, state: AttemptState, *, fence: int, event: Event | None) -> None:
        """Upsert the retry progress of a step (fenced)."""

    async def get_attempts(self, run_id: str) -> dict[str, AttemptState]:
        """Retry progress of the run's unfinished steps, by step key."""

    # events, cache ------------------------------------------------------------------
    async def append_event(self, event: Event) -> None:
        """Append to a run's history, unless an event the same in every field (kind, time,
        step, data) is in it already: a retry after a lost acknowledgement records it once."""

    async def list_events(self, run_id: str) -> list[Event]:
        """The run's history, oldest first."""

    async def cache_get(self, key: str) -> CacheEntry | None:
        """A cached value, or ``None``."""

    async def cache_put(self, key: str, value: Any, *, now: float) -> None:
        """Store or replace a cached value."""

    # reviews ------------------------------------------------------------------------
    async def create_review(self, review: ReviewRecord, *, event: Event | None = None) -> ReviewRecord:
        """Insert the item unless its id exists; return the stored one (the first write wins).

        ``event`` is appended only when the item was newly inserted.
        """

    async def get_review(self, review_id: str) -> ReviewRecord | None:
        """The item, or ``None``."""

    async def find_review_ids(self, prefix: str, *, limit: int = 5) -> list[str]:
        """Ids of the review items whose id starts with ``prefix``, in id order, at most ``limit``.

        The prefix is taken literally and case-sensitively, as by :meth:`find_run_ids`.
        """

    async def list_reviews(
        self,
        *,
        status: Sequence[ReviewStatus] | None = None,
        role: str | None = None,
        run_id: str | None = None,
        limit: int = 100,
    ) -> list[ReviewRecord]:
        """Items, most urgent first: by priority, then earliest deadline, then oldest.

        ``role`` keeps the items that role may decide (those open to anyone included).
        """

    async def update_review(
        self,
        review: ReviewRecord,
        *,
        expected_version: int,
        now: float,
        events: Sequence[Event] = (),
        signal: StepRecord | None = None,
    ) -> bool:
        """Compare-and-set: write the item's mutable fields if its stored version is ``expected_version``.

        The stored version becomes ``expected_version + 1`` and ``updated_at`` becomes
        ``now``. With ``signal`` (the decision the run waits for) the step record is
        inserted and the run woken in the same transaction; if that step key is recorded
        already, nothing is written. ``events`` are appended only when the write happens.

        Returns:
            whether the write happened (``False``: another writer won; nothing changed).
        """


@runtime_checkable
class ClaimingStore(Store, Protocol):
    """A store that workers claim from in one statement and that can wake idle workers.

    Every built-in store implements it; the engine falls back to :meth:`Store.due_runs`
    and :meth:`Store.claim_run` for a store that does not (a test wrapper, say).
    """

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
        """Claim up to ``limit`` due runs at once, oldest first, and return them claimed.

        Only runs of the ``(workflow, version)`` pairs in ``versions`` (``None``: any) and
        in ``queues`` (``None``: any) are considered. Each claim is the compare-and-set of
        :meth:`Store.claim_run` (crashed attempts counted alike): a run is handed to
        exactly one caller. Running runs still held by one of ``orphans_of`` (owners known
        to be dead) are claimable too, before their lease expires; once someone else took
        such a run over, it is not.

        ``suspects`` bounds how many of the claimed runs may be *suspects*: runs whose
        previous holder died (still ``running``) or whose ``crashes`` count is above 0.
        Suspects are claimed first, then other runs up to ``limit`` in all. ``None``:
        no bound.
        """

    async def seconds_until_due(
        self,
        *,
        now: float,
        versions: Sequence[tuple[str, str]] | None = None,
        queues: Sequence[str] | None = None,
    ) -> float | None:
        """Seconds until the next run of these versions and queues becomes claimable.

        Counts scheduled runs, timers and held leases; ``0`` when one is due now,
        ``None`` when nothing is scheduled (only a new run or a signal can make one due).
        """

    async def wait_for_work(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for a hint that a run became claimable.

        Returns ``True`` when woken by a hint (a run was created, released, woken or
        parked on a timer), ``False`` on timeout. Hints may be lost or spurious: callers
        poll as well.
        """


@runtime_checkable
class LimitsStore(Protocol):
    """Rate-limit windows and circuit-breaker state shared by every worker of a store."""

    async def acquire_rate(
        self, resource: str, *, limit: float, per_seconds: float, cost: float = 1.0, now: float
    ) -> RateGrant:
        """Take ``cost`` from ``resource``'s budget of ``limit`` per sliding ``per_seconds``.

        Atomic across workers: the grants of any half-open window of ``per_seconds``
        never sum above ``limit``. A refused call takes nothing and learns how long to
        wait. ``now`` is ignored by stores with their own clock (PostgreSQL's).
        """

    async def load_breaker(self, resource: str, *, now: float) -> tuple[BreakerRecord, float]:
        """The breaker's state (a fresh closed one if never saved) and the store's time."""

    async def save_breaker(self, record: BreakerRecord, *, expected_version: int) -> bool:
        """Write ``record`` if the stored version is still ``expected_version``.

        On success the stored version becomes ``expected_version + 1`` (and so does
        ``record.version``); ``False`` when another worker saved first.
        """
