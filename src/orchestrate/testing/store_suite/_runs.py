"""Conformance: runs, listings, pruning, fenced updates, cancellation and waking."""

from __future__ import annotations

import dataclasses

import pytest

from orchestrate.errors import (
    InvalidInputError,
    LeaseLostError,
    RunNotFoundError,
    RunStateError,
)
from orchestrate.store.base import (
    REPLAYED_EVENT,
    SCHEMA_VERSION,
    AttemptState,
    Event,
    RunUpdate,
    Store,
)
from orchestrate.testing.store_suite._support import (
    LEASE,
    T0,
    _ids,
    claimed,
    make_review,
    make_run,
    make_step,
)
from orchestrate.types import RunStatus


class RunsConformance:
    """Conformance: runs, listings, pruning, fenced updates, cancellation and waking."""

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
        await store.create_run(first, event=Event(run_id="r1", kind="run_created", at=T0))
        again = await store.create_run(
            make_run("r1", workflow="other", input={"n": 2}), event=Event(run_id="r1", kind="run_created", at=T0 + 1)
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
            update=RunUpdate(status=RunStatus.DEAD, output={"big": "x" * 1000}, error={"name": "E", "message": "m"}),
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
        await store.save_attempts(
            AttemptState(run_id=run_id, step_key="b", attempts=1, next_at=at, first_started_at=at - 4),
            fence=run.fence,
            event=None,
        )
        await store.record_step(make_step(run_id, "a", 1), fence=run.fence, now=at - 3)
        await store.create_review(
            make_review(f"rv-{run_id}", run_id), event=Event(run_id=run_id, kind="review_created", at=at - 2)
        )
        await store.update_run(
            run_id,
            fence=run.fence,
            now=at,
            update=RunUpdate(status=status),
            event=Event(run_id=run_id, kind=f"run_{status.value}", at=at),
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
        await store.append_event(Event(run_id="dead-a", kind="run_dead", at=T0 + 1))
        await store.append_event(Event(run_id="dead-replayed", kind=REPLAYED_EVENT, at=T0 + 5, data={"replay": "new"}))
        assert _ids(await store.list_dead_letters()) == ["dead-c", "dead-b", "dead-a"]
        assert _ids(await store.list_dead_letters(workflow="a")) == ["dead-c", "dead-a"]
        assert _ids(await store.list_dead_letters(limit=1)) == ["dead-c"]
        assert await store.list_dead_letters(workflow="missing") == []
        assert (await store.get_run("dead-replayed")) is not None  # it stays a dead run

    # update_run ---------------------------------------------------------------------------
    async def test_update_run_applies_a_fenced_transition(self, store: Store) -> None:
        run = await claimed(store, "r1")
        update = RunUpdate(status=RunStatus.WAITING, wake_at=T0 + 60, wait_reason="timer")
        await store.update_run(
            "r1", fence=run.fence, now=T0 + 1, update=update, event=Event(run_id="r1", kind="run_waiting", at=T0 + 1)
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
        update = RunUpdate(status=RunStatus.SUCCEEDED, output={"answer": 42})
        await store.update_run("r1", fence=run.fence, now=T0 + 1, update=update, event=None)
        stored = await store.get_run("r1")
        assert stored is not None
        assert (stored.status, stored.output) == (RunStatus.SUCCEEDED, {"answer": 42})

        run2 = await claimed(store, "r2")
        error = {"type": "builtins.ValueError", "name": "ValueError", "message": "bad", "step": "a"}
        await store.update_run(
            "r2", fence=run2.fence, now=T0 + 1, update=RunUpdate(status=RunStatus.DEAD, error=error), event=None
        )
        stored2 = await store.get_run("r2")
        assert stored2 is not None
        assert (stored2.status, stored2.error, stored2.output) == (RunStatus.DEAD, error, None)

    async def test_update_run_without_release_keeps_the_lease(self, store: Store) -> None:
        run = await claimed(store, "r1")
        update = RunUpdate(status=RunStatus.RUNNING, wait_reason="note", release=False)
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
                update=RunUpdate(status=RunStatus.SUCCEEDED, output="late"),
                event=Event(run_id="r1", kind="run_succeeded", at=T0),
            )
        assert await store.get_run("r1") == new
        assert await store.list_events("r1") == []

    async def test_update_run_after_release_is_refused(self, store: Store) -> None:
        run = await claimed(store, "r1")
        park = RunUpdate(status=RunStatus.WAITING, wait_reason="signal:x")
        await store.update_run("r1", fence=run.fence, now=T0 + 1, update=park, event=None)
        parked = await store.get_run("r1")
        with pytest.raises(LeaseLostError):
            await store.update_run(
                "r1", fence=run.fence, now=T0 + 2, update=RunUpdate(status=RunStatus.SUCCEEDED), event=None
            )
        assert await store.get_run("r1") == parked

    async def test_update_run_of_an_unknown_run(self, store: Store) -> None:
        with pytest.raises(RunNotFoundError):
            await store.update_run("nope", fence=1, now=T0, update=RunUpdate(status=RunStatus.SUCCEEDED), event=None)

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
            await store.update_run(
                "r1", fence=run.fence, now=T0 + 2, update=RunUpdate(status=RunStatus.SUCCEEDED), event=None
            )
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
