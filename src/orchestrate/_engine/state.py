"""The bottom of the engine: a run's state while it executes, and what a step is.

Everything above reads and writes a run through :class:`RunState`: the records found in
the store, the outputs handed on, the keys consumed by a replay, the write that ends
the run. :class:`~orchestrate.RunContext` (``context.py``) is its public face; the step
executor, the gates and the graph interpreter work on it directly.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import time
import uuid
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any

from orchestrate import _codec, _serde
from orchestrate._definitions.calls import CallPlan, source_of
from orchestrate._engine.hooks import hooks_of
from orchestrate.errors import NonDeterminismError, StepFailedError
from orchestrate.policies import MISSING, StepPolicy
from orchestrate.state import Compression, compression_of, schema_of
from orchestrate.store import _blobs
from orchestrate.store.base import AttemptState, Event, RunRecord, RunUpdate, StepRecord
from orchestrate.types import RunStatus, StepStatus

if TYPE_CHECKING:  # the layers above, for annotations only
    from orchestrate._engine.context import RunContext
    from orchestrate._engine.runner import Engine


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
        # state that stays small: the step's StepSchema, given or its function's decorator
        schema = self.policy.schema or schema_of(self.plan.fn)
        if schema is not None:
            schema.check(self.plan.returns, f"step {self.name!r}")
        return _codec.plan_for(self.plan.fn, self.plan.returns, schema)

    @cached_property
    def compression(self) -> Compression | None:
        """The ``compress_after`` the step's function carries, if any."""
        return compression_of(self.plan.fn)

    @property
    def cache_prefix(self) -> str:
        """Cache keys: step name and a fingerprint of its code."""
        return f"{self.name}:{_code_fingerprint(self.plan.fn)}"


_FINGERPRINTS: dict[Any, str] = {}


def _code_fingerprint(fn: Any) -> str:
    found = _FINGERPRINTS.get(fn)
    if found is None:
        found = _serde.input_hash(source_of(fn))[:8]
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


class RunState:
    """One execution of a run: its records, its outputs, and how it writes them.

    Made by the engine for each drive of a run (a resume makes a new one); the
    public :class:`~orchestrate.RunContext` adds the calls a durable function makes.
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
        # State that stays small: the run's compress_after (its workflow's, else the first
        # met on a step's function) and how its store keeps large values.
        self.compression: Compression | None = None
        self._storage: _blobs.Storage | None = None
        self._positions: int | None = None  # step records so far, counted once compression applies

    @property
    def fence(self) -> int:
        """The fencing token this execution writes under."""
        return self.run.fence

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

    async def record(
        self, record: StepRecord, *, event: Event | None = None, pack: StepSpec | None = None
    ) -> StepRecord:
        """Write a step record under this run's fence; the stored one wins.

        The final step's plain success also marks the run succeeded, in the same write.
        With ``pack`` (the step's spec) the output is written compressed or offloaded as
        the run's settings say; what this returns, and later steps read, is the plain record.
        """
        update = None
        if (
            record.step_key == self.final_key
            and event is None
            and record.status is StepStatus.SUCCEEDED
            and record.fallback is None
        ):
            update = RunUpdate(status=RunStatus.SUCCEEDED, output=record.output)
            event = Event(run_id=self.run_id, kind="run_succeeded", at=record.finished_at)
        written = record
        if pack is not None and record.output is not None:
            # compressed or offloaded only when a setting asks (the common step pays three checks)
            if self.compression is not None or pack.compression is not None or self.storage.blobs is not None:
                written = await self._pack(record, pack)
        stored = await self.engine.store.record_step(
            written, fence=self.fence, now=record.finished_at, event=event, run_update=update
        )
        if stored is written:
            stored = record  # ours: the plain form, as given
        elif _blobs.is_packed(stored):
            stored = await _blobs.unpack(stored, self.storage)
        self.recorded[record.step_key] = stored
        if update is not None and stored is record:
            self.finished = True
        engine = self.engine
        if time.monotonic() >= engine.turn_at:  # a long run of steps that never suspend
            await engine.turn()  # still lets the loop's other tasks run, once per slice
        return stored

    # state that stays small ----------------------------------------------------------------
    @property
    def storage(self) -> _blobs.Storage:
        """How the run's store keeps large values (its blob store and offload size)."""
        if self._storage is None:
            self._storage = _blobs.storage_of(self.engine.store)
        return self._storage

    async def _pack(self, record: StepRecord, spec: StepSpec) -> StepRecord:
        compression = self.compression
        if compression is None:
            compression = self.compression = spec.compression
        strategy = level = None
        if compression is not None:
            if self._positions is None:
                self._positions = sum(1 for k in self.recorded if not k.startswith(_NOT_STEPS))
            self._positions += 1
            if compression.applies(self._positions, self.recorded):
                strategy, level = compression.strategy, compression.level
        return await _blobs.pack(record, self.storage, strategy=strategy, level=level)

    async def unpacked(self, record: StepRecord) -> StepRecord:
        """``record`` with its output read back (decompressed, fetched from the blob store)."""
        if not _blobs.is_packed(record):
            return record
        plain = await _blobs.unpack(record, self.storage)
        self.recorded[record.step_key] = plain
        return plain

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


_NOT_STEPS = ("wait:", "sleep:", "review:")  # keys of records that are not a step's output

_SIBLING_PASSES = 8  # event-loop turns without progress before a replay is called divergent


@dataclass(frozen=True)
class Args:
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
