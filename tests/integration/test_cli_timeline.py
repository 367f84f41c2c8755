"""``runs show`` and ``dlq``: readable history times, failing tracebacks, replayed dead runs."""

from __future__ import annotations

import asyncio
import json
import re
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from orchestrate import Client
from orchestrate.cli import cli
from orchestrate.store import open_store
from orchestrate.store.base import Event, RunRecord, StepRecord
from orchestrate.types import RunStatus, StepStatus

APP = """
from orchestrate import FixedRetry, Step, Workflow
from orchestrate.review import HumanReviewGate


def charge(amount):
    CHARGE_BODY


billing = Workflow(
    "billing",
    [Step("prepare", lambda order: order), Step("charge", charge, retry=FixedRetry(2, delay=0.01))],
    version="1",
)

intake = Workflow(
    "intake",
    [Step("summarise", lambda form: {"summary": form}, gate=HumanReviewGate(timeout=3600)), Step("file", str)],
    version="1",
)
"""
BROKEN = 'raise ValueError("card declined")'
FIXED = 'return {"charged": amount}'
T0 = 1_700_000_000.0
TRACEBACK = (
    "Traceback (most recent call last):\n"
    '  File "/srv/app/billing.py", line 7, in charge\n'
    '    raise ValueError("card [red]declined[/red]")\n'
    "ValueError: card [red]declined[/red]"
)


def write_app(path: Path, charge: str = BROKEN) -> Path:
    path.write_text(APP.replace("CHARGE_BODY", charge))
    return path


@pytest.fixture
def app(tmp_path: Path) -> Path:
    return write_app(tmp_path / "timeline_app.py")


@pytest.fixture
def store(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'timeline.db'}"


def invoke(store: str, *args: str) -> Result:
    env = {"ORCHESTRATE_STORE": store, "COLUMNS": "160", "ORCHESTRATE_USER": "cli_user"}
    return CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)


def dead_ids(store: str) -> list[str]:
    return [r["run_id"] for r in json.loads(invoke(store, "dlq", "list", "--json").stdout)]


def write_dead_run(store: str, run_id: str, error: dict[str, object]) -> None:
    """A dead run whose step ``charge`` failed with ``error``, written straight into the store."""

    async def go() -> None:
        backend = open_store(store, create=True)
        await backend.open()
        try:
            await backend.create_run(
                RunRecord(
                    run_id=run_id,
                    workflow="billing",
                    version="1",
                    status=RunStatus.DEAD,
                    created_at=T0,
                    updated_at=T0 + 2,
                    error={"type": "StepFailedError", "name": "StepFailedError", "step": "charge", "message": "x"},
                )
            )
            step = StepRecord(
                run_id=run_id,
                step_key="charge",
                name="charge",
                status=StepStatus.FAILED,
                error=error,
                attempts=2,
                started_at=T0,
                finished_at=T0 + 1,
            )
            await backend.record_step(step, fence=None, now=T0 + 1)
            await backend.append_event(Event(run_id=run_id, kind="run_dead", at=T0 + 2, data={"error": error}))
        finally:
            await backend.close()

    asyncio.run(go())


# history times --------------------------------------------------------------------------------


def test_history_times_are_iso_8601_and_json_keeps_numbers(app: Path, store: str) -> None:
    assert invoke(store, "run", f"{app}:intake", "--input", '"wrist"', "--run-id", "gated").exit_code == 3
    (item,) = json.loads(invoke(store, "reviews", "list", "--json").stdout)
    assert invoke(store, "reviews", "approve", item["review_id"]).exit_code == 0

    out = invoke(store, "runs", "show", "gated").stdout

    iso = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z"
    assert re.search(rf"due_at={iso} \(\+1h00m\)", out), out
    assert re.search(rf"at={iso} \(\+[\d.]+m?s\)", out), out
    assert re.search(r"waited_seconds=[\d.]+m?s\b", out), out
    assert not re.search(r"\b1\d{9}\.\d+", out), out  # no raw POSIX seconds anywhere

    events = json.loads(invoke(store, "runs", "show", "gated", "--json").stdout)["events"]
    created = next(e for e in events if e["kind"] == "review_created")
    decided = next(e for e in events if e["kind"] == "review_decided")
    assert isinstance(created["data"]["due_at"], float) and isinstance(decided["data"]["at"], float)
    assert isinstance(created["at"], float)


# tracebacks of failed steps ---------------------------------------------------------------------


@pytest.mark.parametrize("command", [["runs", "show"], ["dlq", "show"]], ids=" ".join)
def test_a_failed_steps_traceback_is_printed_under_it(store: str, command: list[str]) -> None:
    error = {"type": "ValueError", "name": "ValueError", "message": "card declined", "traceback": TRACEBACK}
    write_dead_run(store, "with-tb", error)

    result = invoke(store, *command, "with-tb")

    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    charge = next(i for i, line in enumerate(lines) if "charge" in line and "failed" in line)
    shown = lines[charge + 1 : charge + 5]
    assert textwrap.dedent("\n".join(shown)) == TRACEBACK  # in full, never read as markup
    assert all(line.startswith("    ") for line in shown)  # indented under the step
    assert lines.index(next(line for line in lines if line.startswith("history"))) > charge + 4

    dumped = json.loads(invoke(store, *command, "with-tb", "--json").stdout)
    assert dumped["steps"][0]["error"]["traceback"] == TRACEBACK


def test_a_failed_step_without_a_traceback_shows_as_before(store: str) -> None:
    write_dead_run(store, "no-tb", {"type": "ValueError", "name": "ValueError", "message": "card declined"})

    result = invoke(store, "runs", "show", "no-tb")

    assert result.exit_code == 0, result.output
    assert "ValueError: card declined" in result.stdout
    assert "Traceback" not in result.stdout
    assert "traceback" not in json.loads(invoke(store, "dlq", "show", "no-tb", "--json").stdout)["steps"][0]["error"]


# replayed dead runs -----------------------------------------------------------------------------


def test_a_replayed_dead_run_leaves_the_dlq_and_says_by_which_run(app: Path, store: str) -> None:
    assert invoke(store, "run", f"{app}:billing", "--input", "5", "--run-id", "bill").exit_code == 1
    assert dead_ids(store) == ["bill"]

    still_broken = invoke(store, "dlq", "replay", "bill", "--from-step", "charge", "--app", f"{app}:billing")
    assert still_broken.exit_code == 1
    (failed_replay,) = dead_ids(store)  # the replay that died is in the queue; the original left it
    assert failed_replay != "bill"

    write_app(app, FIXED)
    fixed = invoke(store, "dlq", "replay", failed_replay, "--app", f"{app}:billing")
    assert fixed.exit_code == 0, fixed.output
    assert dead_ids(store) == []
    assert "the dead-letter queue is empty" in invoke(store, "dlq", "list").stdout

    detail = json.loads(invoke(store, "runs", "show", "bill", "--json").stdout)
    assert detail["run"]["status"] == "dead"  # its record stays what it was
    (replayed,) = [e for e in detail["events"] if e["kind"] == "replayed"]
    assert replayed["data"] == {"replay": failed_replay}
    shown = invoke(store, "dlq", "show", "bill").stdout
    assert f"replayed as  {failed_replay} (out of the dead-letter queue)" in shown
    assert f"as run {failed_replay} from step 'charge'" in shown

    async def go() -> list[RunRecord]:
        async with Client(store) as client:
            return await client.dead_letters()

    assert asyncio.run(go()) == []
