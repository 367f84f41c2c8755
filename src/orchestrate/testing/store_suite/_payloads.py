"""Conformance: payload size and depth limits, checked before anything is written."""

from __future__ import annotations

from typing import Any

import pytest

from orchestrate.errors import (
    PayloadTooLargeError,
    SerializationError,
)
from orchestrate.store._limits import PAYLOAD_LARGE_EVENT
from orchestrate.store.base import (
    Event,
    ReviewStatus,
    RunUpdate,
    Store,
)
from orchestrate.testing.store_suite._support import (
    LEASE,
    T0,
    _json_size,
    _limit,
    _nested,
    claimed,
    make_review,
    make_run,
    make_step,
    parked,
)
from orchestrate.types import RunStatus


class PayloadsConformance:
    """Conformance: payload size and depth limits, checked before anything is written."""

    # payload limits -------------------------------------------------------------------------
    async def test_a_step_output_over_the_payload_limit_is_refused_and_nothing_is_written(self, store: Store) -> None:
        _limit(store, 1000, 500)
        run = await claimed(store, "r1")
        big = {"text": "x" * 1000}  # 1,011 bytes of JSON
        shapes: list[dict[str, Any]] = [
            {},  # the plain record
            {"event": Event(run_id="r1", kind="step_routed", at=T0 + 1, step_key="draft")},
            {"run_update": RunUpdate(status=RunStatus.SUCCEEDED, output=big)},  # the final step's, ending the run
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
        update = RunUpdate(status=RunStatus.SUCCEEDED, output=large)
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
        run = await parked(store, "r2")
        update = RunUpdate(status=RunStatus.SUCCEEDED, output=big)
        with pytest.raises(PayloadTooLargeError, match=r"^run r2: its output is 1,002 bytes"):
            await store.update_run(
                "r2", fence=run.fence, now=T0, update=update, event=Event(run_id="r2", kind="run_succeeded", at=T0)
            )
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
        run = await parked(store)
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
