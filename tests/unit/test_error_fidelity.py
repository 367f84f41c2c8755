"""A step's own errors keep their class, message, cause and traceback; the engine's timer
says what it measured; secrets in error texts are redacted before anything is stored."""

from __future__ import annotations

import asyncio
import re
import time
from typing import Any

from orchestrate import Engine, ExponentialBackoff, Fallback, Retry, RunStatus, Step, Workflow
from orchestrate.store import InMemoryStore


async def _steps(wf: Workflow, value: Any = None) -> tuple[Any, dict[str, Any], list[Any]]:
    async with Engine(InMemoryStore(), workflows=[wf]) as engine:
        record = await engine.run_record(wf, value)
        steps = {s.step_key: s for s in await engine.store.get_steps(record.run_id)}
        events = await engine.store.list_events(record.run_id)
        return record, steps, events


async def test_a_timeout_error_the_step_raises_itself_is_kept_as_it_is() -> None:
    def track(_: Any) -> dict[str, str]:
        raise TimeoutError("carrier API did not answer")

    wf = Workflow("own_timeout", [Step("track", track, timeout=2, fallback=Fallback.value({"location": "?"}))])
    record, steps, _ = await _steps(wf)
    assert record.status is RunStatus.SUCCEEDED
    error = steps["track"].error
    assert (error["name"], error["message"]) == ("TimeoutError", "carrier API did not answer")
    assert "timed out" not in str(error)


async def test_the_engines_timer_says_it_fired_and_what_it_measured() -> None:
    async def slow(_: Any) -> str:
        await asyncio.sleep(5)
        return "late"

    started = time.monotonic()
    record, steps, _ = await _steps(Workflow("slow", [Step("slow", slow, timeout=0.05)]))
    assert time.monotonic() - started < 4
    assert record.status is RunStatus.DEAD
    error = steps["slow"].error
    assert error["name"] == "StepTimeoutError"
    # What the timer measured is at least the limit (more on a loaded machine).
    measured = re.search(r"attempt 1 timed out: no result after ([0-9.]+)s", error["message"])
    assert measured is not None and float(measured.group(1)) >= 0.05, error["message"]
    assert "its limit is 0.05s" in error["message"]


async def test_a_sync_steps_own_timeout_error_is_not_rewritten_either() -> None:
    def call_provider(_: Any) -> str:
        raise TimeoutError("provider timed out after 0.05 s")

    record, steps, _ = await _steps(Workflow("provider", [Step("call", call_provider, timeout=20)]))
    assert steps["call"].error["message"] == "provider timed out after 0.05 s"
    assert record.error["name"] == "TimeoutError"
    assert record.error["message"].endswith(": TimeoutError: provider timed out after 0.05 s")


async def test_every_failed_attempt_keeps_a_bounded_traceback_with_the_line() -> None:
    calls = []

    def parse(_: Any) -> int:
        calls.append(1)
        payload: dict[str, int] = {}
        return payload["total"]  # KeyError, on this line

    wf = Workflow("parse", [Step("parse", parse, retry=Retry(max_attempts=2, initial_delay=0.01, jitter=0.0))])
    _, steps, events = await _steps(wf)
    assert len(calls) == 2
    final = steps["parse"].error
    assert final["name"] == "KeyError"
    assert 'return payload["total"]  # KeyError, on this line' in final["traceback"]
    assert "test_error_fidelity.py" in final["traceback"] and ", line " in final["traceback"]
    retried = [e for e in events if e.kind == "step_retry"]
    assert len(retried) == 1 and "KeyError" in retried[0].data["error"]["traceback"]


async def test_a_huge_traceback_is_cut_to_its_innermost_frames() -> None:
    def deep(_: Any) -> int:
        raise ValueError("x" * 10_000 + " the bottom")

    _, steps, _ = await _steps(Workflow("deep_tb", [Step("deep", deep)]))
    text = steps["deep"].error["traceback"]
    assert len(text) <= 4000 and "in deep" in text and "ValueError: xxxx" in text and text.rstrip().endswith("...")


async def test_the_cause_of_an_error_is_kept() -> None:
    def load(_: Any) -> int:
        try:
            {}["id"]
        except KeyError as exc:
            raise LookupError("order 4829 is unknown") from exc
        return 0

    _, steps, _ = await _steps(Workflow("cause", [Step("load", load)]))
    error = steps["load"].error
    assert error["name"] == "LookupError" and error["cause"]["name"] == "KeyError"


async def test_a_key_echoed_in_an_error_is_redacted_everywhere_it_is_stored() -> None:
    key = "sk-live-0123456789abcdefghij"

    def call(_: Any) -> str:
        raise PermissionError(f"401 Unauthorized: invalid api_key={key} (Authorization: Bearer {key})")

    wf = Workflow("leak", [Step("call", call, retry=ExponentialBackoff(max_attempts=2, initial_delay=0.01))])
    record, steps, events = await _steps(wf)
    stored = [str(record.error), str(steps["call"].error), *(str(e.data) for e in events)]
    assert all(key not in text for text in stored)
    assert "[REDACTED" in steps["call"].error["message"]


async def test_a_key_in_a_failing_fallbacks_error_is_redacted_in_the_record() -> None:
    key = "sk-live-0123456789abcdefghij"

    def call(_: Any) -> str:
        raise PermissionError("primary down")

    def backup(_: Any) -> str:
        raise PermissionError(f"401: bad key {key}")

    wf = Workflow("leak_fallback", [Step("call", call, fallback=[Fallback.call(backup), Fallback.value("canned")])])
    _, steps, _ = await _steps(wf)
    assert steps["call"].output == "canned"
    assert key not in str(steps["call"].meta["fallbacks_failed"])
