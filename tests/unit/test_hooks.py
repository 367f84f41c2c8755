"""The hooks seam: every event reaches observers once, replays report nothing, observers never fail a run."""

from __future__ import annotations

import io
import json
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest

from orchestrate import Client, Engine, Fallback, Retry, RunStatus, Step, Workflow
from orchestrate._engine.hooks import hooks_of
from orchestrate.observe import EVENTS, Observer, add_observer, configure_logging, observer_failures, remove_observer
from orchestrate.review import HumanReviewGate
from orchestrate.store import InMemoryStore, Store
from orchestrate.testing import FakeClock, FakeModel

FAST = Retry(max_attempts=2, initial_delay=0.001, jitter=0)


class Recorder(Observer):
    """Keeps every event as ``(name, fields)``."""

    def __init__(self) -> None:
        self.events: list[tuple[str, dict[str, Any]]] = []

    def count(self) -> Counter[str]:
        return Counter(name for name, _ in self.events)

    def of(self, name: str) -> list[dict[str, Any]]:
        return [fields for event, fields in self.events if event == name]


def _record(event: str) -> Any:
    def method(self: Recorder, **fields: Any) -> None:
        self.events.append((event, fields))

    return method


for _event in EVENTS:
    setattr(Recorder, _event, _record(_event))


class Broken(Observer):
    """Raises on every event."""

    def __init__(self) -> None:
        for event in EVENTS:
            setattr(self, event, self._raise)

    def _raise(self, **fields: Any) -> None:
        raise RuntimeError("the sink is down")


def support_workflow(model: FakeModel) -> Workflow:
    """A retry, a fallback, a model call and a review gate: every kind of event."""
    calls: list[str] = []

    def lookup(order: str) -> str:
        calls.append(order)
        if len(calls) == 1:
            raise ConnectionError("reset by peer")
        return order

    def track(order: str) -> str:
        raise TimeoutError("the carrier's API did not answer")

    async def draft(where: str) -> dict[str, str]:
        answer = await model.chat(f"Where is order {where}?")
        return {"reply": answer.text}

    return Workflow(
        "support",
        [
            Step("lookup", lookup, retry=FAST),
            Step("track", track, fallback=Fallback.value("Memphis, TN")),
            Step("draft", draft, gate=HumanReviewGate(roles=["agent"], timeout=3600)),
            Step("send", lambda d: f"sent: {d['reply']}"),
        ],
        version="1",
    )


async def run_support_scenario(open_store: Callable[[], Store]) -> tuple[Recorder, Recorder, str]:
    """Start the run on one engine, approve it, finish it on a second one (another store
    object from ``open_store``, as another process would have); return both recorders."""
    model = FakeModel(["It is in Memphis."])
    wf = support_workflow(model)
    first, second = Recorder(), Recorder()
    async with Client(engine=Engine(open_store(), observers=[first]), workflows=[wf]) as client:
        parked = await client.run(wf, "A-17")
        assert parked.status is RunStatus.WAITING
        (item,) = await client.list_reviews(run_id=parked.run_id)
        await client.approve(item.review_id, by="ana", role="agent")
    async with Engine(open_store(), workflows=[wf], observers=[second]) as worker:
        await worker.work(until_idle=True, poll_seconds=0.01)
        done = await worker.store.get_run(parked.run_id)
    assert done is not None and done.status is RunStatus.SUCCEEDED and done.output == "sent: It is in Memphis."
    return first, second, parked.run_id


def shared_memory() -> Callable[[], Store]:
    """One in-memory store for both "processes" (closing it keeps its data)."""
    store = InMemoryStore()
    return lambda: store


def check_support_events(first: Recorder, second: Recorder, run_id: str) -> None:
    """What each process reports, once per event."""
    assert first.count() == {
        "run_created": 1,
        "step_started": 3,
        "step_attempt_failed": 2,
        "step_retried": 1,
        "step_fallback": 1,
        "step_succeeded": 2,
        "model_called": 1,
        "review_created": 1,
        "run_parked": 1,
        "review_decided": 1,
    }
    # The second engine replays lookup, track and draft from the store: it reports only
    # what it did itself.
    assert second.count() == {"run_resumed": 1, "step_started": 1, "step_succeeded": 1, "run_ended": 1}
    assert [f["step"] for f in first.of("step_succeeded")] == ["lookup", "draft"]
    assert [f["step"] for f in second.of("step_succeeded")] == ["send"]
    assert all(fields.get("run_id") == run_id for _, fields in first.events + second.events)

    failed = first.of("step_attempt_failed")
    assert [(f["step"], f["attempt"], f["error_class"], f["retry_in"] is not None) for f in failed] == [
        ("lookup", 1, "ConnectionError", True),
        ("track", 1, "TimeoutError", False),
    ]
    assert isinstance(failed[0]["error"], ConnectionError) and failed[0]["timed_out"] is False
    (retried,) = first.of("step_retried")
    assert retried["attempt"] == 2 and retried["delay"] == pytest.approx(0.001)
    lookup = first.of("step_succeeded")[0]
    assert lookup["attempts"] == 2 and lookup["latency_s"] > 0 and len(lookup["input_hash"]) == 16
    (fallback,) = first.of("step_fallback")
    assert fallback["fallback"] == "value" and fallback["error_class"] == "TimeoutError"
    (model,) = first.of("model_called")
    assert model["model"] == "fake-model" and model["step"] == "draft" and model["input_tokens"] > 0
    assert model["operation"] == "chat" and model["error_class"] is None
    (created,) = first.of("run_created")
    assert created["workflow"] == "support" and created["claimed"] is True
    (parked,) = first.of("run_parked")
    assert parked["reason"] == "signal:review:draft"
    (review,) = first.of("review_created")
    assert review["roles"] == ["agent"] and review["level"] == 0 and review["step"] == "draft"
    (decided,) = first.of("review_decided")
    assert decided["outcome"] == "approved" and decided["by"] == "ana" and decided["review_id"] == review["review_id"]
    (resumed,) = second.of("run_resumed")
    assert resumed["replayed_steps"] >= 3
    (ended,) = second.of("run_ended")
    assert ended["status"] == "succeeded" and ended["duration_s"] >= 0


async def test_every_hook_fires_once_per_event_and_replays_report_nothing() -> None:
    first, second, run_id = await run_support_scenario(shared_memory())
    check_support_events(first, second, run_id)


async def test_a_retry_parked_in_the_store_is_started_again_by_the_engine_that_resumes_it() -> None:
    clock = FakeClock()
    calls: list[int] = []

    def flaky(x: int) -> int:
        calls.append(x)
        if len(calls) == 1:
            raise ConnectionError("reset")
        return x + 1

    wf = Workflow("parked_retry", [Step("flaky", flaky, retry=Retry(max_attempts=2, initial_delay=60, jitter=0))])
    store = InMemoryStore()
    first, second = Recorder(), Recorder()
    run_id = await Engine(store, clock=clock, observers=[first]).start(wf, 1)
    await Engine(store, clock=clock, workflows=[wf], observers=[first]).execute(run_id)
    clock.advance(61)
    await Engine(store, clock=clock, workflows=[wf], observers=[second]).execute(run_id)
    assert first.count() == {
        "run_created": 1,
        "run_resumed": 1,
        "step_started": 1,
        "step_attempt_failed": 1,
        "step_retried": 1,
        "run_parked": 1,
    }
    assert first.of("run_parked")[0]["reason"] == "retry:flaky"
    assert first.of("run_created")[0]["claimed"] is False
    assert second.count() == {"run_resumed": 1, "step_started": 1, "step_succeeded": 1, "run_ended": 1}
    assert second.of("step_started")[0]["attempt"] == 2
    assert second.of("step_succeeded")[0]["attempts"] == 2


async def test_failed_and_dead_runs_are_reported_with_the_step_and_error() -> None:
    def broken(x: int) -> int:
        raise ValueError("bad input")

    recorder = Recorder()
    wf = Workflow("broken", [Step("parse", broken)])
    async with Engine(InMemoryStore(), observers=[recorder]) as engine:
        record = await engine.run_record(wf, 1)
    assert record.status is RunStatus.DEAD
    (failed,) = recorder.of("step_failed")
    assert failed["step"] == "parse" and failed["error_class"] == "ValueError" and failed["error"] == "bad input"
    (ended,) = recorder.of("run_ended")
    assert ended["status"] == "dead" and ended["step"] == "parse" and ended["error_class"] == "ValueError"
    assert "step_succeeded" not in recorder.count()


async def test_a_raising_observer_never_fails_the_run_and_is_logged_and_counted() -> None:
    stream = io.StringIO()
    configure_logging("warning", stream=stream)
    recorder = Recorder()
    before = observer_failures().get("Broken.step_succeeded", 0)
    try:
        first, second, _ = await run_support_scenario_with(Broken(), recorder)
    finally:
        configure_logging("warning")
    # The observer after the broken one still hears everything.
    check_support_events(first, second, first.of("run_created")[0]["run_id"])
    assert observer_failures()["Broken.step_succeeded"] == before + 3
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    broken = [line for line in lines if line["event"] == "observer_failed"]
    assert broken and all(line["observer"] == "Broken" and line["error_class"] == "RuntimeError" for line in broken)
    assert "the sink is down" in broken[0]["exception"]  # the first failure of each hook, with its traceback


async def run_support_scenario_with(broken: Observer, recorder: Recorder) -> tuple[Recorder, Recorder, str]:
    """The support scenario with ``broken`` registered before the recorders, process-wide."""
    add_observer(broken)
    try:
        return await run_support_scenario(shared_memory())
    finally:
        remove_observer(broken)


async def test_process_wide_observers_see_workflow_run_and_model_calls_outside_runs() -> None:
    recorder = Recorder()
    wf = Workflow("plain", [Step("double", lambda x: x * 2)], state_store="memory")
    add_observer(recorder)
    try:
        assert await wf.run(21) == 42
        await FakeModel(["hi"], model_id="tiny").generate("hello")
    finally:
        remove_observer(recorder)
    await wf.run(1)  # removed: hears nothing more
    counts = recorder.count()
    assert counts["run_created"] == 1 and counts["step_succeeded"] == 1 and counts["run_ended"] == 1
    (model,) = recorder.of("model_called")
    assert model["model"] == "tiny" and model["operation"] == "text_completion" and model["run_id"] is None


async def test_a_failed_model_call_is_reported_with_its_error() -> None:
    recorder = Recorder()
    model = FakeModel([TimeoutError("slow")], model_id="m")

    async def ask(q: str) -> str:
        try:
            return (await model.chat(q)).text
        except Exception:  # the step answers without the model
            return "later"

    async with Engine(InMemoryStore(), observers=[recorder]) as engine:
        assert await engine.run(Workflow("ask", [Step("ask", ask)]), "q") == "later"
    (call,) = recorder.of("model_called")
    assert call["error_class"] is not None and call["model"] == "m" and call["step"] == "ask"


async def test_no_observer_means_no_dispatch_at_all() -> None:
    engine = Engine(InMemoryStore())
    assert hooks_of(engine) is None
    recorder = Recorder()
    add_observer(recorder)
    try:
        assert hooks_of(engine) is not None  # the process-wide one counts
    finally:
        remove_observer(recorder)
    assert hooks_of(engine) is None


def test_an_observer_overriding_nothing_is_called_for_nothing() -> None:
    from orchestrate.observe._dispatch import Dispatch

    dispatch = Dispatch([Observer(), Recorder()])
    assert dispatch.wants("step_succeeded")
    assert not Dispatch([Observer()]).wants("step_succeeded")
