"""The code a command runs comes from the operator (``--app``, ``$ORCHESTRATE_APP``), never from the store.

Whoever can write a row must not make an operator's command execute a file: a run's
recorded ``target`` is shown as a hint and never imported.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from orchestrate.cli import cli
from orchestrate.cli._common import setup_logging

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

EVIL = """
import pathlib
pathlib.Path(MARKER).write_text("imported")
from orchestrate import workflow


@workflow(version="1")
async def approval(ctx, doc):
    return "evil"
"""


@pytest.fixture(autouse=True)
def _quiet_logs():
    yield
    setup_logging("warning")


@pytest.fixture
def app(tmp_path: Path) -> Path:
    path = tmp_path / "location_app.py"
    path.write_text(APP)
    return path


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "runs.db"


@pytest.fixture
def marker(tmp_path: Path) -> Path:
    return tmp_path / "evil_was_imported"


@pytest.fixture
def evil(tmp_path: Path, marker: Path) -> Path:
    path = tmp_path / "evil.py"
    path.write_text(EVIL.replace("MARKER", repr(str(marker))))
    return path


def invoke(db: Path, *args: str, env: dict[str, str] | None = None) -> Result:
    full = {"ORCHESTRATE_STORE": f"sqlite:///{db}", "COLUMNS": "200", "ORCHESTRATE_APP": "", **(env or {})}
    return CliRunner().invoke(cli, list(args), env=full, catch_exceptions=False)


def one_line_error(result: Result) -> str:
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and result.stdout == ""
    (line,) = result.stderr.splitlines()
    assert line.startswith("error: ")
    return line


def point_targets_at(db: Path, target: str) -> None:
    """Rewrite every run's recorded target, as anyone who can write a row could."""
    with sqlite3.connect(db) as conn:
        for run_id, options in conn.execute("SELECT run_id, options FROM orchestrate_runs").fetchall():
            changed = {**json.loads(options), "target": target}
            conn.execute("UPDATE orchestrate_runs SET options = ? WHERE run_id = ?", (json.dumps(changed), run_id))


def status(db: Path, run_id: str) -> str:
    return json.loads(invoke(db, "runs", "show", run_id, "--json").stdout)["run"]["status"]


def pending_review(db: Path) -> str:
    (item,) = json.loads(invoke(db, "reviews", "list", "--json").stdout)
    return str(item["review_id"])


def test_a_target_planted_in_the_store_is_never_imported(app: Path, db: Path, evil: Path, marker: Path) -> None:
    assert invoke(db, "run", f"{app}:approval", "--input", '"doc"', "--run-id", "ask").exit_code == 3
    assert invoke(db, "run", f"{app}:billing", "--input", "5", "--run-id", "bill").exit_code == 1
    assert invoke(db, "run", f"{app}:intake", "--input", '"x"', "--run-id", "gated").exit_code == 3
    point_targets_at(db, f"{evil}:approval")

    resumed = one_line_error(invoke(db, "runs", "resume", "ask"))
    assert resumed == (
        "error: run ask needs workflow 'approval' version '1': pass --app path/to/file.py:NAME, module:NAME "
        f"or FILE.yaml (or set $ORCHESTRATE_APP); it was started with --app '{evil}:approval'"
    )
    signalled = one_line_error(invoke(db, "signal", "ask", "approve", "--value", "true", "--resume"))
    assert "needs workflow 'approval' version '1'" in signalled
    assert status(db, "ask") == "waiting"  # refused before anything was delivered
    replayed = one_line_error(invoke(db, "dlq", "replay", "bill"))
    assert "run bill needs workflow 'billing' version '1': pass --app" in replayed
    approved = invoke(db, "reviews", "approve", pending_review(db), "--resume")
    assert approved.exit_code == 0, approved.output
    assert "run gated is not resumed here (no --app names the code of workflow 'intake' version '1')" in approved.stdout
    assert not marker.exists()

    # The operator's code runs; the planted file still does not.
    signalled_here = invoke(db, "signal", "ask", "approve", "--value", "true", "--resume", "--app", f"{app}:approval")
    assert signalled_here.exit_code == 0, signalled_here.output
    assert invoke(db, "dlq", "replay", "bill", "--app", f"{app}:billing").exit_code == 1  # still broken: ran again
    assert invoke(db, "runs", "resume", "gated", "--app", f"{app}:intake").exit_code == 0
    assert [status(db, r) for r in ("ask", "gated")] == ["succeeded", "succeeded"]
    assert not marker.exists()


def test_the_recorded_target_is_shown_quoted_so_it_cannot_drive_the_terminal(app: Path, db: Path) -> None:
    assert invoke(db, "run", f"{app}:approval", "--input", '"doc"', "--run-id", "ask").exit_code == 3
    point_targets_at(db, "x.py:approval\x1b]0;owned\x07\x1b[2J\nerror: fake")

    line = one_line_error(invoke(db, "runs", "resume", "ask"))

    assert "\x1b" not in line and "\x07" not in line
    assert line.endswith(r"it was started with --app 'x.py:approval\x1b]0;owned\x07\x1b[2J\nerror: fake'")


def test_the_environment_names_the_code_and_the_runs_workflow_is_picked(app: Path, db: Path) -> None:
    assert invoke(db, "run", f"{app}:approval", "--input", '"doc"', "--run-id", "ask").exit_code == 3
    apps = {"ORCHESTRATE_APP": f"{app}:billing {app}:approval"}

    sent = invoke(db, "signal", "ask", "approve", "--value", "true", "--resume", env=apps)

    assert sent.exit_code == 0, sent.output
    assert status(db, "ask") == "succeeded"


def test_apps_of_other_workflows_are_refused_by_name(app: Path, db: Path) -> None:
    assert invoke(db, "run", f"{app}:approval", "--input", '"doc"', "--run-id", "ask").exit_code == 3

    line = one_line_error(invoke(db, "runs", "resume", "ask", "--app", f"{app}:billing", "--app", f"{app}:intake"))

    assert line == "error: no --app is workflow 'approval' of run 'ask' (they are: billing, intake)"


def test_the_hints_printed_for_a_stopped_run_carry_the_operators_app(app: Path, db: Path) -> None:
    parked = invoke(db, "run", f"{app}:approval", "--input", '"doc"', "--run-id", "ask")
    dead = invoke(db, "run", f"{app}:billing", "--input", "5", "--run-id", "bill")

    assert f"orchestrate signal ask approve --value JSON --resume --app {app}:approval" in parked.stdout
    assert f"orchestrate dlq replay bill --from-step charge --app {app}:billing" in dead.stdout


def test_a_yaml_workflow_is_named_by_its_file(db: Path, tmp_path: Path) -> None:
    (tmp_path / "yaml_billing_steps.py").write_text('def charge(amount):\n    raise ValueError("card declined")\n')
    flow = tmp_path / "billing.yaml"
    flow.write_text(
        'name: ybilling\nversion: "1"\ncomponents:\n  charge: yaml_billing_steps:charge\n'
        "steps:\n  - step: charge\n    model: charge\n"
    )
    assert invoke(db, "run", str(flow), "--input", "5", "--run-id", "yb").exit_code == 1

    assert "needs workflow 'ybilling' version '1'" in one_line_error(invoke(db, "dlq", "replay", "yb"))
    replayed = invoke(db, "dlq", "replay", "yb", "--app", str(flow))
    assert replayed.exit_code == 1, replayed.output  # it ran again, still broken
    assert f"--from-step charge --app {flow}" in replayed.stdout
