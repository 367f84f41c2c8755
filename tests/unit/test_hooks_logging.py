"""Logs through the standard library: the application's own lines written in a step carry the run's ids."""

from __future__ import annotations

import io
import json
import logging

import pytest

from orchestrate import Engine, Step, Workflow
from orchestrate.observe import CorrelationFilter, configure_logging, current_ids, get_logger
from orchestrate.store import InMemoryStore


async def test_a_step_writing_its_own_log_lines_carries_the_correlation_ids() -> None:
    stream = io.StringIO()
    configure_logging("info", stream=stream, root=True)
    mine = logging.getLogger("shipping.carrier")

    def sync_step(order: str) -> str:
        mine.info("asked the carrier about %s", order)
        return order

    async def async_step(order: str) -> str:
        mine.warning("carrier slow for %s", order)
        return order

    wf = Workflow("logged_steps", [Step("ask", sync_step), Step("wait", async_step)])
    try:
        async with Engine(InMemoryStore()) as engine:
            record = await engine.run_record(wf, "A-17")
        mine.info("outside any run")
    finally:
        configure_logging("warning")
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    own = {line["event"]: line for line in lines if line.get("logger") == "shipping.carrier"}
    ask = own["asked the carrier about A-17"]
    assert (ask["workflow"], ask["run_id"], ask["step"], ask["attempt"]) == ("logged_steps", record.run_id, "ask", 1)
    assert ask["level"] == "info" and "timestamp" in ask
    assert own["carrier slow for A-17"]["step"] == "wait"
    assert "run_id" not in own["outside any run"]


async def test_an_application_handler_gets_readable_records_with_fields_and_ids() -> None:
    """No configure_logging: the application's own handler, filter and format decide."""
    seen: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(record)

    handler = Keep()
    handler.addFilter(CorrelationFilter())
    handler.setFormatter(logging.Formatter("%(levelname)s %(run_id)s %(step)s %(message)s"))
    library = logging.getLogger("orchestrate")
    saved = (library.level, library.propagate, list(library.handlers))
    for old in saved[2]:
        library.removeHandler(old)
    library.setLevel(logging.INFO)
    library.addHandler(handler)
    ids: list[dict[str, object]] = []

    def step(order: str) -> str:
        ids.append(current_ids())
        return order

    try:
        async with Engine(InMemoryStore()) as engine:
            record = await engine.run_record(Workflow("app_logs", [Step("lookup", step)]), "A-17")
    finally:
        library.removeHandler(handler)
        library.setLevel(saved[0])
        library.propagate = saved[1]
        for old in saved[2]:
            library.addHandler(old)
    assert ids == [{"workflow": "app_logs", "run_id": record.run_id, "step": "lookup", "attempt": 1}]
    assert current_ids() == {}
    succeeded = next(r for r in seen if r.getMessage().startswith("step_succeeded"))
    assert succeeded.name == "orchestrate" and succeeded.levelno == logging.INFO
    assert succeeded.run_id == record.run_id and succeeded.attempts == 1
    assert f"run_id={record.run_id}" in succeeded.getMessage() and "step=lookup" in succeeded.getMessage()
    assert handler.format(succeeded).startswith(f"INFO {record.run_id} lookup step_succeeded")
    assert succeeded.pathname.endswith("steps.py")  # the line that logged, not the logging layer


def test_a_field_named_like_a_record_attribute_keeps_its_name_in_json() -> None:
    stream = io.StringIO()
    configure_logging("info", stream=stream)
    try:
        get_logger().warning("workflow_version_missing", message="not claiming", name="w", args=[1])
    finally:
        configure_logging("warning")
    line = json.loads(stream.getvalue())
    assert (line["message"], line["name"], line["args"]) == ("not claiming", "w", [1])


def test_the_console_format(capsys: pytest.CaptureFixture[str]) -> None:
    stream = io.StringIO()
    configure_logging("info", stream=stream, json=False)
    try:
        get_logger().info("hello", who="ana")
    finally:
        configure_logging("warning")
    text = stream.getvalue()
    assert "hello" in text and "who=ana" in text and not text.startswith("{")
