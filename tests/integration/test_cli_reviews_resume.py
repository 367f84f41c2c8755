"""What a run parked on a review tells people to type, and ``reviews … --resume`` on runs from elsewhere."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from orchestrate import Client
from orchestrate.cli import cli
from orchestrate.cli.loading import load_workflow

APP = """
from orchestrate import Step, Workflow, workflow
from orchestrate.review import HumanReviewGate

intake = Workflow(
    "intake",
    [
        Step("summarise", lambda form: {"summary": form}, gate=HumanReviewGate(roles=["doctor"], timeout=3600)),
        Step("file", lambda s: "filed " + s["summary"]),
    ],
    version="1",
)


@workflow(version="1")
async def approval(ctx, doc):
    return await ctx.wait("approve")
"""


@pytest.fixture
def app(tmp_path: Path) -> Path:
    path = tmp_path / "gated_app.py"
    path.write_text(APP)
    return path


@pytest.fixture
def store(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'reviews.db'}"


def invoke(store: str, *args: str) -> Result:
    env = {"ORCHESTRATE_STORE": store, "COLUMNS": "200", "ORCHESTRATE_USER": "cli_user"}
    return CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)


def pending_review(store: str) -> str:
    (item,) = json.loads(invoke(store, "reviews", "list", "--json").stdout)
    return str(item["review_id"])


def status(store: str, run_id: str) -> str:
    return str(json.loads(invoke(store, "runs", "show", run_id, "--json").stdout)["run"]["status"])


def start_from_python(store: str, app: Path, run_id: str) -> None:
    """Drive a run in this process, through ``Client``: no target is recorded for the CLI."""
    wf = load_workflow(f"{app}:intake")

    async def go() -> None:
        async with Client(store, workflows=[wf]) as client:
            await client.run(wf, "fracture", run_id=run_id)

    asyncio.run(go())


def test_a_run_parked_on_a_review_names_the_reviews_commands(app: Path, store: str) -> None:
    parked = invoke(store, "run", f"{app}:intake", "--input", '"fracture"', "--run-id", "gated")

    assert parked.exit_code == 3, parked.output
    review_id = pending_review(store)
    out = parked.stdout
    assert f"for review {review_id} of step 'summarise'" in out  # the header
    assert (
        f"run gated is waiting for review {review_id}; decide with: "
        f"orchestrate reviews approve {review_id} --role doctor --resume --app {app}:intake, or: "
        f"orchestrate reviews reject {review_id} --role doctor --reason TEXT --resume --app {app}:intake"
    ) in out
    assert "orchestrate signal" not in out
    assert (
        f"orchestrate reviews approve {review_id}"
        in invoke(store, "runs", "resume", "gated", "--app", f"{app}:intake").stdout
    )

    # The hint works as printed.
    approved = invoke(store, "reviews", "approve", review_id, "--role", "doctor", "--resume", "--app", f"{app}:intake")
    assert approved.exit_code == 0, approved.output
    assert status(store, "gated") == "succeeded"


def test_a_run_waiting_for_a_plain_signal_still_names_the_signal_command(app: Path, store: str) -> None:
    parked = invoke(store, "run", f"{app}:approval", "--input", '"doc"', "--run-id", "ask")

    assert parked.exit_code == 3
    assert "continue it with: orchestrate signal ask approve --value JSON --resume" in parked.stdout


def test_approve_with_resume_on_a_run_started_from_python_leaves_it_to_a_worker(app: Path, store: str) -> None:
    start_from_python(store, app, "from-python")
    review_id = pending_review(store)

    approved = invoke(store, "reviews", "approve", review_id, "--role", "doctor", "--resume")

    assert approved.exit_code == 0, approved.output
    first, second = approved.stdout.splitlines()
    assert first == f"approved review {review_id}: approved; run from-python is due to resume"
    assert second.startswith("run from-python is not resumed here (no --app names the code of workflow 'intake'")
    assert "a worker serving workflow 'intake' will resume it" in second
    assert "orchestrate runs resume from-python --app path/to/file.py:NAME" in second
    assert approved.stderr == ""
    assert json.loads(invoke(store, "reviews", "show", review_id, "--json").stdout)["status"] == "approved"
    assert status(store, "from-python") == "waiting"  # due: the next worker takes it

    worked = invoke(store, "worker", "--app", f"{app}:intake", "--until-idle", "--log-level", "error")
    assert worked.exit_code == 0, worked.output
    assert status(store, "from-python") == "succeeded"


def test_reject_with_resume_when_the_recorded_code_is_gone_leaves_it_to_a_worker(
    app: Path, store: str, tmp_path: Path
) -> None:
    moved = tmp_path / "moved_app.py"
    assert invoke(store, "run", f"{app}:intake", "--input", '"x"', "--run-id", "moved").exit_code == 3
    app.rename(moved)

    rejected = invoke(
        store, "reviews", "reject", pending_review(store), "--role", "doctor", "--reason", "no", "--resume"
    )

    assert rejected.exit_code == 0, rejected.output
    note = rejected.stdout.splitlines()[-1]
    assert note.startswith("run moved is not resumed here (no --app names the code") and "will resume it" in note
    assert status(store, "moved") == "waiting"
    assert invoke(store, "runs", "resume", "moved", "--app", f"{moved}:intake").exit_code == 1  # rejected: failed


def test_resume_with_an_explicit_app_that_does_not_load_is_still_an_error(app: Path, store: str) -> None:
    start_from_python(store, app, "explicit")

    result = invoke(
        store, "reviews", "approve", pending_review(store), "--role", "doctor", "--resume", "--app", "x.py:y"
    )

    assert result.exit_code == 2
    assert result.stderr.startswith("error: no such file") and len(result.stderr.splitlines()) == 1
