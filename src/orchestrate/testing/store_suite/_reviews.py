"""Conformance: review items and the decisions that deliver a run's signal."""

from __future__ import annotations

import asyncio

import pytest

from orchestrate.errors import (
    SerializationError,
)
from orchestrate.store.base import (
    Event,
    ReviewStatus,
    Store,
)
from orchestrate.testing.store_suite._support import (
    ODD_VALUE,
    T0,
    _ids,
    _Unserialisable,
    make_review,
    make_step,
    parked,
)


class ReviewsConformance:
    """Conformance: review items and the decisions that deliver a run's signal."""

    # reviews ------------------------------------------------------------------------------

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
        stored = await store.create_review(
            review, event=Event(run_id="r1", kind="review_created", at=T0, step_key="summary")
        )
        assert stored == review
        assert await store.get_review("rv1") == review
        assert [e.kind for e in await store.list_events("r1")] == ["review_created"]

    async def test_create_review_is_idempotent_and_returns_the_first(self, store: Store) -> None:
        first = await store.create_review(
            make_review("rv1", payload="first"), event=Event(run_id="r1", kind="a", at=T0)
        )
        again = await store.create_review(
            make_review("rv1", payload="second"), event=Event(run_id="r1", kind="b", at=T0)
        )
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
        note = Event(run_id="r1", kind="review_approval_recorded", at=T0 + 3, step_key="summary")
        assert await store.update_review(changed, expected_version=0, now=T0 + 3, events=[note])
        stored = await store.get_review("rv1")
        assert stored is not None
        assert (stored.version, stored.updated_at, stored.payload) == (1, T0 + 3, {"dose": "2.5mg"})
        assert stored.approvals == changed.approvals and stored.warned_at == T0 + 2
        # A writer that read version 0 lost: nothing changes, no event is written.
        stale = item.copy()
        stale.status = ReviewStatus.REJECTED
        assert not await store.update_review(
            stale, expected_version=0, now=T0 + 4, events=[Event(run_id="r1", kind="review_decided", at=T0 + 4)]
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
        await parked(store)
        item = await store.create_review(make_review("rv1", gate_key="review:summary"))
        decided = item.copy()
        decided.status, decided.decided_at = ReviewStatus.APPROVED, T0 + 5
        signal = make_step("r1", "wait:review:summary", {"approved": True, "by": "dr_a"})
        ok = await store.update_review(
            decided,
            expected_version=0,
            now=T0 + 5,
            events=[Event(run_id="r1", kind="review_decided", at=T0 + 5)],
            signal=signal,
        )
        assert ok
        (step,) = await store.get_steps("r1")
        assert (step.step_key, step.output) == ("wait:review:summary", {"approved": True, "by": "dr_a"})
        run = await store.get_run("r1")
        assert run is not None and run.wake_at == T0 + 5
        assert "r1" in _ids(await store.due_runs(now=T0 + 5))
        assert [e.kind for e in await store.list_events("r1")] == ["review_decided"]

    async def test_a_decision_whose_signal_was_delivered_already_writes_nothing(self, store: Store) -> None:
        await parked(store)
        await store.record_step(make_step("r1", "wait:review:summary", {"approved": False}), fence=None, now=T0)
        await store.create_review(make_review("rv1", gate_key="review:summary"))
        decided = make_review("rv1", gate_key="review:summary", status=ReviewStatus.APPROVED)
        signal = make_step("r1", "wait:review:summary", {"approved": True})
        assert not await store.update_review(
            decided,
            expected_version=0,
            now=T0 + 5,
            events=[Event(run_id="r1", kind="review_decided", at=T0 + 5)],
            signal=signal,
        )
        stored = await store.get_review("rv1")
        assert stored is not None and stored.status is ReviewStatus.PENDING and stored.version == 0
        (step,) = await store.get_steps("r1")
        assert step.output == {"approved": False}  # the first delivery stands
        assert await store.list_events("r1") == []

    async def test_racing_decisions_have_exactly_one_winner(self, store: Store) -> None:
        await parked(store)
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
