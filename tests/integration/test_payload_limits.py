"""Payload limits through the engine, on memory, SQLite and PostgreSQL.

A step output over the store's limit (2 MiB by default) ends its run ``dead`` with
``PayloadTooLargeError``: recorded once, never retried, nothing of it written. One over the
warning size (512 KiB) is written with a ``payload_large`` event and a warning. A run
input over the limit is refused at start; a review edit over it is refused to the
reviewer. PostgreSQL runs in a schema of its own per test, dropped afterwards.

The values are a few MiB: each test allocates a few tens of MB at most. The soak variant
(``-m soak``) sends a 1.1 GB output to PostgreSQL in a child process and checks that it is
refused before it is sent, in under 3 GB of memory.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from orchestrate import Client, Retry, RunStatus, Step, Workflow
from orchestrate.errors import PayloadTooLargeError
from orchestrate.observe import configure_logging
from orchestrate.review import HumanReviewGate
from orchestrate.store.base import RunRecord
from tests.postgres import PG, in_schema

MiB = 1024 * 1024


@pytest.fixture
def schema() -> str:
    return f"t_{uuid.uuid4().hex[:16]}"


@pytest.fixture(params=["memory", "sqlite", "postgres"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path, schema: str) -> Iterator[str]:
    """A store URL on memory, on SQLite, or on PostgreSQL in a fresh schema.

    Values stay in the records here (offloaded only above 16 MiB): these tests are about
    the limits themselves; tests/integration/test_state_offload.py checks them after offload.
    """
    if request.param == "memory":
        yield f"memory://?offload_bytes={16 * MiB}"
    elif request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'limits.db'}?offload_bytes={16 * MiB}"
    else:
        yield from in_schema(schema)


async def _stored_bytes(client: Client, run_id: str) -> int:
    """How much JSON the store holds for a run: its record, steps, events and review items."""
    store = client.store
    run = await store.get_run(run_id)
    parts: list[Any] = [run.input, run.output, run.error] if run is not None else []
    parts += [[s.output, s.error, s.meta] for s in await store.get_steps(run_id)]
    parts += [e.data for e in await store.list_events(run_id)]
    parts += [r.to_dict() for r in await store.list_reviews(run_id=run_id)]
    return len(json.dumps(parts, default=str))


def _file_bytes(folder: Path, pattern: str) -> int:
    return sum(f.stat().st_size for f in folder.glob(pattern))


async def test_an_output_over_the_limit_ends_the_run_dead_recorded_once_and_never_retried(
    store_url: str, tmp_path: Path
) -> None:
    calls: list[int] = []

    def fetch(order: dict[str, Any]) -> dict[str, Any]:
        calls.append(1)
        return {"order": order["id"], "scan": "x" * (3 * MiB)}

    wf = Workflow("scans", [Step("fetch", fetch, retry=Retry(max_attempts=3, initial_delay=0.001))])
    async with Client(store_url, workflows=[wf]) as client:
        run = await client.run(wf, {"id": 4829})

        assert run.status is RunStatus.DEAD
        assert calls == [1]  # not retried: another attempt would return as much
        error = run.error or {}
        assert (error["name"], error["step"]) == ("PayloadTooLargeError", "fetch")
        message = error["message"]
        assert "\n" not in message
        assert f"step 'fetch' of run {run.run_id}: its output is 3.0 MiB" in message
        assert "over the store's limit of 2.0 MiB (2,097,152 bytes)" in message
        assert "store the value elsewhere" in message and "pass a reference" in message
        assert "max_payload_bytes" in message
        (step,) = await client.store.get_steps(run.run_id)
        assert (step.status.value, step.attempts, step.output) == ("failed", 1, None)
        assert [r.run_id for r in await client.dead_letters()] == [run.run_id]
        kinds = [e.kind for e in await client.store.list_events(run.run_id)]
        assert kinds == ["run_created", "step_failed", "run_dead"]
        assert await _stored_bytes(client, run.run_id) < 20_000  # nothing of the 3 MiB
    if store_url.startswith("sqlite"):
        assert _file_bytes(tmp_path, "limits.db*") < MiB  # the database file and its WAL


async def test_a_large_output_is_stored_with_a_payload_large_event_and_a_warning(
    store_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    def fetch(_: Any) -> dict[str, Any]:
        return {"scan": "y" * (600 * 1024)}

    def size(result: dict[str, Any]) -> int:
        return len(result["scan"])

    wf = Workflow("scans", [Step("fetch", fetch), Step("size", size)])
    configure_logging("warning", stream=sys.stderr)
    async with Client(store_url, workflows=[wf]) as client:
        run = await client.run(wf, None)
        assert (run.status, run.output) == (RunStatus.SUCCEEDED, 600 * 1024)
        (event,) = [e for e in await client.store.list_events(run.run_id) if e.kind == "payload_large"]
    assert event.step_key == "fetch"
    assert event.data == {"what": "output", "size": 614_411, "warn_bytes": 524_288, "max_bytes": 2_097_152}
    (line,) = [json.loads(line) for line in capsys.readouterr().err.splitlines() if '"payload_large"' in line]
    assert (line["level"], line["run_id"], line["step"], line["size"]) == ("warning", run.run_id, "fetch", 614_411)


async def test_a_run_input_over_the_limit_is_refused_at_start_with_one_line(store_url: str) -> None:
    wf = Workflow("scans", [Step("size", len)])
    async with Client(store_url, workflows=[wf]) as client:
        with pytest.raises(PayloadTooLargeError) as caught:
            await client.start(wf, "z" * (2 * MiB))
        assert await client.list() == []
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith("workflow 'scans', run ")
    assert ": its input is 2.0 MiB (2,097,154 bytes) of JSON, over the store's limit of 2.0 MiB" in message
    assert (caught.value.size, caught.value.limit) == (2 * MiB + 2, 2 * MiB)


async def test_a_review_edit_over_the_limit_is_refused_and_the_item_stays_pending(store_url: str) -> None:
    wf = Workflow(
        "letters",
        [Step("draft", lambda case: {"text": f"Dear {case}"}, gate=HumanReviewGate(roles=["editor"]))],
    )
    async with Client(store_url, workflows=[wf]) as client:
        parked = await client.run(wf, "Ada")
        assert parked.status is RunStatus.WAITING
        (item,) = await client.list_reviews(run_id=parked.run_id)
        with pytest.raises(PayloadTooLargeError, match=rf"^review {item.review_id} \(step 'draft' of run"):
            await client.edit(item.review_id, {"text": "w" * (3 * MiB)}, by="ed", role="editor")
        assert await client.get_review(item.review_id) == item
        assert (await client.resume(parked.run_id)).status is RunStatus.WAITING
        await client.edit(item.review_id, {"text": "Dear Ada,"}, by="ed", role="editor")
        done: RunRecord = await client.resume(parked.run_id)
        assert (done.status, done.output) == (RunStatus.SUCCEEDED, {"text": "Dear Ada,"})


@pytest.mark.soak
def test_a_gigabyte_output_is_refused_before_it_is_sent_to_postgresql(schema: str) -> None:
    pg_url = next(urls := in_schema(schema))
    script = textwrap.dedent(
        """
        import asyncio, resource, sys
        from orchestrate import Client, RunStatus, Step, Workflow

        def export(_):
            return "g" * (1100 * 1024 * 1024)

        async def main():
            wf = Workflow("export", [Step("export", export)])
            async with Client(sys.argv[1], workflows=[wf]) as client:
                run = await client.run(wf, None)
                steps = await client.store.get_steps(run.run_id)
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
            print(run.status.value, run.error["name"], [s.status.value for s in steps], peak)

        asyncio.run(main())
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script, pg_url], capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, done.stderr[-2000:]
    status, name, steps, peak = done.stdout.rsplit(" ", 3)
    assert (status, name, steps) == ("dead", "PayloadTooLargeError", "['failed']")
    assert int(peak) < 3 * 1024**3
    with psycopg.connect(PG) as conn:
        table = sql.SQL("{}.{}").format(sql.Identifier(schema), sql.Identifier("orchestrate_steps"))
        row = conn.execute(sql.SQL("SELECT COALESCE(MAX(LENGTH(output)), 0) FROM {}").format(table)).fetchone()
    assert row == (0,)
    next(urls, None)  # drop the schema
