"""``FaultyStore``: injected store failures, before the write and after the commit."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest

from orchestrate.errors import InvalidInputError, LeaseLostError, StoreError
from orchestrate.store import Event, InMemoryStore, RunUpdate, Store
from orchestrate.store.retrying import RetryingStore
from orchestrate.store.sqlite import SQLiteStore
from orchestrate.testing import FaultMode, FaultyStore, InjectedFault
from orchestrate.testing.faulty import STORE_METHODS
from orchestrate.testing.store_suite import T0, claimed, make_run, make_step
from orchestrate.types import RunStatus


@pytest.fixture(params=["memory", "sqlite"])
async def inner(request: pytest.FixtureRequest, tmp_path: Path):
    store: Store = InMemoryStore() if request.param == "memory" else SQLiteStore(f"sqlite:///{tmp_path / 'f.db'}")
    await store.open()
    yield store
    await store.close()


def test_wraps_every_store_method() -> None:
    faulty = FaultyStore(InMemoryStore(), fail_on={})
    assert isinstance(faulty, Store)
    assert faulty.url == "memory://"
    for name in STORE_METHODS:
        assert inspect.iscoroutinefunction(getattr(faulty, name)), name
        own = vars(FaultyStore).get(name)
        if own is not None:  # written out: the signature must be the protocol's
            assert inspect.signature(own) == inspect.signature(getattr(Store, name)), name


class _PingStore(InMemoryStore):
    pings = 0

    async def ping(self, *, loud: bool = False) -> str:
        self.pings += 1
        return "PONG" if loud else "pong"


async def test_methods_it_does_not_spell_out_are_wrapped_too(tmp_path: Path) -> None:
    inner = _PingStore()
    store = FaultyStore(inner, fail_on={"ping": [2]}, mode="lost_ack")
    assert await store.ping(loud=True) == "PONG"
    with pytest.raises(StoreError, match="ping call 2"):
        await store.ping()
    assert inner.pings == 2  # lost_ack: the call happened
    assert store.injected == [InjectedFault("ping", 2, FaultMode.LOST_ACK)]
    # Plain attributes are the inner store's.
    sqlite = SQLiteStore(f"sqlite:///{tmp_path / 'a.db'}")
    wrapped = FaultyStore(sqlite, fail_on={})
    await wrapped.open()
    try:
        await wrapped.create_run(make_run("r1"))
        assert wrapped.commits == sqlite.commits >= 1
        assert wrapped.path == sqlite.path
    finally:
        await wrapped.close()


async def test_before_mode_fails_chosen_calls_and_writes_nothing(inner: Store) -> None:
    store = FaultyStore(inner, fail_on={"record_step": [2, 3]})
    run = await claimed(inner, "r1")
    first = make_step("r1", "a", 1)
    assert await store.record_step(first, fence=run.fence, now=T0) == first
    for call in (2, 3):
        with pytest.raises(StoreError, match=f"injected fault: record_step call {call}"):
            await store.record_step(make_step("r1", f"b{call}", call), fence=run.fence, now=T0)
    fourth = make_step("r1", "c", 4)
    assert await store.record_step(fourth, fence=run.fence, now=T0) == fourth
    assert [s.step_key for s in await inner.get_steps("r1")] == ["a", "c"]
    assert store.calls["record_step"] == 4
    assert store.injected == [
        InjectedFault("record_step", 2, FaultMode.BEFORE),
        InjectedFault("record_step", 3, FaultMode.BEFORE),
    ]


async def test_lost_ack_commits_then_raises_and_a_retry_returns_the_record(inner: Store) -> None:
    store = FaultyStore(inner, fail_on={"record_step": 1}, mode="lost_ack")
    run = await claimed(inner, "r1")
    step = make_step("r1", "a", {"v": 1})
    with pytest.raises(StoreError, match="committed, then its acknowledgement was lost"):
        await store.record_step(step, fence=run.fence, now=T0)
    assert await inner.get_steps("r1") == [step]  # it was committed
    # Retrying the write is safe: insert-if-absent returns the stored record.
    assert await store.record_step(make_step("r1", "a", {"v": 2}), fence=run.fence, now=T0) == step
    assert await inner.get_steps("r1") == [step]
    assert store.injected == [InjectedFault("record_step", 1, FaultMode.LOST_ACK)]


async def test_lost_ack_on_an_event_and_a_retry_leave_one_event(inner: Store) -> None:
    store = RetryingStore(FaultyStore(inner, fail_on={"append_event": 1}, mode="lost_ack"), initial_delay=0.001)
    await store.append_event(Event(run_id="r1", kind="run_resumed", at=T0, data={"replayed_steps": 2, "fence": 2}))
    assert store.retries == 1
    assert [(e.kind, e.data) for e in await inner.list_events("r1")] == [
        ("run_resumed", {"replayed_steps": 2, "fence": 2})
    ]


async def test_lost_ack_on_a_claim_leaves_the_run_claimed(inner: Store) -> None:
    store = FaultyStore(inner, fail_on={"claim_run": [1]}, mode=FaultMode.LOST_ACK)
    await inner.create_run(make_run("r1"))
    with pytest.raises(StoreError):
        await store.claim_run("r1", owner="w1", now=T0, lease_seconds=30)
    stored = await inner.get_run("r1")
    assert stored is not None and (stored.status, stored.owner, stored.fence) == (RunStatus.RUNNING, "w1", 1)
    # The retried claim is refused: the caller must look the run up to learn it won.
    assert await store.claim_run("r1", owner="w1", now=T0, lease_seconds=30) is None


async def test_before_mode_on_update_run_changes_nothing(inner: Store) -> None:
    store = FaultyStore(inner, fail_on={"update_run": [1]})
    run = await claimed(inner, "r1")
    with pytest.raises(StoreError):
        await store.update_run("r1", fence=run.fence, now=T0, update=RunUpdate(status=RunStatus.SUCCEEDED), event=None)
    assert await inner.get_run("r1") == run
    await store.update_run("r1", fence=run.fence, now=T0, update=RunUpdate(status=RunStatus.SUCCEEDED), event=None)
    done = await inner.get_run("r1")
    assert done is not None and done.status is RunStatus.SUCCEEDED


async def test_errors_of_the_inner_store_pass_through_and_are_not_counted_as_injected(inner: Store) -> None:
    store = FaultyStore(inner, fail_on={"update_run": [1]}, mode="lost_ack")
    run = await claimed(inner, "r1")
    await inner.cancel_run("r1", now=T0, reason="stop")
    with pytest.raises(LeaseLostError):
        await store.update_run("r1", fence=run.fence, now=T0, update=RunUpdate(status=RunStatus.SUCCEEDED), event=None)
    assert store.injected == []
    assert store.calls["update_run"] == 1


async def test_other_methods_are_untouched(inner: Store) -> None:
    store = FaultyStore(inner, fail_on={"record_step": [1]})
    await store.create_run(make_run("r1"))
    await store.cache_put("k", 1, now=T0)
    assert (await store.get_run("r1")) is not None
    entry = await store.cache_get("k")
    assert entry is not None and entry.value == 1
    assert store.injected == []
    assert store.calls == {"create_run": 1, "cache_put": 1, "get_run": 1, "cache_get": 1}


async def test_stacked_wrappers_combine_modes(inner: Store) -> None:
    # Each wrapper counts the calls that reach it: the outer one's first call never
    # reaches the inner one, so the outer second call is the inner first.
    lost = FaultyStore(inner, fail_on={"cache_put": [1]}, mode="lost_ack")
    store = FaultyStore(lost, fail_on={"cache_put": [1]})
    with pytest.raises(StoreError, match="before reaching"):
        await store.cache_put("k", "first", now=T0)
    assert await inner.cache_get("k") is None
    with pytest.raises(StoreError, match="acknowledgement was lost"):
        await store.cache_put("k", "second", now=T0)
    entry = await inner.cache_get("k")
    assert entry is not None and entry.value == "second"


@pytest.mark.parametrize(
    ("fail_on", "mode", "message"),
    [
        ({"record_stpe": [1]}, "before", "record_stpe"),
        ({"url": [1]}, "before", "url"),
        ({"_fenced": [1]}, "before", "_fenced"),
        ({"record_step": [0]}, "before", ">= 1"),
        ({"record_step": ["1"]}, "before", ">= 1"),
        ({}, "sometimes", "sometimes"),
    ],
)
def test_bad_configuration_is_refused(fail_on: dict[str, object], mode: str, message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        FaultyStore(InMemoryStore(), fail_on=fail_on, mode=mode)
