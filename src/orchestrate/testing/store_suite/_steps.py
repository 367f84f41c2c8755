"""Conformance: step records, retry progress, events, the cache and JSON values."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from orchestrate.errors import (
    LeaseLostError,
    RunNotFoundError,
    SerializationError,
)
from orchestrate.store.base import (
    AttemptState,
    Event,
    RunUpdate,
    StepRecord,
    Store,
)
from orchestrate.testing.store_suite._support import (
    LEASE,
    ODD_VALUE,
    T0,
    _Unserialisable,
    claimed,
    make_run,
    make_step,
)
from orchestrate.types import RunStatus, StepStatus


class StepsConformance:
    """Conformance: step records, retry progress, events, the cache and JSON values."""

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
        assert (
            await store.record_step(
                first, fence=run.fence, now=T0, event=Event(run_id="r1", kind="step_ok", at=T0, step_key="a")
            )
            == first
        )
        second = make_step("r1", "a", {"v": 2}, attempts=5)
        assert (
            await store.record_step(
                second, fence=run.fence, now=T0 + 1, event=Event(run_id="r1", kind="step_ok", at=T0 + 1, step_key="a")
            )
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
                event=Event(run_id="r1", kind="step_ok", at=T0, step_key="a"),
                run_update=RunUpdate(status=RunStatus.SUCCEEDED, output="late"),
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
            event=Event(run_id="r1", kind="step_succeeded", at=T0 + 5, step_key="last"),
            run_update=RunUpdate(status=RunStatus.SUCCEEDED, output={"ok": True}),
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
            run_update=RunUpdate(status=RunStatus.SUCCEEDED, output=2),
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
        state = AttemptState(run_id="r1", step_key="call", attempts=1, next_at=T0 + 2, first_started_at=T0, error=error)
        await store.save_attempts(
            state, fence=run.fence, event=Event(run_id="r1", kind="step_retrying", at=T0, step_key="call")
        )
        assert await store.get_attempts("r1") == {"call": state}
        later = AttemptState(run_id="r1", step_key="call", attempts=2, next_at=T0 + 6, first_started_at=T0, error=None)
        await store.save_attempts(later, fence=run.fence, event=None)
        other = AttemptState(run_id="r1", step_key="other", attempts=1, next_at=T0 + 1, first_started_at=T0)
        await store.save_attempts(other, fence=run.fence, event=None)
        assert await store.get_attempts("r1") == {"call": later, "other": other}
        assert [e.kind for e in await store.list_events("r1")] == ["step_retrying"]
        assert await store.get_attempts("nope") == {}

    async def test_save_attempts_keeps_the_first_start(self, store: Store) -> None:
        run = await claimed(store, "r1")
        await store.save_attempts(
            AttemptState(run_id="r1", step_key="a", attempts=1, next_at=T0 + 1, first_started_at=T0),
            fence=run.fence,
            event=None,
        )
        await store.save_attempts(
            AttemptState(run_id="r1", step_key="a", attempts=2, next_at=T0 + 5, first_started_at=T0 + 4),
            fence=run.fence,
            event=None,
        )
        assert await store.get_attempts("r1") == {
            "a": AttemptState(run_id="r1", step_key="a", attempts=2, next_at=T0 + 5, first_started_at=T0)
        }

    async def test_save_attempts_with_a_stale_fence_writes_nothing(self, store: Store) -> None:
        old = await claimed(store, "r1", owner="w1")
        await store.claim_run("r1", owner="w2", now=T0 + LEASE, lease_seconds=LEASE, force=True)
        with pytest.raises(LeaseLostError):
            await store.save_attempts(
                AttemptState(run_id="r1", step_key="a", attempts=1, next_at=T0 + 1, first_started_at=T0),
                fence=old.fence,
                event=Event(run_id="r1", kind="step_retrying", at=T0, step_key="a"),
            )
        assert await store.get_attempts("r1") == {}
        assert await store.list_events("r1") == []

    async def test_record_step_clears_its_attempts(self, store: Store) -> None:
        run = await claimed(store, "r1")
        await store.save_attempts(
            AttemptState(run_id="r1", step_key="a", attempts=2, next_at=T0 + 1, first_started_at=T0),
            fence=run.fence,
            event=None,
        )
        keep = AttemptState(run_id="r1", step_key="b", attempts=1, next_at=T0 + 1, first_started_at=T0)
        await store.save_attempts(keep, fence=run.fence, event=None)
        await store.record_step(make_step("r1", "a", "done", attempts=3), fence=run.fence, now=T0 + 2)
        assert await store.get_attempts("r1") == {"b": keep}

    # events -------------------------------------------------------------------------------
    async def test_an_event_appended_again_is_recorded_once(self, store: Store) -> None:
        # A retried append (its acknowledgement was lost) must not double the history.
        await store.append_event(Event(run_id="r1", kind="run_resumed", at=T0, data={"fence": 2}))
        await store.append_event(Event(run_id="r1", kind="run_resumed", at=T0, data={"fence": 2}))
        await store.append_event(Event(run_id="r1", kind="signal", at=T0, step_key="gate", data={"v": 1}))
        await store.append_event(Event(run_id="r1", kind="signal", at=T0, step_key="gate", data={"v": 1}))
        # Anything that differs is another event.
        await store.append_event(Event(run_id="r1", kind="run_resumed", at=T0, data={"fence": 3}))
        await store.append_event(Event(run_id="r1", kind="run_resumed", at=T0 + 1, data={"fence": 2}))
        await store.append_event(Event(run_id="r1", kind="signal", at=T0, step_key="other", data={"v": 1}))
        await store.append_event(Event(run_id="r2", kind="run_resumed", at=T0, data={"fence": 2}))
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
                Event(run_id="r1", kind=kind, at=T0 + 10 - i, step_key="a" if "step" in kind else None, data={"i": i})
            )
            await store.append_event(Event(run_id="r2", kind=kind, at=T0))
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
        await store.append_event(Event(run_id="r1", kind="note", at=T0, data={"v": value}))
        (event,) = await store.list_events("r1")
        assert event.data == {"v": value}
        await store.cache_put("k", value, now=T0)
        entry = await store.cache_get("k")
        assert entry is not None and entry.value == value
        update = RunUpdate(status=RunStatus.SUCCEEDED, output={"v": value})
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
                event=Event(run_id="r1", kind="step_ok", at=T0, step_key="summarise[2]"),
                run_update=RunUpdate(status=RunStatus.SUCCEEDED),
            )
        assert await store.get_steps("r1") == []
        assert await store.list_events("r1") == []
        assert await store.get_run("r1") == run

    async def test_unserialisable_plain_step_output_or_metadata_raises_naming_the_step(self, store: Store) -> None:
        # A first-attempt success with no event and no run update: the common, fastest path.
        run = await claimed(store, "r1")
        with pytest.raises(SerializationError, match=r"output of step 'draft'"):
            await store.record_step(make_step("r1", "draft", _Unserialisable()), fence=run.fence, now=T0)
        odd_meta = make_step("r1", "check", 1, meta={"latency_ms": _Unserialisable()})
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
