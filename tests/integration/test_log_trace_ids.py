"""Log lines written in a traced run carry its trace id: the library's records and the application's own."""

from __future__ import annotations

import io
import json
import logging

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from orchestrate import Engine, Step, Workflow
from orchestrate.observe import configure_logging, current_ids
from orchestrate.observe.otel import OpenTelemetryObserver
from orchestrate.store import InMemoryStore


def lookup(order: str) -> str:
    logging.getLogger("shop").info("looking up %s", order)
    return order


wf = Workflow("traced_logs", [Step("lookup", lookup)])


async def test_the_trace_id_is_on_the_library_lines_and_the_application_lines() -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    observer = OpenTelemetryObserver(tracer_provider=provider)
    stream = io.StringIO()
    configure_logging("info", stream=stream, root=True)
    try:
        async with Engine(InMemoryStore(), observers=[observer]) as engine:
            record = await engine.run_record(wf, "A-17")
    finally:
        configure_logging("warning")
    (drive,) = [s for s in exporter.get_finished_spans() if s.name == "run traced_logs"]
    trace_id = format(drive.context.trace_id, "032x")
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    mine = next(line for line in lines if line["event"] == "looking up A-17")
    library = next(line for line in lines if line["event"] == "step_succeeded")
    for line in (mine, library):
        assert line["run_id"] == record.run_id and line["trace_id"] == trace_id
    assert observer.trace_id(record.run_id) is None  # the drive ended: no trace for the run here any more
    assert "trace_id" not in current_ids()


async def test_without_a_tracing_observer_lines_have_no_trace_id() -> None:
    stream = io.StringIO()
    configure_logging("info", stream=stream, root=True)
    try:
        async with Engine(InMemoryStore()) as engine:
            await engine.run_record(wf, "A-18")
    finally:
        configure_logging("warning")
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    mine = next(line for line in lines if line["event"] == "looking up A-18")
    assert "run_id" in mine and "trace_id" not in mine
