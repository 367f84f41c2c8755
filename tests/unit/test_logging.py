"""Structured JSON logs carry workflow, run, step and attempt ids and the step's quality data."""

from __future__ import annotations

import io
import json

import pytest

from orchestrate import Engine, Fallback, Retry, Step, Workflow
from orchestrate.observe import configure_logging
from orchestrate.store import InMemoryStore


@pytest.fixture
def log_stream():
    stream = io.StringIO()
    configure_logging("info", stream=stream)
    yield stream
    configure_logging("warning")


async def test_step_logs_are_json_with_ids_and_quality_data(log_stream):
    calls = []

    def flaky(x):
        calls.append(x)
        if len(calls) == 1:
            raise ConnectionError("reset by peer")
        return x

    def broken(x):
        raise TimeoutError("carrier API")

    wf = Workflow(
        "logged",
        [
            Step("flaky", flaky, retry=Retry(max_attempts=2, initial_delay=0.001, jitter=0)),
            Step("tracking", broken, fallback=Fallback.value("Memphis, TN")),
        ],
    )
    async with Engine(InMemoryStore()) as engine:
        record = await engine.run_record(wf, {"order": 4829})

    lines = [json.loads(line) for line in log_stream.getvalue().splitlines()]
    by_event = {}
    for line in lines:
        by_event.setdefault(line["event"], []).append(line)
    failed = by_event["step_attempt_failed"][0]
    assert failed["run_id"] == record.run_id and failed["workflow"] == "logged"
    assert failed["step"] == "flaky" and failed["attempt"] == 1 and failed["error_class"] == "ConnectionError"
    ok = by_event["step_succeeded"][0]
    assert ok["attempts"] == 2 and ok["latency_ms"] >= 0 and len(ok["input_hash"]) == 16
    fallback = by_event["step_fallback"][0]
    assert fallback["step"] == "tracking" and fallback["fallback"] == "value"
    assert fallback["error_class"] == "TimeoutError"
    assert by_event["run_succeeded"][0]["run_id"] == record.run_id
    assert all(line["level"] in ("info", "warning", "error") and "timestamp" in line for line in lines)


async def test_quiet_below_warning_by_default():
    stream = io.StringIO()
    configure_logging("warning", stream=stream)
    try:
        async with Engine(InMemoryStore()) as engine:
            await engine.run(Workflow("quiet", [Step("a", lambda x: x)]), 1)
    finally:
        configure_logging("warning")
    assert stream.getvalue() == ""


def test_unknown_level_is_refused():
    with pytest.raises(ValueError, match="unknown log level 'loud'"):
        configure_logging("loud")
