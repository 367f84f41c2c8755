"""OpenTelemetry traces: one trace per run across engines, spans per drive, step, attempt,
model call (GenAI conventions) and review wait, checked with the SDK's in-memory exporter."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from orchestrate import Client, Engine, Retry, RunStatus, Step, Workflow
from orchestrate.models import Secret
from orchestrate.observe.otel import OpenTelemetryObserver
from orchestrate.store import InMemoryStore, open_store
from orchestrate.testing import FakeClock, FakeModel
from tests.unit.test_hooks import support_workflow


class Tracing:
    """A tracer provider exporting to memory, and an observer on it (one per "process")."""

    def __init__(self, *, capture_content: bool = False) -> None:
        self.exporter = InMemorySpanExporter()
        self.provider = TracerProvider()
        self.provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.observer = OpenTelemetryObserver(tracer_provider=self.provider, capture_content=capture_content)

    def spans(self) -> list[ReadableSpan]:
        return list(self.exporter.get_finished_spans())


def _named(spans: list[ReadableSpan], name: str) -> list[ReadableSpan]:
    return [s for s in spans if s.name == name]


def _one(spans: list[ReadableSpan], name: str) -> ReadableSpan:
    (found,) = _named(spans, name)
    return found


def _parent(span: ReadableSpan) -> int | None:
    return span.parent.span_id if span.parent is not None else None


async def test_a_run_resumed_by_a_second_engine_stays_one_trace(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'traces.db'}"
    wf = support_workflow(FakeModel(["It is in Memphis."]))
    first, second = Tracing(), Tracing()
    async with Client(engine=Engine(open_store(url), observers=[first.observer]), workflows=[wf]) as client:
        parked = await client.run(wf, "A-17")
        (item,) = await client.list_reviews(run_id=parked.run_id)
        await client.approve(item.review_id, by="ana", role="agent")
    async with Engine(open_store(url), workflows=[wf], observers=[second.observer]) as worker:
        await worker.work(until_idle=True, poll_seconds=0.01)
        assert (await worker.store.get_run(parked.run_id)).status is RunStatus.SUCCEEDED  # type: ignore[union-attr]

    spans = first.spans() + second.spans()
    assert len({s.context.trace_id for s in spans}) == 1  # one trace, two "processes"
    root = _one(spans, "start_run support")
    assert root.parent is None and root.attributes["orchestrate.run_id"] == parked.run_id
    drives = _named(spans, "run support")
    assert len(drives) == 2 and all(_parent(d) == root.context.span_id for d in drives)
    assert drives[0] in first.spans() and drives[0].attributes["orchestrate.status"] == "waiting"
    assert drives[1] in second.spans() and drives[1].attributes["orchestrate.status"] == "succeeded"
    assert drives[1].attributes["orchestrate.replayed_steps"] >= 3

    steps = {s.name: s for s in spans if s.name.startswith("step ")}
    assert set(steps) == {"step lookup", "step track", "step draft", "step send"}  # replays make none
    assert _parent(steps["step send"]) == drives[1].context.span_id
    assert all(_parent(steps[n]) == drives[0].context.span_id for n in ("step lookup", "step track", "step draft"))
    lookup_attempts = sorted(
        (s for s in spans if s.name.startswith("attempt ") and _parent(s) == steps["step lookup"].context.span_id),
        key=lambda s: s.start_time or 0,
    )
    assert [s.name for s in lookup_attempts] == ["attempt 1", "attempt 2"]
    failed = lookup_attempts[0]
    assert failed.status.status_code is StatusCode.ERROR and failed.attributes["error.type"] == "ConnectionError"
    assert any(e.name == "exception" for e in failed.events)
    assert lookup_attempts[1].status.status_code is StatusCode.UNSET
    assert steps["step track"].attributes["orchestrate.fallback"] == "value"

    chat = _one(spans, "chat fake-model")
    assert _parent(chat) == steps["step draft"].context.span_id
    assert chat.attributes["gen_ai.operation.name"] == "chat"
    assert chat.attributes["gen_ai.request.model"] == "fake-model"
    assert chat.attributes["gen_ai.usage.input_tokens"] > 0 and chat.attributes["gen_ai.usage.output_tokens"] > 0
    assert "gen_ai.input.messages" not in chat.attributes  # content is off by default

    review = _one(spans, "review draft")
    assert _parent(review) == root.context.span_id  # decided by the client, after the drive ended
    assert review.attributes["orchestrate.review.outcome"] == "approved"
    assert review.attributes["orchestrate.review.by"] == "ana"
    assert review.start_time is not None and review.end_time is not None and review.end_time >= review.start_time


async def test_a_run_started_in_a_request_continues_its_trace_on_a_worker(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'request.db'}"
    wf = Workflow("echo", [Step("echo", lambda x: x)])
    api, worker_tracing = Tracing(), Tracing()
    tracer = api.provider.get_tracer("app")
    async with Client(engine=Engine(open_store(url), observers=[api.observer]), workflows=[wf]) as client:
        with tracer.start_as_current_span("POST /orders") as request:
            run_id = await client.start(wf, "hi")
    async with Engine(open_store(url), workflows=[wf], observers=[worker_tracing.observer]) as worker:
        await worker.work(until_idle=True, poll_seconds=0.01)
    spans = api.spans() + worker_tracing.spans()
    assert {s.context.trace_id for s in spans} == {request.get_span_context().trace_id}
    root = _one(spans, "start_run echo")
    assert _parent(root) == request.get_span_context().span_id
    assert _named(api.spans(), "run echo") == []  # the client only created the run
    (drive,) = _named(worker_tracing.spans(), "run echo")
    assert _parent(drive) == root.context.span_id and drive.attributes["orchestrate.run_id"] == run_id


async def test_a_run_created_without_tracing_still_gets_one_trace() -> None:
    clock = FakeClock()
    calls: list[int] = []

    def flaky(x: int) -> int:
        calls.append(x)
        if len(calls) == 1:
            raise ConnectionError("reset")
        return x

    wf = Workflow("untraced", [Step("flaky", flaky, retry=Retry(max_attempts=2, initial_delay=60, jitter=0))])
    store = InMemoryStore()
    run_id = await Engine(store, clock=clock).start(wf, 1)  # no observer: nothing stored
    tracing = Tracing()
    engine = Engine(store, clock=clock, workflows=[wf], observers=[tracing.observer])
    await engine.execute(run_id)  # parks on the retry's timer
    clock.advance(61)
    assert (await engine.execute(run_id)).status is RunStatus.SUCCEEDED  # type: ignore[union-attr]
    drives = _named(tracing.spans(), "run untraced")
    assert len(drives) == 2 and len({d.context.trace_id for d in drives}) == 1
    steps = _named(tracing.spans(), "step flaky")
    assert [s.attributes.get("orchestrate.parked") for s in steps] == [True, None]  # attempt 2 runs in drive 2


async def test_prompts_are_recorded_only_when_asked_and_then_masked() -> None:
    key = Secret("sk-live-0123456789abcdef", name="vendor_key")
    model = FakeModel([f"your key is {key.reveal()}"])

    async def ask(question: str) -> str:
        return (await model.chat(f"{question} {key.reveal()}")).text

    tracing = Tracing(capture_content=True)
    async with Engine(InMemoryStore(), observers=[tracing.observer]) as engine:
        await engine.run(Workflow("ask", [Step("ask", ask)]), "what is my key?")
    chat = _one(tracing.spans(), "chat fake-model")
    attributes: dict[str, Any] = dict(chat.attributes or {})
    assert "what is my key?" in attributes["gen_ai.input.messages"]
    assert key.reveal() not in attributes["gen_ai.input.messages"] + attributes["gen_ai.output.messages"]
    assert "REDACTED" in attributes["gen_ai.output.messages"]


async def test_a_run_started_by_a_step_joins_the_starting_runs_trace() -> None:
    tracing = Tracing()
    child = Workflow("child", [Step("echo", lambda x: x)])
    engine = Engine(InMemoryStore(), workflows=[child], observers=[tracing.observer])

    async def spawn(x: str) -> str:
        return await engine.start(child, x)

    parent = Workflow("parent", [Step("spawn", spawn)])
    async with engine:
        child_id = await engine.run(parent, "hi")
        await engine.work(until_idle=True, poll_seconds=0.01)
    spans = tracing.spans()
    assert len({s.context.trace_id for s in spans}) == 1
    started = _one(spans, "start_run child")
    assert _parent(started) == _one(spans, "step spawn").context.span_id
    assert _one(spans, "run child").attributes["orchestrate.run_id"] == child_id
