"""The conformance suite for :class:`~orchestrate.store.Store` backends.

Every backend runs the same tests: subclass :class:`StoreConformance` in a test module
and provide a ``store`` fixture that yields an *opened, empty* store::

    import pytest
    from orchestrate.testing.store_suite import StoreConformance

    class TestMyStore(StoreConformance):
        @pytest.fixture
        async def store(self, tmp_path):
            store = MyStore(f"my://{tmp_path}")
            await store.open()
            yield store
            await store.close()

The tests are async and need pytest-asyncio (``asyncio_mode = "auto"``, or mark the
subclass with ``pytest.mark.asyncio``). For pytest's detailed assertion messages, call
``pytest.register_assert_rewrite("orchestrate.testing.store_suite")`` in a
``conftest.py`` before the suite is imported.

The suite checks behaviour, not implementation: runs, leases and fencing, insert-if-absent
step records, retry progress, events, the cache, JSON round-trips, concurrent claims,
review items (insert-if-absent, queue order, role filters, compare-and-set decisions that
deliver the run's signal in the same transaction), and payload limits: a backend has a
``payload_limits`` attribute (:class:`~orchestrate.store.PayloadLimits`), which the suite
sets to small limits, and refuses values whose JSON is over them before writing anything.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from typing import Any, cast

import pytest

from orchestrate.errors import (
    InvalidInputError,
    LeaseLostError,
    PayloadTooLargeError,
    RunNotFoundError,
    RunStateError,
    SerializationError,
)
from orchestrate.store._limits import PAYLOAD_LARGE_EVENT, PayloadLimits
from orchestrate.store.base import (
    REPLAYED_EVENT,
    SCHEMA_VERSION,
    AttemptState,
    Event,
    ReviewRecord,
    ReviewStatus,
    RunRecord,
    RunUpdate,
    StepRecord,
    Store,
)
from orchestrate.types import RunStatus, StepStatus

T0 = 1_700_000_000.0
"""The suite's "now"; every timestamp is an offset from it."""

LEASE = 30.0

ODD_VALUE: dict[str, Any] = {
    "text": 'naïve café — 東京 🚀 "quoted" \\ back\nslash\ttab \x00 nul',
    "ints": [0, -1, 2**40, 7],
    "floats": [0.1, -2.5, 3.141592653589793, 1e-300, 1e300],
    "flags": [True, False, None],
    "nested": {"a": {"b": {"c": [{"d": None}, [], {}]}}, "ключ": "значение"},
    "empty": "",
}
"""A JSON value with the awkward parts: unicode, escapes, NUL, floats, nulls, nesting."""


class _Unserialisable:
    def __repr__(self) -> str:
        return "<unserialisable>"


def make_run(run_id: str, *, workflow: str = "wf", created_at: float = T0, **fields: Any) -> RunRecord:
    """A run record with sensible defaults for the suite."""
    return RunRecord(
        run_id=run_id, workflow=workflow, version="1", created_at=created_at, updated_at=created_at, **fields
    )


def make_step(run_id: str, step_key: str, output: Any = None, **fields: Any) -> StepRecord:
    """A succeeded step record for the suite."""
    fields.setdefault("status", StepStatus.SUCCEEDED)
    return StepRecord(
        run_id=run_id,
        step_key=step_key,
        name=step_key.split("[")[0],
        output=output,
        started_at=T0,
        finished_at=T0 + 1,
        **fields,
    )


def make_review(review_id: str, run_id: str = "r1", **fields: Any) -> ReviewRecord:
    """A pending review item for the suite."""
    fields.setdefault("created_at", T0)
    fields.setdefault("updated_at", fields["created_at"])
    return ReviewRecord(
        review_id=review_id,
        run_id=run_id,
        workflow="wf",
        step_key="summary",
        gate_key=fields.pop("gate_key", f"review:{review_id}"),
        **fields,
    )


async def claimed(store: Store, run_id: str, *, owner: str = "w1", now: float = T0) -> RunRecord:
    """Create a pending run and claim it; return the claimed record."""
    await store.create_run(make_run(run_id))
    run = await store.claim_run(run_id, owner=owner, now=now, lease_seconds=LEASE)
    assert run is not None, f"a fresh pending run {run_id!r} could not be claimed"
    return run


def _ids(runs: list[RunRecord]) -> list[str]:
    return [r.run_id for r in runs]


def _limit(store: Store, max_bytes: int, warn_bytes: int) -> None:
    """Set small payload limits on ``store`` (every backend has ``payload_limits``)."""
    cast(Any, store).payload_limits = PayloadLimits(max_bytes, warn_bytes)


def _json_size(value: Any) -> int:
    """The length of ``value``'s JSON as the standard library writes it (compact, ASCII)."""
    return len(json.dumps(value, separators=(",", ":")))


def _nested(depth: int) -> Any:
    value: Any = "bottom"
    for _ in range(depth):
        value = [value]
    return value


class StoreConformance:
    """Tests every ``Store`` backend must pass. Subclasses provide the ``store`` fixture."""

    @pytest.fixture
    def store(self) -> Store:
        """Override with a fixture yielding an opened, empty store of your backend."""
        raise NotImplementedError(f"{type(self).__name__} must define a `store` fixture yielding an opened store")

    # schema -------------------------------------------------------------------------------
    async def test_schema_version_is_current(self, store: Store) -> None:
        assert await store.schema_version() == SCHEMA_VERSION

    async def test_open_twice_is_harmless(self, store: Store) -> None:
        await store.create_run(make_run("r1"))
        await store.open()
        assert (await store.get_run("r1")) is not None

    # create / get / list ------------------------------------------------------------------
    async def test_create_run_round_trips_every_field(self, store: Store) -> None:
        run = make_run(
            "r1",
            input={"q": "hello"},
            deadline_at=T0 + 600,
            queue="priority",
            options={"replay": {"from": "a"}},
            parent_run_id="r0",
            wake_at=T0 + 5,
            wait_reason="timer",
        )
        created = await store.create_run(run)
        assert created == run
        assert await store.get_run("r1") == run

    async def test_create_run_is_idempotent_and_returns_the_first(self, store: Store) -> None:
        first = make_run("r1", input={"n": 1})
        await store.create_run(first, event=Event("r1", "run_created", T0))
        again = await store.create_run(
            make_run("r1", workflow="other", input={"n": 2}), event=Event("r1", "run_created", T0 + 1)
        )
        assert again == first
        assert await store.get_run("r1") == first
        events = await store.list_events("r1")
        assert [(e.kind, e.at) for e in events] == [("run_created", T0)]

    async def test_get_run_unknown_is_none(self, store: Store) -> None:
        assert await store.get_run("nope") is None

    async def test_list_runs_newest_first_with_limit(self, store: Store) -> None:
        for i in range(5):
            await store.create_run(make_run(f"r{i}", created_at=T0 + i))
        assert _ids(await store.list_runs()) == ["r4", "r3", "r2", "r1", "r0"]
        assert _ids(await store.list_runs(limit=2)) == ["r4", "r3"]

    async def test_list_runs_filters_by_status_and_workflow(self, store: Store) -> None:
        await store.create_run(make_run("a-pending", workflow="a", created_at=T0))
        await store.create_run(make_run("a-done", workflow="a", created_at=T0 + 1, status=RunStatus.SUCCEEDED))
        await store.create_run(make_run("b-pending", workflow="b", created_at=T0 + 2))
        await store.create_run(make_run("b-dead", workflow="b", created_at=T0 + 3, status=RunStatus.DEAD))
        assert _ids(await store.list_runs(workflow="a")) == ["a-done", "a-pending"]
        assert _ids(await store.list_runs(status=[RunStatus.PENDING])) == ["b-pending", "a-pending"]
        both = await store.list_runs(status=[RunStatus.SUCCEEDED, RunStatus.DEAD])
        assert _ids(both) == ["b-dead", "a-done"]
        assert _ids(await store.list_runs(status=[RunStatus.PENDING], workflow="b")) == ["b-pending"]
        assert await store.list_runs(workflow="missing") == []

    async def test_listings_without_values_read_no_input_or_output(self, store: Store) -> None:
        run = await claimed(store, "r1")
        await store.update_run(
            "r1",
            fence=run.fence,
            now=T0 + 1,
            update=RunUpdate(RunStatus.DEAD, output={"big": "x" * 1000}, error={"name": "E", "message": "m"}),
            event=None,
        )
        full = await store.get_run("r1")
        assert full is not None and full.output == {"big": "x" * 1000}
        (listed,) = await store.list_runs(values=False)
        (dead,) = await store.list_dead_letters(values=False)
        for summary in (listed, dead):
            assert (summary.input, summary.output) == (None, None)
            assert dataclasses.replace(summary, input=full.input, output=full.output) == full
        assert await store.list_runs(values=True) == [full]

    # pruning ------------------------------------------------------------------------------
    async def _ended(self, store: Store, run_id: str, status: RunStatus, at: float) -> None:
        """A run that recorded a step, a history, retry progress and a review item, then ended at ``at``."""
        run = await claimed(store, run_id, now=at - 5)
        await store.save_attempts(AttemptState(run_id, "b", 1, at, at - 4), fence=run.fence, event=None)
        await store.record_step(make_step(run_id, "a", 1), fence=run.fence, now=at - 3)
        await store.create_review(make_review(f"rv-{run_id}", run_id), event=Event(run_id, "review_created", at - 2))
        await store.update_run(
            run_id, fence=run.fence, now=at, update=RunUpdate(status), event=Event(run_id, f"run_{status.value}", at)
        )

    async def test_prune_deletes_ended_runs_with_everything_they_kept(self, store: Store) -> None:
        for run_id, status, at in [
            ("old-ok", RunStatus.SUCCEEDED, T0),
            ("old-failed", RunStatus.FAILED, T0 + 1),
            ("old-dead", RunStatus.DEAD, T0 + 2),
            ("new-ok", RunStatus.SUCCEEDED, T0 + 1000),
        ]:
            await self._ended(store, run_id, status, at)
        await claimed(store, "still-going", now=T0 - 100)  # long quiet, not ended: never pruned
        await store.create_run(make_run("pending", created_at=T0 - 100))
        assert await store.prune_runs(before=T0 + 500, dry_run=True) == 2
        assert await store.prune_runs(before=T0 + 500) == 2
        for gone in ("old-ok", "old-failed"):
            assert await store.get_run(gone) is None
            assert await store.get_steps(gone) == []
            assert await store.list_events(gone) == []
            assert await store.get_attempts(gone) == {}
            assert await store.get_review(f"rv-{gone}") is None
        kept = {r.run_id for r in await store.list_runs()}
        assert kept == {"old-dead", "new-ok", "still-going", "pending"}
        assert [s.step_key for s in await store.get_steps("new-ok")] == ["a"]
        assert await store.get_review("rv-old-dead") is not None
        assert await store.prune_runs(before=T0 + 500) == 0

    async def test_prune_goes_a_batch_at_a_time_and_takes_dead_runs_when_named(self, store: Store) -> None:
        for i in range(3):
            await self._ended(store, f"ok{i}", RunStatus.SUCCEEDED, T0 + 10 - i)
        await self._ended(store, "dead", RunStatus.DEAD, T0)
        assert await store.prune_runs(before=T0 + 100, limit=2) == 2
        left = [r.run_id for r in await store.list_runs()]
        assert len(left) == 2 and "dead" in left
        assert await store.prune_runs(before=T0 + 100, limit=2) == 1
        assert await store.prune_runs(before=T0 + 100, status=[RunStatus.DEAD], dry_run=True) == 1
        assert await store.prune_runs(before=T0 + 100, status=[RunStatus.DEAD]) == 1
        assert await store.list_runs() == []

    async def test_prune_refuses_statuses_that_have_not_ended(self, store: Store) -> None:
        await claimed(store, "r1", now=T0 - 1000)
        for status in (RunStatus.RUNNING, RunStatus.PENDING, RunStatus.WAITING):
            with pytest.raises(InvalidInputError, match="only ended runs"):
                await store.prune_runs(before=T0 + 1000, status=[RunStatus.SUCCEEDED, status])
        assert await store.get_run("r1") is not None

    async def test_find_run_ids_by_prefix(self, store: Store) -> None:
        for run_id in ("3f2a-1", "3f2b-2", "3f9c-3", "4a00-4", "AB-5", "ab-6"):
            await store.create_run(make_run(run_id))
        assert await store.find_run_ids("3f2a-1") == ["3f2a-1"]  # a whole id is its own prefix
        assert await store.find_run_ids("3f2") == ["3f2a-1", "3f2b-2"]
        assert await store.find_run_ids("3f") == ["3f2a-1", "3f2b-2", "3f9c-3"]
        assert await store.find_run_ids("3f", limit=2) == ["3f2a-1", "3f2b-2"]
        assert await store.find_run_ids("ab") == ["ab-6"]  # case counts
        assert await store.find_run_ids("AB") == ["AB-5"]
        assert await store.find_run_ids("f2") == []  # a prefix, not a substring
        assert await store.find_run_ids("3f2a-1x") == []

    async def test_find_run_ids_takes_wildcards_literally(self, store: Store) -> None:
        for run_id in ("a_1", "ab1", "a%2", "a!3", "a*4", "a?5", "a[6]", "a\\7"):
            await store.create_run(make_run(run_id))
        assert await store.find_run_ids("a_") == ["a_1"]
        assert await store.find_run_ids("a%") == ["a%2"]
        assert await store.find_run_ids("a!") == ["a!3"]
        assert await store.find_run_ids("a*") == ["a*4"]
        assert await store.find_run_ids("a?") == ["a?5"]
        assert await store.find_run_ids("a[") == ["a[6]"]
        assert await store.find_run_ids("a\\") == ["a\\7"]
        assert await store.find_run_ids("%") == [] and await store.find_run_ids("_") == []

    async def test_dead_letters_leave_out_replayed_runs(self, store: Store) -> None:
        await store.create_run(make_run("dead-a", workflow="a", created_at=T0, status=RunStatus.DEAD))
        await store.create_run(make_run("dead-b", workflow="b", created_at=T0 + 1, status=RunStatus.DEAD))
        await store.create_run(make_run("dead-replayed", workflow="a", created_at=T0 + 2, status=RunStatus.DEAD))
        await store.create_run(make_run("failed", workflow="a", created_at=T0 + 3, status=RunStatus.FAILED))
        await store.create_run(make_run("dead-c", workflow="a", created_at=T0 + 4, status=RunStatus.DEAD))
        await store.append_event(Event("dead-a", "run_dead", T0 + 1))
        await store.append_event(Event("dead-replayed", REPLAYED_EVENT, T0 + 5, data={"replay": "new"}))
        assert _ids(await store.list_dead_letters()) == ["dead-c", "dead-b", "dead-a"]
        assert _ids(await store.list_dead_letters(workflow="a")) == ["dead-c", "dead-a"]
        assert _ids(await store.list_dead_letters(limit=1)) == ["dead-c"]
        assert await store.list_dead_letters(workflow="missing") == []
        assert (await store.get_run("dead-replayed")) is not None  # it stays a dead run

    # due runs -----------------------------------------------------------------------------
    async def test_due_runs_selects_what_a_worker_may_claim(self, store: Store) -> None:
        await store.create_run(make_run("pending"))
        await store.create_run(make_run("scheduled-later", wake_at=T0 + 100))
        await store.create_run(make_run("waiting-due", status=RunStatus.WAITING, wake_at=T0 - 1))
        await store.create_run(make_run("waiting-later", status=RunStatus.WAITING, wake_at=T0 + 100))
        await store.create_run(make_run("waiting-signal", status=RunStatus.WAITING, wait_reason="signal:x"))
        for status in (RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.CANCELLED, RunStatus.DEAD):
            await store.create_run(make_run(f"terminal-{status.value}", status=status))
        await claimed(store, "lease-expired", now=T0 - LEASE - 1)
        await claimed(store, "lease-held", now=T0)
        due = set(_ids(await store.due_runs(now=T0)))
        assert due == {"pending", "waiting-due", "lease-expired"}

    async def test_due_runs_include_timers_once_due(self, store: Store) -> None:
        await store.create_run(make_run("scheduled", wake_at=T0 + 100))
        await store.create_run(make_run("waiting", status=RunStatus.WAITING, wake_at=T0 + 100))
        await claimed(store, "held", now=T0 + 100 - LEASE)
        assert await store.due_runs(now=T0 + 99) == []
        assert set(_ids(await store.due_runs(now=T0 + 100))) == {"scheduled", "waiting", "held"}

    async def test_due_runs_oldest_first_with_limit(self, store: Store) -> None:
        await store.create_run(make_run("late", created_at=T0 - 10))
        await store.create_run(make_run("early", created_at=T0 - 30))
        await store.create_run(make_run("middle", status=RunStatus.WAITING, wake_at=T0 - 20, created_at=T0 - 40))
        assert _ids(await store.due_runs(now=T0)) == ["early", "middle", "late"]
        assert _ids(await store.due_runs(now=T0, limit=2)) == ["early", "middle"]

    # claims and leases --------------------------------------------------------------------
    async def test_claim_takes_the_lease_and_bumps_the_fence(self, store: Store) -> None:
        created = await store.create_run(make_run("r1"))
        run = await store.claim_run("r1", owner="w1", now=T0, lease_seconds=LEASE)
        assert run is not None
        assert run.status is RunStatus.RUNNING
        assert run.owner == "w1"
        assert run.lease_expires_at == T0 + LEASE
        assert run.fence == created.fence + 1
        assert await store.get_run("r1") == run

    async def test_second_claim_gets_none_while_the_lease_holds(self, store: Store) -> None:
        first = await claimed(store, "r1", owner="w1")
        assert await store.claim_run("r1", owner="w2", now=T0 + LEASE - 1, lease_seconds=LEASE) is None
        assert await store.get_run("r1") == first

    async def test_expired_lease_can_be_claimed_again(self, store: Store) -> None:
        first = await claimed(store, "r1", owner="w1")
        second = await store.claim_run("r1", owner="w2", now=T0 + LEASE, lease_seconds=LEASE)
        assert second is not None
        assert second.owner == "w2"
        assert second.fence == first.fence + 1

    async def test_force_claims_a_running_run(self, store: Store) -> None:
        first = await claimed(store, "r1", owner="w1")
        taken = await store.claim_run("r1", owner="w2", now=T0 + 1, lease_seconds=LEASE, force=True)
        assert taken is not None
        assert (taken.owner, taken.fence) == ("w2", first.fence + 1)

    async def test_claim_refuses_unknown_terminal_and_not_due_runs(self, store: Store) -> None:
        await store.create_run(make_run("done", status=RunStatus.SUCCEEDED))
        await store.create_run(make_run("later", status=RunStatus.WAITING, wake_at=T0 + 10))
        await store.create_run(make_run("signal", status=RunStatus.WAITING))
        for run_id in ("unknown", "done", "later", "signal"):
            for force in (False, True):
                got = await store.claim_run(run_id, owner="w1", now=T0, lease_seconds=LEASE, force=force)
                assert got is None, f"claim_run({run_id!r}, force={force}) should be refused"
        assert (await store.get_run("done")) == make_run("done", status=RunStatus.SUCCEEDED)

    async def test_claim_of_a_due_waiting_run(self, store: Store) -> None:
        await store.create_run(make_run("r1", status=RunStatus.WAITING, wake_at=T0 + 10, wait_reason="timer"))
        run = await store.claim_run("r1", owner="w1", now=T0 + 10, lease_seconds=LEASE)
        assert run is not None
        assert run.status is RunStatus.RUNNING

    async def test_renew_lease_extends_while_held(self, store: Store) -> None:
        run = await claimed(store, "r1")
        assert await store.renew_lease("r1", owner="w1", fence=run.fence, now=T0 + 20, lease_seconds=LEASE)
        renewed = await store.get_run("r1")
        assert renewed is not None
        assert renewed.lease_expires_at == T0 + 20 + LEASE
        # The renewed lease keeps others out past the original expiry.
        assert await store.claim_run("r1", owner="w2", now=T0 + LEASE + 1, lease_seconds=LEASE) is None

    async def test_renew_lease_fails_after_another_claim(self, store: Store) -> None:
        old = await claimed(store, "r1", owner="w1")
        new = await store.claim_run("r1", owner="w2", now=T0 + LEASE, lease_seconds=LEASE)
        assert new is not None
        renewed = await store.renew_lease("r1", owner="w1", fence=old.fence, now=T0 + LEASE + 1, lease_seconds=LEASE)
        assert renewed is False
        assert await store.get_run("r1") == new

    async def test_renew_lease_fails_after_cancel_and_for_unknown_runs(self, store: Store) -> None:
        run = await claimed(store, "r1")
        await store.cancel_run("r1", now=T0 + 1, reason="stop")
        assert await store.renew_lease("r1", owner="w1", fence=run.fence, now=T0 + 2, lease_seconds=LEASE) is False
        assert await store.renew_lease("nope", owner="w1", fence=1, now=T0, lease_seconds=LEASE) is False

    # crashed attempts -------------------------------------------------------------------
    async def test_a_claim_from_a_holder_that_died_counts_a_crashed_attempt(self, store: Store) -> None:
        first = await claimed(store, "r1", owner="w1")
        assert (first.crashes, first.crashed_owner) == (0, None)
        second = await store.claim_run("r1", owner="w2", now=T0 + LEASE, lease_seconds=LEASE)  # w1's lease ran out
        assert second is not None and (second.crashes, second.crashed_owner) == (1, "w1")
        third = await store.claim_run("r1", owner="w3", now=T0 + LEASE + 1, lease_seconds=LEASE, force=True)
        assert third is not None and (third.crashes, third.crashed_owner) == (2, "w2")
        assert await store.get_run("r1") == third

    async def test_a_recorded_step_starts_the_crash_count_again(self, store: Store) -> None:
        await claimed(store, "r1", owner="w1")
        second = await store.claim_run("r1", owner="w2", now=T0 + LEASE, lease_seconds=LEASE)
        assert second is not None and second.crashes == 1
        await store.record_step(make_step("r1", "a", 1), fence=second.fence, now=T0 + LEASE + 1)
        # w2 got further before it died: its attempt is the first crash of the next step.
        third = await store.claim_run("r1", owner="w3", now=T0 + 3 * LEASE, lease_seconds=LEASE)
        assert third is not None and (third.crashes, third.crashed_owner) == (1, "w2")
        fourth = await store.claim_run("r1", owner="w4", now=T0 + 5 * LEASE, lease_seconds=LEASE)
        assert fourth is not None and (fourth.crashes, fourth.crashed_owner) == (2, "w3")

    async def test_hand_offs_without_a_crash_count_none(self, store: Store) -> None:
        run = await claimed(store, "r1", owner="w1")
        park = RunUpdate(RunStatus.WAITING, wake_at=T0 + 5, wait_reason="timer")
        await store.update_run("r1", fence=run.fence, now=T0 + 1, update=park, event=None)
        woken = await store.claim_run("r1", owner="w2", now=T0 + 5, lease_seconds=LEASE)
        assert woken is not None and (woken.crashes, woken.crashed_owner) == (0, None)
        crashed = await store.claim_run("r1", owner="w3", now=T0 + 5 + LEASE, lease_seconds=LEASE)
        assert crashed is not None and crashed.crashes == 1
        # Handed back (a drained worker) before any step: the count stands.
        release = RunUpdate(RunStatus.PENDING)
        await store.update_run("r1", fence=crashed.fence, now=T0 + 40, update=release, event=None)
        again = await store.claim_run("r1", owner="w4", now=T0 + 41, lease_seconds=LEASE)
        assert again is not None and (again.crashes, again.crashed_owner) == (1, "w2")
        # A step recorded, then a clean park: the next claim starts from zero.
        await store.record_step(make_step("r1", "a", 1), fence=again.fence, now=T0 + 42)
        await store.update_run("r1", fence=again.fence, now=T0 + 43, update=park, event=None)
        fresh = await store.claim_run("r1", owner="w5", now=T0 + 44, lease_seconds=LEASE)
        assert fresh is not None and fresh.crashes == 0

    async def test_fifty_concurrent_claims_have_exactly_one_winner(self, store: Store) -> None:
        created = await store.create_run(make_run("r1"))
        results = await asyncio.gather(
            *(store.claim_run("r1", owner=f"w{i}", now=T0, lease_seconds=LEASE) for i in range(50))
        )
        winners = [r for r in results if r is not None]
        assert len(winners) == 1
        stored = await store.get_run("r1")
        assert stored is not None
        assert (stored.owner, stored.fence) == (winners[0].owner, created.fence + 1)

    # update_run ---------------------------------------------------------------------------
    async def test_update_run_applies_a_fenced_transition(self, store: Store) -> None:
        run = await claimed(store, "r1")
        update = RunUpdate(RunStatus.WAITING, wake_at=T0 + 60, wait_reason="timer")
        await store.update_run(
            "r1", fence=run.fence, now=T0 + 1, update=update, event=Event("r1", "run_waiting", T0 + 1)
        )
        stored = await store.get_run("r1")
        assert stored is not None
        assert stored.status is RunStatus.WAITING
        assert (stored.wake_at, stored.wait_reason) == (T0 + 60, "timer")
        assert (stored.owner, stored.lease_expires_at) == (None, None)
        assert stored.updated_at == T0 + 1
        assert [e.kind for e in await store.list_events("r1")] == ["run_waiting"]

    async def test_update_run_sets_output_and_error(self, store: Store) -> None:
        run = await claimed(store, "r1")
        update = RunUpdate(RunStatus.SUCCEEDED, output={"answer": 42})
        await store.update_run("r1", fence=run.fence, now=T0 + 1, update=update, event=None)
        stored = await store.get_run("r1")
        assert stored is not None
        assert (stored.status, stored.output) == (RunStatus.SUCCEEDED, {"answer": 42})

        run2 = await claimed(store, "r2")
        error = {"type": "builtins.ValueError", "name": "ValueError", "message": "bad", "step": "a"}
        await store.update_run(
            "r2", fence=run2.fence, now=T0 + 1, update=RunUpdate(RunStatus.DEAD, error=error), event=None
        )
        stored2 = await store.get_run("r2")
        assert stored2 is not None
        assert (stored2.status, stored2.error, stored2.output) == (RunStatus.DEAD, error, None)

    async def test_update_run_without_release_keeps_the_lease(self, store: Store) -> None:
        run = await claimed(store, "r1")
        update = RunUpdate(RunStatus.RUNNING, wait_reason="note", release=False)
        await store.update_run("r1", fence=run.fence, now=T0 + 1, update=update, event=None)
        stored = await store.get_run("r1")
        assert stored is not None
        assert (stored.owner, stored.lease_expires_at, stored.fence) == ("w1", T0 + LEASE, run.fence)

    async def test_update_run_with_a_stale_fence_changes_nothing(self, store: Store) -> None:
        old = await claimed(store, "r1", owner="w1")
        new = await store.claim_run("r1", owner="w2", now=T0 + LEASE, lease_seconds=LEASE)
        assert new is not None
        with pytest.raises(LeaseLostError):
            await store.update_run(
                "r1",
                fence=old.fence,
                now=T0 + LEASE + 1,
                update=RunUpdate(RunStatus.SUCCEEDED, output="late"),
                event=Event("r1", "run_succeeded", T0),
            )
        assert await store.get_run("r1") == new
        assert await store.list_events("r1") == []

    async def test_update_run_after_release_is_refused(self, store: Store) -> None:
        run = await claimed(store, "r1")
        park = RunUpdate(RunStatus.WAITING, wait_reason="signal:x")
        await store.update_run("r1", fence=run.fence, now=T0 + 1, update=park, event=None)
        parked = await store.get_run("r1")
        with pytest.raises(LeaseLostError):
            await store.update_run("r1", fence=run.fence, now=T0 + 2, update=RunUpdate(RunStatus.SUCCEEDED), event=None)
        assert await store.get_run("r1") == parked

    async def test_update_run_of_an_unknown_run(self, store: Store) -> None:
        with pytest.raises(RunNotFoundError):
            await store.update_run("nope", fence=1, now=T0, update=RunUpdate(RunStatus.SUCCEEDED), event=None)

    # cancel / wake ------------------------------------------------------------------------
    async def test_cancel_a_pending_run(self, store: Store) -> None:
        created = await store.create_run(make_run("r1"))
        cancelled = await store.cancel_run("r1", now=T0 + 5, reason="not needed")
        assert cancelled.status is RunStatus.CANCELLED
        assert cancelled.fence == created.fence + 1
        assert cancelled.error is not None and cancelled.error["message"] == "not needed"
        assert cancelled.updated_at == T0 + 5
        assert await store.get_run("r1") == cancelled
        events = await store.list_events("r1")
        assert [(e.kind, e.data.get("reason")) for e in events] == [("run_cancelled", "not needed")]
        assert await store.due_runs(now=T0 + 100) == []

    async def test_cancel_stops_the_running_worker(self, store: Store) -> None:
        run = await claimed(store, "r1")
        cancelled = await store.cancel_run("r1", now=T0 + 1, reason="stop")
        assert cancelled.fence == run.fence + 1
        assert (cancelled.owner, cancelled.lease_expires_at) == (None, None)
        with pytest.raises(LeaseLostError):
            await store.update_run("r1", fence=run.fence, now=T0 + 2, update=RunUpdate(RunStatus.SUCCEEDED), event=None)
        with pytest.raises(LeaseLostError):
            await store.record_step(make_step("r1", "a", 1), fence=run.fence, now=T0 + 2)
        assert await store.get_steps("r1") == []
        assert await store.claim_run("r1", owner="w2", now=T0 + 100, lease_seconds=LEASE, force=True) is None

    async def test_cancel_a_waiting_run_removes_it_from_due_runs(self, store: Store) -> None:
        await store.create_run(make_run("r1", status=RunStatus.WAITING, wake_at=T0 + 10, wait_reason="timer"))
        await store.cancel_run("r1", now=T0, reason="stop")
        assert await store.due_runs(now=T0 + 100) == []
        stored = await store.get_run("r1")
        assert stored is not None and stored.wake_at is None

    async def test_cancel_terminal_runs_raises(self, store: Store) -> None:
        for status in (RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.CANCELLED, RunStatus.DEAD):
            run = await store.create_run(make_run(status.value, status=status))
            with pytest.raises(RunStateError, match=status.value):
                await store.cancel_run(status.value, now=T0, reason="too late")
            assert await store.get_run(status.value) == run
            assert await store.list_events(status.value) == []

    async def test_cancel_twice_raises(self, store: Store) -> None:
        await store.create_run(make_run("r1"))
        first = await store.cancel_run("r1", now=T0, reason="once")
        with pytest.raises(RunStateError):
            await store.cancel_run("r1", now=T0 + 1, reason="twice")
        assert await store.get_run("r1") == first

    async def test_cancel_unknown_raises(self, store: Store) -> None:
        with pytest.raises(RunNotFoundError):
            await store.cancel_run("nope", now=T0, reason="x")

    async def test_wake_run_makes_a_waiting_run_due(self, store: Store) -> None:
        await store.create_run(make_run("signal", status=RunStatus.WAITING, wait_reason="signal:review:1"))
        await store.create_run(make_run("timer", status=RunStatus.WAITING, wake_at=T0 + 3600, wait_reason="timer"))
        assert await store.due_runs(now=T0) == []
        await store.wake_run("signal", now=T0)
        await store.wake_run("timer", now=T0)
        assert set(_ids(await store.due_runs(now=T0))) == {"signal", "timer"}
        assert await store.claim_run("signal", owner="w1", now=T0, lease_seconds=LEASE) is not None

    async def test_wake_run_leaves_other_statuses_alone(self, store: Store) -> None:
        scheduled = await store.create_run(make_run("scheduled", wake_at=T0 + 100))
        run = await claimed(store, "running")
        done = await store.create_run(make_run("done", status=RunStatus.SUCCEEDED))
        for run_id in ("scheduled", "running", "done"):
            await store.wake_run(run_id, now=T0)
        assert await store.get_run("scheduled") == scheduled
        assert await store.get_run("running") == run
        assert await store.get_run("done") == done

    # record_step --------------------------------------------------------------------------
    async def test_record_step_round_trips_every_field(self, store: Store) -> None:
        run = await claimed(store, "r1")
        step = StepRecord(
            run_id="r1",
            step_key="docs[3]",
            name="docs",
            status=StepStatus.SKIPPED,
            output=None,
            error={"type": "builtins.TimeoutError", "name": "TimeoutError", "message": "slow"},
            attempts=3,
            started_at=T0 + 1.25,
            finished_at=T0 + 2.5,
            input_hash="abc123",
            fallback="default",
            meta={"latency_ms": 12.5, "cached": False, "attempt_log": [1, 2]},
        )
        returned = await store.record_step(step, fence=run.fence, now=T0 + 3)
        assert returned == step
        assert await store.get_steps("r1") == [step]

    async def test_record_step_first_write_wins(self, store: Store) -> None:
        run = await claimed(store, "r1")
        first = make_step("r1", "a", {"v": 1})
        assert await store.record_step(first, fence=run.fence, now=T0, event=Event("r1", "step_ok", T0, "a")) == first
        second = make_step("r1", "a", {"v": 2}, attempts=5)
        assert (
            await store.record_step(second, fence=run.fence, now=T0 + 1, event=Event("r1", "step_ok", T0 + 1, "a"))
            == first
        )
        assert await store.get_steps("r1") == [first]
        assert [(e.kind, e.at, e.step_key) for e in await store.list_events("r1")] == [("step_ok", T0, "a")]

    async def test_record_step_with_a_stale_fence_writes_nothing(self, store: Store) -> None:
        old = await claimed(store, "r1", owner="w1")
        new = await store.claim_run("r1", owner="w2", now=T0 + LEASE, lease_seconds=LEASE)
        assert new is not None
        with pytest.raises(LeaseLostError):
            await store.record_step(
                make_step("r1", "a", "late"),
                fence=old.fence,
                now=T0 + LEASE + 1,
                event=Event("r1", "step_ok", T0, "a"),
                run_update=RunUpdate(RunStatus.SUCCEEDED, output="late"),
            )
        assert await store.get_steps("r1") == []
        assert await store.list_events("r1") == []
        assert await store.get_run("r1") == new
        # The new holder records the step normally.
        step = make_step("r1", "a", "fresh")
        assert await store.record_step(step, fence=new.fence, now=T0 + LEASE + 2) == step

    async def test_record_step_applies_run_update_when_newly_inserted(self, store: Store) -> None:
        run = await claimed(store, "r1")
        await store.record_step(
            make_step("r1", "last", {"ok": True}),
            fence=run.fence,
            now=T0 + 5,
            event=Event("r1", "step_succeeded", T0 + 5, "last"),
            run_update=RunUpdate(RunStatus.SUCCEEDED, output={"ok": True}),
        )
        stored = await store.get_run("r1")
        assert stored is not None
        assert (stored.status, stored.output, stored.owner, stored.updated_at) == (
            RunStatus.SUCCEEDED,
            {"ok": True},
            None,
            T0 + 5,
        )
        assert [e.kind for e in await store.list_events("r1")] == ["step_succeeded"]

    async def test_record_step_skips_run_update_when_already_recorded(self, store: Store) -> None:
        run = await claimed(store, "r1")
        first = make_step("r1", "a", 1)
        await store.record_step(first, fence=run.fence, now=T0 + 1)
        returned = await store.record_step(
            make_step("r1", "a", 2),
            fence=run.fence,
            now=T0 + 2,
            run_update=RunUpdate(RunStatus.SUCCEEDED, output=2),
        )
        assert returned == first
        assert await store.get_run("r1") == run

    async def test_record_step_without_fence(self, store: Store) -> None:
        await store.create_run(make_run("r1"))
        step = make_step("r1", "a", "x")
        assert await store.record_step(step, fence=None, now=T0) == step
        assert await store.get_steps("r1") == [step]

    async def test_record_step_of_an_unknown_run_with_a_fence(self, store: Store) -> None:
        with pytest.raises(RunNotFoundError):
            await store.record_step(make_step("nope", "a"), fence=1, now=T0)

    async def test_concurrent_writes_of_one_step_record_once(self, store: Store) -> None:
        run = await claimed(store, "r1")
        results = await asyncio.gather(
            *(store.record_step(make_step("r1", "a", i), fence=run.fence, now=T0) for i in range(20))
        )
        steps = await store.get_steps("r1")
        assert len(steps) == 1
        assert all(r == steps[0] for r in results)

    async def test_get_steps_in_recording_order(self, store: Store) -> None:
        run = await claimed(store, "r1")
        other = await claimed(store, "r2")
        for key in ("b", "a", "d[1]", "c", "d[0]"):
            await store.record_step(make_step("r1", key, key), fence=run.fence, now=T0)
            await store.record_step(make_step("r2", f"x{key}", key), fence=other.fence, now=T0)
        assert [s.step_key for s in await store.get_steps("r1")] == ["b", "a", "d[1]", "c", "d[0]"]
        assert len(await store.get_steps("r2")) == 5
        assert await store.get_steps("nope") == []

    async def test_copy_steps_for_a_replay(self, store: Store) -> None:
        run = await claimed(store, "src")
        for key in ("a", "b", "c"):
            await store.record_step(make_step("src", key, {"k": key}), fence=run.fence, now=T0)
        await store.create_run(make_run("dst", parent_run_id="src"))
        assert await store.copy_steps("src", "dst", ["a", "b", "missing"]) == 2
        copied = await store.get_steps("dst")
        assert [(s.run_id, s.step_key, s.output) for s in copied] == [
            ("dst", "a", {"k": "a"}),
            ("dst", "b", {"k": "b"}),
        ]
        # Copying again adds nothing and keeps the source intact.
        assert await store.copy_steps("src", "dst", ["a", "b"]) == 0
        assert [s.step_key for s in await store.get_steps("src")] == ["a", "b", "c"]

    # attempts -----------------------------------------------------------------------------
    async def test_save_and_get_attempts(self, store: Store) -> None:
        run = await claimed(store, "r1")
        error = {"type": "builtins.ConnectionError", "name": "ConnectionError", "message": "reset"}
        state = AttemptState("r1", "call", attempts=1, next_at=T0 + 2, first_started_at=T0, error=error)
        await store.save_attempts(state, fence=run.fence, event=Event("r1", "step_retrying", T0, "call"))
        assert await store.get_attempts("r1") == {"call": state}
        later = AttemptState("r1", "call", attempts=2, next_at=T0 + 6, first_started_at=T0, error=None)
        await store.save_attempts(later, fence=run.fence, event=None)
        other = AttemptState("r1", "other", attempts=1, next_at=T0 + 1, first_started_at=T0)
        await store.save_attempts(other, fence=run.fence, event=None)
        assert await store.get_attempts("r1") == {"call": later, "other": other}
        assert [e.kind for e in await store.list_events("r1")] == ["step_retrying"]
        assert await store.get_attempts("nope") == {}

    async def test_save_attempts_keeps_the_first_start(self, store: Store) -> None:
        run = await claimed(store, "r1")
        await store.save_attempts(AttemptState("r1", "a", 1, T0 + 1, T0), fence=run.fence, event=None)
        await store.save_attempts(AttemptState("r1", "a", 2, T0 + 5, T0 + 4), fence=run.fence, event=None)
        assert await store.get_attempts("r1") == {"a": AttemptState("r1", "a", 2, T0 + 5, T0)}

    async def test_save_attempts_with_a_stale_fence_writes_nothing(self, store: Store) -> None:
        old = await claimed(store, "r1", owner="w1")
        await store.claim_run("r1", owner="w2", now=T0 + LEASE, lease_seconds=LEASE, force=True)
        with pytest.raises(LeaseLostError):
            await store.save_attempts(
                AttemptState("r1", "a", 1, T0 + 1, T0), fence=old.fence, event=Event("r1", "step_retrying", T0, "a")
            )
        assert await store.get_attempts("r1") == {}
        assert await store.list_events("r1") == []

    async def test_record_step_clears_its_attempts(self, store: Store) -> None:
        run = await claimed(store, "r1")
        await store.save_attempts(AttemptState("r1", "a", 2, T0 + 1, T0), fence=run.fence, event=None)
        keep = AttemptState("r1", "b", 1, T0 + 1, T0)
        await store.save_attempts(keep, fence=run.fence, event=None)
        await store.record_step(make_step("r1", "a", "done", attempts=3), fence=run.fence, now=T0 + 2)
        assert await store.get_attempts("r1") == {"b": keep}

    # events -------------------------------------------------------------------------------
    async def test_an_event_appended_again_is_recorded_once(self, store: Store) -> None:
        # A retried append (its acknowledgement was lost) must not double the history.
        await store.append_event(Event("r1", "run_resumed", T0, data={"fence": 2}))
        await store.append_event(Event("r1", "run_resumed", T0, data={"fence": 2}))
        await store.append_event(Event("r1", "signal", T0, "gate", {"v": 1}))
        await store.append_event(Event("r1", "signal", T0, "gate", {"v": 1}))
        # Anything that differs is another event.
        await store.append_event(Event("r1", "run_resumed", T0, data={"fence": 3}))
        await store.append_event(Event("r1", "run_resumed", T0 + 1, data={"fence": 2}))
        await store.append_event(Event("r1", "signal", T0, "other", {"v": 1}))
        await store.append_event(Event("r2", "run_resumed", T0, data={"fence": 2}))
        events = [(e.kind, e.at, e.step_key, e.data) for e in await store.list_events("r1")]
        assert events == [
            ("run_resumed", T0, None, {"fence": 2}),
            ("signal", T0, "gate", {"v": 1}),
            ("run_resumed", T0, None, {"fence": 3}),
            ("run_resumed", T0 + 1, None, {"fence": 2}),
            ("signal", T0, "other", {"v": 1}),
        ]
        assert len(await store.list_events("r2")) == 1

    async def test_events_in_order_per_run(self, store: Store) -> None:
        kinds = ["run_created", "step_started", "step_succeeded", "run_succeeded"]
        for i, kind in enumerate(kinds):
            await store.append_event(
                Event("r1", kind, T0 + 10 - i, step_key="a" if "step" in kind else None, data={"i": i})
            )
            await store.append_event(Event("r2", kind, T0))
        events = await store.list_events("r1")
        assert [(e.kind, e.at, e.step_key, e.data) for e in events] == [
            (kind, T0 + 10 - i, "a" if "step" in kind else None, {"i": i}) for i, kind in enumerate(kinds)
        ]
        assert all(e.run_id == "r1" for e in events)
        ids = [e.id for e in events]
        assert ids == sorted(ids) and len(set(ids)) == len(ids)
        assert await store.list_events("nope") == []

    # cache --------------------------------------------------------------------------------
    async def test_cache_put_get_and_replace(self, store: Store) -> None:
        assert await store.cache_get("k") is None
        await store.cache_put("k", {"v": 1}, now=T0)
        await store.cache_put("other", [1, 2], now=T0)
        entry = await store.cache_get("k")
        assert entry is not None
        assert (entry.key, entry.value, entry.stored_at) == ("k", {"v": 1}, T0)
        await store.cache_put("k", "two", now=T0 + 5)
        entry = await store.cache_get("k")
        assert entry is not None
        assert (entry.value, entry.stored_at) == ("two", T0 + 5)
        other = await store.cache_get("other")
        assert other is not None and other.value == [1, 2]

    # values -------------------------------------------------------------------------------
    @pytest.mark.parametrize(
        "value",
        [ODD_VALUE, None, "plain", 0.1, 0, 1e300, [1, "two", None, {"three": 3.0}], {"": ""}, True],
        ids=["odd", "none", "str", "float", "zero", "big-float", "list", "empty-key", "bool"],
    )
    async def test_values_round_trip_as_json(self, store: Store, value: Any) -> None:
        await store.create_run(make_run("r1", input=value, options={"v": value}))
        run = await store.claim_run("r1", owner="w1", now=T0, lease_seconds=LEASE)
        assert run is not None
        stored = await store.get_run("r1")
        assert stored is not None and stored.input == value and stored.options == {"v": value}
        await store.record_step(make_step("r1", "a", value, meta={"v": value}), fence=run.fence, now=T0)
        (step,) = await store.get_steps("r1")
        assert (step.output, step.meta) == (value, {"v": value})
        await store.append_event(Event("r1", "note", T0, data={"v": value}))
        (event,) = await store.list_events("r1")
        assert event.data == {"v": value}
        await store.cache_put("k", value, now=T0)
        entry = await store.cache_get("k")
        assert entry is not None and entry.value == value
        update = RunUpdate(RunStatus.SUCCEEDED, output={"v": value})
        await store.update_run("r1", fence=run.fence, now=T0, update=update, event=None)
        done = await store.get_run("r1")
        assert done is not None and done.output == {"v": value}

    async def test_unserialisable_step_output_raises_naming_the_step(self, store: Store) -> None:
        run = await claimed(store, "r1")
        bad = make_step("r1", "summarise[2]", {"result": _Unserialisable()})
        with pytest.raises(SerializationError, match=r"summarise\[2\]"):
            await store.record_step(
                bad,
                fence=run.fence,
                now=T0,
                event=Event("r1", "step_ok", T0, "summarise[2]"),
                run_update=RunUpdate(RunStatus.SUCCEEDED),
            )
        assert await store.get_steps("r1") == []
        assert await store.list_events("r1") == []
        assert await store.get_run("r1") == run

    async def test_unserialisable_plain_step_output_or_metadata_raises_naming_the_step(self, store: Store) -> None:
        # A first-attempt success with no event and no run update: the common, fastest path.
        run = await claimed(store, "r1")
        with pytest.raises(SerializationError, match=r"output of step 'draft'"):
            await store.record_step(make_step("r1", "draft", _Unserialisable()), fence=run.fence, now=T0)
        odd_meta = make_step("r1", "check", 1)
        odd_meta.meta = {"latency_ms": _Unserialisable()}
        with pytest.raises(SerializationError, match=r"metadata of step 'check'"):
            await store.record_step(odd_meta, fence=run.fence, now=T0)
        assert await store.get_steps("r1") == []
        assert await store.get_run("r1") == run

    async def test_unserialisable_run_input_and_cache_value_raise(self, store: Store) -> None:
        with pytest.raises(SerializationError):
            await store.create_run(make_run("r1", input={"x": _Unserialisable()}))
        assert await store.get_run("r1") is None
        with pytest.raises(SerializationError):
            await store.cache_put("k", _Unserialisable(), now=T0)
        assert await store.cache_get("k") is None

    # reviews ------------------------------------------------------------------------------
    async def _parked(self, store: Store, run_id: str = "r1") -> RunRecord:
        run = await claimed(store, run_id)
        update = RunUpdate(RunStatus.WAITING, wait_reason="signal:review:summary")
        await store.update_run(run_id, fence=run.fence, now=T0, update=update, event=None)
        parked = await store.get_run(run_id)
        assert parked is not None and parked.status is RunStatus.WAITING and parked.wake_at is None
        return parked

    async def test_create_review_round_trips_every_field(self, store: Store) -> None:
        review = make_review(
            "rv1",
            payload=ODD_VALUE,
            queue="medical",
            roles=["medical_reviewer"],
            required_roles=["medical_reviewer", "quality_assurance"],
            min_approvals=2,
            priority="urgent",
            sla_seconds=300.0,
            due_at=T0 + 300,
            warn_at=T0 + 240,
            level=1,
            parent_id="rv0",
            meta={"tier": "normal>=0.5", "on_timeout": "escalate:supervisor"},
        )
        stored = await store.create_review(review, event=Event("r1", "review_created", T0, "summary"))
        assert stored == review
        assert await store.get_review("rv1") == review
        assert [e.kind for e in await store.list_events("r1")] == ["review_created"]

    async def test_create_review_is_idempotent_and_returns_the_first(self, store: Store) -> None:
        first = await store.create_review(make_review("rv1", payload="first"), event=Event("r1", "a", T0))
        again = await store.create_review(make_review("rv1", payload="second"), event=Event("r1", "b", T0))
        assert again == first and again.payload == "first"
        assert [e.kind for e in await store.list_events("r1")] == ["a"]  # the repeat wrote nothing

    async def test_get_review_unknown_is_none(self, store: Store) -> None:
        assert await store.get_review("nope") is None

    async def test_find_review_ids_by_prefix(self, store: Store) -> None:
        for review_id in ("rv-00aa", "rv-00ab", "rv-01cd", "rv_x"):
            await store.create_review(make_review(review_id))
        assert await store.find_review_ids("rv-00aa") == ["rv-00aa"]
        assert await store.find_review_ids("rv-00") == ["rv-00aa", "rv-00ab"]
        assert await store.find_review_ids("rv-0", limit=1) == ["rv-00aa"]
        assert await store.find_review_ids("rv_") == ["rv_x"]  # ``_`` is no wildcard
        assert await store.find_review_ids("RV-") == []
        assert await store.find_review_ids("00") == []

    async def test_list_reviews_most_urgent_first(self, store: Store) -> None:
        await store.create_review(make_review("low", priority="low", created_at=T0))
        await store.create_review(make_review("normal-late", priority="normal", created_at=T0 + 1))
        await store.create_review(make_review("normal-due-later", priority="normal", due_at=T0 + 900))
        await store.create_review(make_review("normal-due-soon", priority="normal", due_at=T0 + 60))
        await store.create_review(make_review("urgent", priority="urgent", created_at=T0 + 5))
        found = [r.review_id for r in await store.list_reviews()]
        assert found == ["urgent", "normal-due-soon", "normal-due-later", "normal-late", "low"]
        assert [r.review_id for r in await store.list_reviews(limit=2)] == ["urgent", "normal-due-soon"]

    async def test_list_reviews_by_role_includes_open_items(self, store: Store) -> None:
        await store.create_review(make_review("doctor", roles=["medical_reviewer"]))
        await store.create_review(make_review("both", required_roles=["medical_reviewer", "quality_assurance"]))
        await store.create_review(make_review("qa", roles=["quality_assurance"]))
        await store.create_review(make_review("anyone"))
        await store.create_review(make_review("wildcard", roles=["qa_%"]))

        async def ids(role: str) -> set[str]:
            return {r.review_id for r in await store.list_reviews(role=role)}

        assert await ids("medical_reviewer") == {"doctor", "both", "anyone"}
        assert await ids("quality_assurance") == {"both", "qa", "anyone"}
        assert await ids("qa_%") == {"wildcard", "anyone"}  # LIKE's wildcards match only themselves
        assert await ids("qa_x") == {"anyone"}
        assert await ids("medical") == {"anyone"}  # a prefix of a role is another role

    async def test_list_reviews_filters_by_status_and_run(self, store: Store) -> None:
        await store.create_review(make_review("a", "r1"))
        await store.create_review(make_review("b", "r2"))
        await store.create_review(make_review("c", "r2", status=ReviewStatus.APPROVED))
        assert {r.review_id for r in await store.list_reviews(run_id="r2")} == {"b", "c"}
        pending = await store.list_reviews(status=[ReviewStatus.PENDING])
        assert {r.review_id for r in pending} == {"a", "b"}
        final = await store.list_reviews(status=[ReviewStatus.APPROVED, ReviewStatus.REJECTED], run_id="r2")
        assert [r.review_id for r in final] == ["c"]

    async def test_update_review_compares_and_sets_the_version(self, store: Store) -> None:
        item = await store.create_review(make_review("rv1", payload={"dose": "5mg"}))
        changed = item.copy()
        changed.payload = {"dose": "2.5mg"}
        changed.approvals = [{"by": "dr_a", "role": "medical_reviewer", "at": T0 + 1, "outcome": "edited"}]
        changed.warned_at = T0 + 2
        note = Event("r1", "review_approval_recorded", T0 + 3, "summary")
        assert await store.update_review(changed, expected_version=0, now=T0 + 3, events=[note])
        stored = await store.get_review("rv1")
        assert stored is not None
        assert (stored.version, stored.updated_at, stored.payload) == (1, T0 + 3, {"dose": "2.5mg"})
        assert stored.approvals == changed.approvals and stored.warned_at == T0 + 2
        # A writer that read version 0 lost: nothing changes, no event is written.
        stale = item.copy()
        stale.status = ReviewStatus.REJECTED
        assert not await store.update_review(
            stale, expected_version=0, now=T0 + 4, events=[Event("r1", "review_decided", T0 + 4)]
        )
        assert await store.get_review("rv1") == stored
        assert [e.kind for e in await store.list_events("r1")] == ["review_approval_recorded"]

    async def test_update_review_changes_only_the_mutable_fields(self, store: Store) -> None:
        item = await store.create_review(make_review("rv1", roles=["a"], priority="high", sla_seconds=60.0))
        changed = item.copy()
        changed.roles, changed.priority, changed.sla_seconds, changed.run_id = ["b"], "low", 1.0, "elsewhere"
        changed.status, changed.decided_at = ReviewStatus.ESCALATED, T0 + 60
        changed.escalated_to, changed.decision = "rv2", {"outcome": "escalated", "by": "sla"}
        assert await store.update_review(changed, expected_version=0, now=T0 + 60)
        stored = await store.get_review("rv1")
        assert stored is not None
        assert (stored.roles, stored.priority, stored.sla_seconds, stored.run_id) == (["a"], "high", 60.0, "r1")
        assert (stored.status, stored.escalated_to, stored.decided_at) == (ReviewStatus.ESCALATED, "rv2", T0 + 60)
        assert stored.decision == {"outcome": "escalated", "by": "sla"}

    async def test_update_review_of_an_unknown_item_is_refused(self, store: Store) -> None:
        assert not await store.update_review(make_review("ghost"), expected_version=0, now=T0)
        assert await store.get_review("ghost") is None

    async def test_a_final_decision_delivers_the_signal_and_wakes_the_run(self, store: Store) -> None:
        await self._parked(store)
        item = await store.create_review(make_review("rv1", gate_key="review:summary"))
        decided = item.copy()
        decided.status, decided.decided_at = ReviewStatus.APPROVED, T0 + 5
        signal = make_step("r1", "wait:review:summary", {"approved": True, "by": "dr_a"})
        ok = await store.update_review(
            decided, expected_version=0, now=T0 + 5, events=[Event("r1", "review_decided", T0 + 5)], signal=signal
        )
        assert ok
        (step,) = await store.get_steps("r1")
        assert (step.step_key, step.output) == ("wait:review:summary", {"approved": True, "by": "dr_a"})
        run = await store.get_run("r1")
        assert run is not None and run.wake_at == T0 + 5
        assert "r1" in _ids(await store.due_runs(now=T0 + 5))
        assert [e.kind for e in await store.list_events("r1")] == ["review_decided"]

    async def test_a_decision_whose_signal_was_delivered_already_writes_nothing(self, store: Store) -> None:
        await self._parked(store)
        await store.record_step(make_step("r1", "wait:review:summary", {"approved": False}), fence=None, now=T0)
        await store.create_review(make_review("rv1", gate_key="review:summary"))
        decided = make_review("rv1", gate_key="review:summary", status=ReviewStatus.APPROVED)
        signal = make_step("r1", "wait:review:summary", {"approved": True})
        assert not await store.update_review(
            decided, expected_version=0, now=T0 + 5, events=[Event("r1", "review_decided", T0 + 5)], signal=signal
        )
        stored = await store.get_review("rv1")
        assert stored is not None and stored.status is ReviewStatus.PENDING and stored.version == 0
        (step,) = await store.get_steps("r1")
        assert step.output == {"approved": False}  # the first delivery stands
        assert await store.list_events("r1") == []

    async def test_racing_decisions_have_exactly_one_winner(self, store: Store) -> None:
        await self._parked(store)
        item = await store.create_review(make_review("rv1", gate_key="review:summary"))

        async def decide(i: int) -> bool:
            mine = item.copy()
            mine.status = ReviewStatus.APPROVED if i % 2 else ReviewStatus.REJECTED
            mine.decision = {"by": f"reviewer{i}"}
            signal = make_step("r1", "wait:review:summary", {"approved": bool(i % 2), "by": f"reviewer{i}"})
            return await store.update_review(mine, expected_version=0, now=T0 + 1, signal=signal)

        results = await asyncio.gather(*(decide(i) for i in range(20)))
        assert results.count(True) == 1
        winner = f"reviewer{results.index(True)}"
        stored = await store.get_review("rv1")
        assert stored is not None and stored.version == 1 and stored.decision == {"by": winner}
        (step,) = await store.get_steps("r1")
        assert step.output["by"] == winner

    async def test_unserialisable_review_payload_raises_and_writes_nothing(self, store: Store) -> None:
        with pytest.raises(SerializationError, match="rv1"):
            await store.create_review(make_review("rv1", payload={"x": _Unserialisable()}))
        assert await store.get_review("rv1") is None
        item = await store.create_review(make_review("rv2", payload={"x": 1}))
        bad = item.copy()
        bad.payload = {"x": _Unserialisable()}
        with pytest.raises(SerializationError, match="rv2"):
            await store.update_review(bad, expected_version=0, now=T0)
        assert await store.get_review("rv2") == item

    # payload limits -------------------------------------------------------------------------
    async def test_a_step_output_over_the_payload_limit_is_refused_and_nothing_is_written(self, store: Store) -> None:
        _limit(store, 1000, 500)
        run = await claimed(store, "r1")
        big = {"text": "x" * 1000}  # 1,011 bytes of JSON
        shapes: list[dict[str, Any]] = [
            {},  # the plain record
            {"event": Event("r1", "step_routed", T0 + 1, "draft")},
            {"run_update": RunUpdate(RunStatus.SUCCEEDED, output=big)},  # the final step's, ending the run
        ]
        for shape in shapes:
            with pytest.raises(
                PayloadTooLargeError,
                match=r"^step 'draft' of run r1: its output is 1,011 bytes of JSON, "
                r"over the store's limit of 1,000 bytes; store the value elsewhere",
            ) as caught:
                await store.record_step(make_step("r1", "draft", big), fence=run.fence, now=T0, **shape)
            assert (caught.value.size, caught.value.limit) == (1011, 1000)
        with pytest.raises(PayloadTooLargeError, match=r"signal 'approve' of run r1: its value"):
            await store.record_step(make_step("r1", "wait:approve", big), fence=None, now=T0)
        assert await store.get_steps("r1") == []
        assert await store.list_events("r1") == []
        assert await store.get_run("r1") == run

    async def test_the_payload_limit_is_on_the_exact_size_of_the_json(self, store: Store) -> None:
        # Escapes, non-ASCII text (6 bytes a character, 12 outside the BMP), big ints and
        # floats: every backend measures what a SQL store writes.
        _limit(store, 1000, 1000)
        run = await claimed(store, "r1")

        def sized(extra: int) -> Any:
            value: Any = {"t": '🚀"é\x00\n' * 20, "n": [10**30, -2.5e-300, True, None], "d": {"k": ""}}
            value["d"]["k"] = "a" * (1000 - _json_size(value) + extra)
            assert _json_size(value) == 1000 + extra
            return value

        await store.record_step(make_step("r1", "fits", sized(0)), fence=run.fence, now=T0)
        with pytest.raises(PayloadTooLargeError, match="1,001 bytes of JSON") as caught:
            await store.record_step(make_step("r1", "over", sized(1)), fence=run.fence, now=T0)
        assert caught.value.size == 1001
        text = '🚀"é\x00' * 38
        text += "a" * (1001 - _json_size(text))
        with pytest.raises(PayloadTooLargeError, match="1,001 bytes"):
            await store.record_step(make_step("r1", "text", text), fence=run.fence, now=T0)
        assert [s.step_key for s in await store.get_steps("r1")] == ["fits"]
        assert await store.list_events("r1") == []

    async def test_a_value_over_the_warning_size_is_written_with_a_payload_large_event(self, store: Store) -> None:
        _limit(store, 1000, 100)
        large = {"text": "x" * 200}  # 211 bytes
        await store.create_run(make_run("r1", input=large))
        run = await store.claim_run("r1", owner="w1", now=T0, lease_seconds=LEASE)
        assert run is not None
        await store.record_step(make_step("r1", "draft", large), fence=run.fence, now=T0)
        await store.record_step(make_step("r1", "draft", large), fence=run.fence, now=T0)  # again: no second event
        await store.record_step(make_step("r1", "wait:approve", large), fence=None, now=T0 + 2)
        update = RunUpdate(RunStatus.SUCCEEDED, output=large)
        await store.update_run("r1", fence=run.fence, now=T0 + 3, update=update, event=None)
        await store.create_review(make_review("rv1", payload=large, created_at=T0 + 4))
        events = await store.list_events("r1")
        assert [(e.kind, e.step_key, e.at, e.data["what"]) for e in events] == [
            (PAYLOAD_LARGE_EVENT, None, T0, "input"),
            (PAYLOAD_LARGE_EVENT, "draft", T0 + 1, "output"),
            (PAYLOAD_LARGE_EVENT, "wait:approve", T0 + 1, "signal value"),
            (PAYLOAD_LARGE_EVENT, None, T0 + 3, "output"),
            (PAYLOAD_LARGE_EVENT, "summary", T0 + 4, "review payload"),
        ]
        assert events[1].data == {"what": "output", "size": 211, "warn_bytes": 100, "max_bytes": 1000}
        stored = await store.get_run("r1")
        assert stored is not None and stored.input == large and stored.output == large

    async def test_run_inputs_outputs_review_payloads_and_cached_outputs_over_the_limit_are_refused(
        self, store: Store
    ) -> None:
        _limit(store, 1000, 500)
        big = "x" * 1000  # 1,002 bytes
        with pytest.raises(PayloadTooLargeError, match=r"^workflow 'wf', run r1: its input is 1,002 bytes of JSON"):
            await store.create_run(make_run("r1", input=big))
        assert await store.get_run("r1") is None
        run = await self._parked(store, "r2")
        update = RunUpdate(RunStatus.SUCCEEDED, output=big)
        with pytest.raises(PayloadTooLargeError, match=r"^run r2: its output is 1,002 bytes"):
            await store.update_run("r2", fence=run.fence, now=T0, update=update, event=Event("r2", "run_succeeded", T0))
        assert await store.get_run("r2") == run
        with pytest.raises(PayloadTooLargeError, match=r"^review rv1 \(step 'summary' of run r2\): its payload"):
            await store.create_review(make_review("rv1", run_id="r2", payload=big))
        assert await store.get_review("rv1") is None
        item = await store.create_review(make_review("rv2", run_id="r2", payload="short", gate_key="review:summary"))
        edited = item.copy()
        edited.status, edited.payload = ReviewStatus.APPROVED, big
        signal = make_step("r2", "wait:review:summary", {"approved": True, "payload": big})
        with pytest.raises(PayloadTooLargeError, match="review rv2"):
            await store.update_review(edited, expected_version=0, now=T0 + 1, signal=signal)
        decided = item.copy()
        decided.status = ReviewStatus.APPROVED
        with pytest.raises(PayloadTooLargeError, match=r"^signal 'review:summary' of run r2: its value"):
            await store.update_review(decided, expected_version=0, now=T0 + 1, signal=signal)
        assert await store.get_review("rv2") == item
        assert await store.get_steps("r2") == []
        assert await store.list_events("r2") == []
        with pytest.raises(PayloadTooLargeError, match="the cached output 'k'"):
            await store.cache_put("k", big, now=T0)
        assert await store.cache_get("k") is None

    async def test_signal_values_and_review_payloads_nested_too_deep_are_refused(self, store: Store) -> None:
        run = await self._parked(store)
        for depth in (300, 5000):  # over the codec's 256 levels; past Python's recursion
            with pytest.raises(
                SerializationError, match=r"signal 'approve' of run r1: its value nests deeper than 256"
            ):
                await store.record_step(make_step("r1", "wait:approve", _nested(depth)), fence=None, now=T0)
            with pytest.raises(SerializationError, match=r"review rv1 \(step 'summary'\): its payload nests deeper"):
                await store.create_review(make_review("rv1", payload=_nested(depth)))
        item = await store.create_review(make_review("rv2", payload={"text": "flat"}, gate_key="review:summary"))
        edited = item.copy()
        edited.status, edited.payload = ReviewStatus.APPROVED, _nested(300)
        with pytest.raises(SerializationError, match="review rv2"):
            await store.update_review(edited, expected_version=0, now=T0 + 1)
        decided = item.copy()
        decided.status = ReviewStatus.APPROVED
        signal = make_step("r1", "wait:review:summary", {"approved": True, "payload": _nested(300)})
        with pytest.raises(SerializationError, match="signal 'review:summary'"):
            await store.update_review(decided, expected_version=0, now=T0 + 1, signal=signal)
        await store.record_step(make_step("r1", "wait:shallow", _nested(255)), fence=None, now=T0)
        assert [s.step_key for s in await store.get_steps("r1")] == ["wait:shallow"]
        assert await store.get_review("rv1") is None
        assert await store.get_review("rv2") == item
        assert await store.get_run("r1") == run
