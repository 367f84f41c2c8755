"""``FaultyStore``: fault injection as a wrapper around any store.

Wrap a real store and choose which calls fail, counted per method from 1::

    store = FaultyStore(SQLiteStore(url), fail_on={"record_step": [2, 3]}, mode="lost_ack")

Two kinds of fault (:class:`FaultMode`):

* ``"before"`` — the call raises :class:`~orchestrate.errors.StoreError` before it reaches
  the inner store: nothing was written;
* ``"lost_ack"`` — the call is performed on the inner store (the write is committed)
  and *then* raises ``StoreError``: the caller cannot tell that it succeeded, which is
  what a dropped connection after ``COMMIT`` looks like. Code that retries such a write
  must rely on the store's idempotent, compare-and-set writes.

A call that the inner store refuses by itself (``LeaseLostError``...) raises that error
and injects nothing. To combine both modes, wrap one ``FaultyStore`` in another; each
counts only the calls that reach it.
"""

from __future__ import annotations

import enum
import functools
import inspect
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from orchestrate.errors import InvalidInputError, StoreError
from orchestrate.store.base import (
    AttemptState,
    CacheEntry,
    Event,
    ReviewRecord,
    ReviewStatus,
    RunRecord,
    RunUpdate,
    StepRecord,
    Store,
)
from orchestrate.types import RunStatus

T = TypeVar("T")

STORE_METHODS: frozenset[str] = frozenset(
    name for name, member in vars(Store).items() if inspect.iscoroutinefunction(member)
)
"""Names of the ``Store`` protocol's async methods."""


def _is_async_method(store: object, name: str) -> bool:
    return not name.startswith("_") and inspect.iscoroutinefunction(getattr(store, name, None))


class FaultMode(enum.StrEnum):
    """When an injected fault strikes."""

    BEFORE = "before"  # raise before the call reaches the inner store: nothing written
    LOST_ACK = "lost_ack"  # perform the call, then raise: committed, acknowledgement lost


@dataclass(frozen=True)
class InjectedFault:
    """One fault that a :class:`FaultyStore` injected.

    Attributes:
        method: the store method that failed.
        call: which call of that method it was (counted from 1).
        mode: whether the call reached the inner store before failing.
    """

    method: str
    call: int
    mode: FaultMode


class FaultyStore:
    """A :class:`~orchestrate.store.Store` that fails chosen calls of an inner store.

    Every public async method of the inner store can be failed: the ``Store`` protocol's
    (including methods added to it later) and a backend's own. Other attributes are the
    inner store's.

    Args:
        store: the store to wrap; every call not chosen to fail goes straight to it.
        fail_on: method name -> the call numbers (from 1, per method) that fail, e.g.
            ``{"record_step": [2, 3]}``; a single int names one call.
        mode: the kind of fault, ``"before"`` (default) or ``"lost_ack"``.

    Attributes:
        inner: the wrapped store (use it to set up or inspect state without faults).
        calls: how many times each method was called through this wrapper.
        injected: the faults injected so far, in order.

    Raises:
        InvalidInputError: ``fail_on`` names no async method of the inner store, a call
            number is below 1, or the mode is unknown.
    """

    def __init__(
        self,
        store: Store,
        *,
        fail_on: Mapping[str, int | Iterable[int]],
        mode: FaultMode | str = FaultMode.BEFORE,
    ) -> None:
        self.inner = store
        self.url = store.url
        try:
            self.mode = FaultMode(mode)
        except ValueError:
            choices = ", ".join(repr(m.value) for m in FaultMode)
            raise InvalidInputError(f"FaultyStore mode must be one of {choices}, got {mode!r}") from None
        self._fail_on: dict[str, frozenset[int]] = {}
        for method, calls in fail_on.items():
            if not _is_async_method(store, method):
                raise InvalidInputError(
                    f"FaultyStore cannot fail {method!r}: {type(store).__name__} has no async method of that name"
                )
            numbers = frozenset([calls] if isinstance(calls, int) else calls)
            if any(not isinstance(n, int) or n < 1 for n in numbers):
                raise InvalidInputError(f"FaultyStore call numbers for {method!r} must be ints >= 1, got {calls!r}")
            self._fail_on[method] = numbers
        self.calls: Counter[str] = Counter()
        self.injected: list[InjectedFault] = []

    async def _call(self, method: str, call: Callable[[], Awaitable[T]]) -> T:
        self.calls[method] += 1
        number = self.calls[method]
        if number not in self._fail_on.get(method, ()):
            return await call()
        if self.mode is FaultMode.LOST_ACK:
            await call()
        self.injected.append(InjectedFault(method, number, self.mode))
        raise StoreError(
            f"injected fault: {method} call {number} "
            + (
                "failed before reaching the store"
                if self.mode is FaultMode.BEFORE
                else "was committed, then its acknowledgement was lost"
            )
        )

    def __getattr__(self, name: str) -> Any:
        # Only reached for names not defined on this class: store methods added after
        # this wrapper was written, and a backend's own methods and attributes.
        if name == "inner":  # not yet set (copy, unpickling): avoid recursing
            raise AttributeError(name)
        attribute = getattr(self.inner, name)
        if not _is_async_method(self.inner, name):
            return attribute

        @functools.wraps(attribute)
        async def faulty(*args: Any, **kwargs: Any) -> Any:
            return await self._call(name, lambda: attribute(*args, **kwargs))

        return faulty

    # lifecycle ----------------------------------------------------------------------------
    async def open(self) -> None:
        """Open the inner store."""
        await self._call("open", self.inner.open)

    async def close(self) -> None:
        """Close the inner store."""
        await self._call("close", self.inner.close)

    async def schema_version(self) -> int:
        """The inner store's schema version."""
        return await self._call("schema_version", self.inner.schema_version)

    # runs ---------------------------------------------------------------------------------
    async def create_run(self, run: RunRecord, *, event: Event | None = None) -> RunRecord:
        """See :meth:`Store.create_run`."""
        return await self._call("create_run", lambda: self.inner.create_run(run, event=event))

    async def get_run(self, run_id: str) -> RunRecord | None:
        """See :meth:`Store.get_run`."""
        return await self._call("get_run", lambda: self.inner.get_run(run_id))

    async def list_runs(
        self,
        *,
        status: Sequence[RunStatus] | None = None,
        workflow: str | None = None,
        limit: int = 100,
        values: bool = True,
    ) -> list[RunRecord]:
        """See :meth:`Store.list_runs`."""
        return await self._call(
            "list_runs", lambda: self.inner.list_runs(status=status, workflow=workflow, limit=limit, values=values)
        )

    async def due_runs(self, *, now: float, limit: int = 100) -> list[RunRecord]:
        """See :meth:`Store.due_runs`."""
        return await self._call("due_runs", lambda: self.inner.due_runs(now=now, limit=limit))

    async def claim_run(
        self, run_id: str, *, owner: str, now: float, lease_seconds: float, force: bool = False
    ) -> RunRecord | None:
        """See :meth:`Store.claim_run`."""
        return await self._call(
            "claim_run",
            lambda: self.inner.claim_run(run_id, owner=owner, now=now, lease_seconds=lease_seconds, force=force),
        )

    async def renew_lease(self, run_id: str, *, owner: str, fence: int, now: float, lease_seconds: float) -> bool:
        """See :meth:`Store.renew_lease`."""
        return await self._call(
            "renew_lease",
            lambda: self.inner.renew_lease(run_id, owner=owner, fence=fence, now=now, lease_seconds=lease_seconds),
        )

    async def update_run(self, run_id: str, *, fence: int, now: float, update: RunUpdate, event: Event | None) -> None:
        """See :meth:`Store.update_run`."""
        await self._call(
            "update_run", lambda: self.inner.update_run(run_id, fence=fence, now=now, update=update, event=event)
        )

    async def cancel_run(self, run_id: str, *, now: float, reason: str) -> RunRecord:
        """See :meth:`Store.cancel_run`."""
        return await self._call("cancel_run", lambda: self.inner.cancel_run(run_id, now=now, reason=reason))

    async def wake_run(self, run_id: str, *, now: float) -> None:
        """See :meth:`Store.wake_run`."""
        await self._call("wake_run", lambda: self.inner.wake_run(run_id, now=now))

    # steps --------------------------------------------------------------------------------
    async def record_step(
        self,
        step: StepRecord,
        *,
        fence: int | None,
        now: float,
        event: Event | None = None,
        run_update: RunUpdate | None = None,
    ) -> StepRecord:
        """See :meth:`Store.record_step`."""
        return await self._call(
            "record_step",
            lambda: self.inner.record_step(step, fence=fence, now=now, event=event, run_update=run_update),
        )

    async def get_steps(self, run_id: str) -> list[StepRecord]:
        """See :meth:`Store.get_steps`."""
        return await self._call("get_steps", lambda: self.inner.get_steps(run_id))

    async def copy_steps(self, source_run_id: str, target_run_id: str, keys: Sequence[str]) -> int:
        """See :meth:`Store.copy_steps`."""
        return await self._call("copy_steps", lambda: self.inner.copy_steps(source_run_id, target_run_id, keys))

    async def save_attempts(self, state: AttemptState, *, fence: int, event: Event | None) -> None:
        """See :meth:`Store.save_attempts`."""
        await self._call("save_attempts", lambda: self.inner.save_attempts(state, fence=fence, event=event))

    async def get_attempts(self, run_id: str) -> dict[str, AttemptState]:
        """See :meth:`Store.get_attempts`."""
        return await self._call("get_attempts", lambda: self.inner.get_attempts(run_id))

    # events, cache ------------------------------------------------------------------------
    async def append_event(self, event: Event) -> None:
        """See :meth:`Store.append_event`."""
        await self._call("append_event", lambda: self.inner.append_event(event))

    async def list_events(self, run_id: str) -> list[Event]:
        """See :meth:`Store.list_events`."""
        return await self._call("list_events", lambda: self.inner.list_events(run_id))

    async def cache_get(self, key: str) -> CacheEntry | None:
        """See :meth:`Store.cache_get`."""
        return await self._call("cache_get", lambda: self.inner.cache_get(key))

    async def cache_put(self, key: str, value: Any, *, now: float) -> None:
        """See :meth:`Store.cache_put`."""
        await self._call("cache_put", lambda: self.inner.cache_put(key, value, now=now))

    # reviews ------------------------------------------------------------------------------
    async def create_review(self, review: ReviewRecord, *, event: Event | None = None) -> ReviewRecord:
        """See :meth:`Store.create_review`."""
        return await self._call("create_review", lambda: self.inner.create_review(review, event=event))

    async def get_review(self, review_id: str) -> ReviewRecord | None:
        """See :meth:`Store.get_review`."""
        return await self._call("get_review", lambda: self.inner.get_review(review_id))

    async def list_reviews(
        self,
        *,
        status: Sequence[ReviewStatus] | None = None,
        role: str | None = None,
        run_id: str | None = None,
        limit: int = 100,
    ) -> list[ReviewRecord]:
        """See :meth:`Store.list_reviews`."""
        return await self._call(
            "list_reviews", lambda: self.inner.list_reviews(status=status, role=role, run_id=run_id, limit=limit)
        )

    async def update_review(
        self,
        review: ReviewRecord,
        *,
        expected_version: int,
        now: float,
        events: Sequence[Event] = (),
        signal: StepRecord | None = None,
    ) -> bool:
        """See :meth:`Store.update_review`."""
        return await self._call(
            "update_review",
            lambda: self.inner.update_review(
                review, expected_version=expected_version, now=now, events=events, signal=signal
            ),
        )
