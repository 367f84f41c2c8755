"""Conformance: due runs, claims, leases and crashed attempts."""

from __future__ import annotations

import asyncio

from orchestrate.store.base import (
    RunUpdate,
    Store,
)
from orchestrate.testing.store_suite._support import (
    LEASE,
    T0,
    _ids,
    claimed,
    make_run,
    make_step,
)
from orchestrate.types import RunStatus


class ClaimsConformance:
    """Conformance: due runs, claims, leases and crashed attempts."""

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
        park = RunUpdate(status=RunStatus.WAITING, wake_at=T0 + 5, wait_reason="timer")
        await store.update_run("r1", fence=run.fence, now=T0 + 1, update=park, event=None)
        woken = await store.claim_run("r1", owner="w2", now=T0 + 5, lease_seconds=LEASE)
        assert woken is not None and (woken.crashes, woken.crashed_owner) == (0, None)
        crashed = await store.claim_run("r1", owner="w3", now=T0 + 5 + LEASE, lease_seconds=LEASE)
        assert crashed is not None and crashed.crashes == 1
        # Handed back (a drained worker) before any step: the count stands.
        release = RunUpdate(status=RunStatus.PENDING)
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
