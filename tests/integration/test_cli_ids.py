"""Run and review ids by unique prefix, in every command that takes one and in ``Client``."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from orchestrate import Client
from orchestrate.cli import cli
from orchestrate.errors import InvalidInputError, ReviewNotFoundError, RunNotFoundError, WorkflowNotFoundError

APP = """
from orchestrate import FixedRetry, Step, Workflow, workflow
from orchestrate.review import HumanReviewGate


def charge(amount):
    raise ValueError("card declined")


billing = Workflow("billing", [Step("charge", charge, retry=FixedRetry(1, delay=0.01))], version="1")


@workflow(version="1")
async def approval(ctx, doc):
    return {"doc": doc, "decision": await ctx.wait("approve")}


intake = Workflow(
    "intake",
    [Step("summarise", lambda form: {"summary": form}, gate=HumanReviewGate(timeout=3600)), Step("done", str)],
    version="1",
)
"""


@pytest.fixture
def app(tmp_path: Path) -> Path:
    path = tmp_path / "ids_app.py"
    path.write_text(APP)
    return path


@pytest.fixture
def store(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'ids.db'}"


def invoke(store: str, *args: str) -> Result:
    env = {"ORCHESTRATE_STORE": store, "COLUMNS": "200", "ORCHESTRATE_USER": "cli_user"}
    return CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)


def one_line_error(result: Result) -> str:
    assert result.exit_code == 2, result.output
    assert result.stdout == "" and "Traceback" not in result.output
    (line,) = result.stderr.splitlines()
    assert line.startswith("error: ")
    return line


def review_ids(store: str) -> list[str]:
    listed = invoke(store, "reviews", "list", "--status", "all", "--json")
    return sorted(item["review_id"] for item in json.loads(listed.stdout))


def unique_prefix(full: str, others: list[str]) -> str:
    """The shortest prefix of ``full`` that no other id starts with."""
    return next(full[:n] for n in range(1, len(full) + 1) if not any(o.startswith(full[:n]) for o in others))


def test_runs_show_cancel_and_resume_take_a_unique_prefix(app: Path, store: str) -> None:
    for run_id in ("order-100", "order-101", "order-200"):
        assert invoke(store, "run", f"{app}:approval", "--detach", "--run-id", run_id).exit_code == 0

    shown = invoke(store, "runs", "show", "order-2")
    assert shown.exit_code == 0, shown.output
    assert "order-200" in shown.stdout
    assert json.loads(invoke(store, "runs", "show", "order-2", "--json").stdout)["run"]["run_id"] == "order-200"

    signalled = invoke(store, "signal", "order-10", "approve")
    assert "ambiguous" in one_line_error(signalled)
    signalled = invoke(store, "signal", "order-101", "approve", "--value", "true")
    assert signalled.exit_code == 0 and "delivered to run order-101" in signalled.stdout
    resumed = invoke(store, "runs", "resume", "order-101", "--app", f"{app}:approval")
    assert resumed.exit_code == 0, resumed.output

    cancelled = invoke(store, "runs", "cancel", "order-2")
    assert cancelled.exit_code == 0 and cancelled.stdout.strip() == "run order-200 is cancelled"
    assert one_line_error(invoke(store, "runs", "resume", "order-2")).endswith("there is nothing to resume")


def test_an_ambiguous_prefix_lists_a_few_candidates_and_an_unknown_one_says_so(app: Path, store: str) -> None:
    for n in range(6):
        invoke(store, "run", f"{app}:approval", "--detach", "--run-id", f"job-{n}")

    line = one_line_error(invoke(store, "runs", "show", "job-"))
    assert line == "error: run id 'job-' is ambiguous: job-0, job-1, job-2 and more start with it; type more of the id"
    assert one_line_error(invoke(store, "runs", "show", "jobs")) == "error: run 'jobs' does not exist"
    # LIKE's wildcards are taken literally.
    assert one_line_error(invoke(store, "runs", "show", "job_")) == "error: run 'job_' does not exist"
    assert one_line_error(invoke(store, "runs", "show", "%")) == "error: run '%' does not exist"
    assert invoke(store, "runs", "cancel", "job-5").exit_code == 0


def test_signal_with_resume_and_dlq_commands_take_a_prefix(app: Path, store: str) -> None:
    assert invoke(store, "run", f"{app}:billing", "--input", "5", "--run-id", "bill-7f3a").exit_code == 1
    invoke(store, "run", f"{app}:approval", "--detach", "--run-id", "ask-1234")

    sent = invoke(store, "signal", "ask", "approve", "--value", '"ok"', "--resume", "--app", f"{app}:approval")
    assert sent.exit_code == 0, sent.output
    assert "signal 'approve' delivered to run ask-1234" in sent.stdout

    shown = invoke(store, "dlq", "show", "bill")
    assert shown.exit_code == 0 and "bill-7f3a" in shown.stdout
    replayed = invoke(store, "dlq", "replay", "bill-7", "--app", f"{app}:billing")
    assert replayed.exit_code == 1  # still broken; it ran again
    assert "replay of run bill-7f3a is run " in replayed.stdout


def test_review_commands_take_a_prefix(app: Path, store: str) -> None:
    for patient in ("P-1", "P-2"):
        assert invoke(store, "run", f"{app}:intake", "--input", json.dumps(patient)).exit_code == 3
    first, second = review_ids(store)
    line = one_line_error(invoke(store, "reviews", "show", "rv-"))
    assert "review id 'rv-' is ambiguous" in line and first in line and second in line
    assert one_line_error(invoke(store, "reviews", "approve", "rv-zz")) == "error: review 'rv-zz' does not exist"

    mine = unique_prefix(first, [second])
    shown = invoke(store, "reviews", "show", mine)
    assert shown.exit_code == 0 and first in shown.stdout
    approved = invoke(store, "reviews", "approve", mine, "--resume")
    assert approved.exit_code == 0, approved.output
    assert f"approved review {first}: approved" in approved.stdout

    other = unique_prefix(second, [first])
    edited = invoke(store, "reviews", "edit", other, "--payload", '{"summary": "x"}')
    assert edited.exit_code == 0 and f"edited and approved review {second}" in edited.stdout
    again = invoke(store, "reviews", "reject", other, "--reason", "late")
    assert "already approved" in one_line_error(again)


def test_client_methods_take_a_unique_prefix(app: Path, store: str) -> None:
    invoke(store, "run", f"{app}:approval", "--detach", "--run-id", "alpha-1")
    invoke(store, "run", f"{app}:approval", "--detach", "--run-id", "alpine-2")
    invoke(store, "run", f"{app}:intake", "--input", '"P-3"', "--run-id", "gated-1")

    async def go() -> None:
        async with Client(store) as client:
            assert (await client.get("alpha-1")).run_id == "alpha-1"  # a whole id: its own fast path
            assert (await client.get("alpi")).run_id == "alpine-2"
            with pytest.raises(InvalidInputError, match=r"run id 'alp' is ambiguous: alpha-1, alpine-2 start"):
                await client.get("alp")
            with pytest.raises(RunNotFoundError, match="run 'beta' does not exist"):
                await client.detail("beta")
            assert (await client.detail("gat")).run.run_id == "gated-1"
            (item,) = await client.list_reviews(run_id="gated")
            assert (await client.get_review(item.review_id[:8])).review_id == item.review_id
            with pytest.raises(ReviewNotFoundError):
                await client.get_review("rv-nope")
            await client.approve(item.review_id[:8], by="ann")
            await client.signal("alpi", "approve", True)
            with pytest.raises(WorkflowNotFoundError, match="no workflow named 'approval'"):
                await client.resume("alpi")  # found, but its workflow is not registered here
            assert (await client.cancel("alpha-1")).status.value == "cancelled"

    asyncio.run(go())
