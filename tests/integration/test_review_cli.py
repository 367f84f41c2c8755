"""``orchestrate reviews …`` through click's runner, on a SQLite store in ``tmp_path``."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from orchestrate.cli import cli
from orchestrate.review import APPROVERS

APP = """
from orchestrate import Step, Workflow
from orchestrate.review import HumanReviewGate

intake = Workflow(
    "intake",
    [
        Step(
            "summarise",
            lambda form: {"patient": form["patient"], "summary": "fracture, left wrist"},
            gate=HumanReviewGate(
                required_approvals=["medical_reviewer", "quality_assurance"], priority="high", timeout=3600
            ),
        ),
        Step("update_record", lambda s: "EHR <- " + s["patient"] + ": " + s["summary"]),
    ],
    version="1",
)
"""


@pytest.fixture(autouse=True)
def _no_approval_checks_from_elsewhere() -> Iterator[None]:
    # Approval checks are process-wide per role: an example imported by another test may
    # have registered one for a role used here.
    saved = dict(APPROVERS)
    APPROVERS.clear()
    yield
    APPROVERS.clear()
    APPROVERS.update(saved)


@pytest.fixture
def app(tmp_path: Path) -> str:
    path = tmp_path / "intake_app.py"
    path.write_text(APP)
    return f"{path}:intake"


@pytest.fixture
def store(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'cli.db'}"


def invoke(store: str, *args: str) -> Result:
    runner = CliRunner()
    env = {"ORCHESTRATE_STORE": store, "COLUMNS": "200", "ORCHESTRATE_USER": "cli_user"}
    return runner.invoke(cli, list(args), env=env, catch_exceptions=False)


def _park(store: str, app: str, patient: str) -> str:
    result = invoke(store, "run", app, "--input", json.dumps({"patient": patient}))
    assert result.exit_code == 3, result.output  # waiting for people
    listed = invoke(store, "reviews", "list", "--json")
    return next(i["review_id"] for i in json.loads(listed.stdout) if i["payload"]["patient"] == patient)


def test_list_show_approve_and_edit_to_the_end(store: str, app: str) -> None:
    review_id = _park(store, app, "P-7")

    table = invoke(store, "reviews", "list", "--role", "medical_reviewer")
    assert table.exit_code == 0
    assert review_id in table.stdout and "high" in table.stdout
    assert "medical_reviewer + quality_assurance" in table.stdout and "0/2" in table.stdout
    nobody = invoke(store, "reviews", "list", "--role", "intern")
    assert nobody.exit_code == 0 and "no pending review items for role intern" in nobody.stdout

    shown = invoke(store, "reviews", "show", review_id)
    assert shown.exit_code == 0
    assert '"summary": "fracture, left wrist"' in shown.stdout and "then fail" in shown.stdout

    refused = invoke(store, "reviews", "approve", review_id, "--role", "intern")
    assert refused.exit_code == 2 and "role 'intern' may not decide" in refused.stderr

    first = invoke(store, "reviews", "approve", review_id, "--role", "medical_reviewer", "--by", "dr_okafor")
    assert first.exit_code == 0, first.output
    assert "(1/2); waiting for quality_assurance" in first.stdout

    corrected = json.dumps({"patient": "P-7", "summary": "fracture, right wrist"})
    edited = invoke(
        store,
        "reviews",
        "edit",
        review_id,
        "--payload",
        corrected,
        "--role",
        "quality_assurance",
        "--resume",
        "--app",
        app,
    )
    assert edited.exit_code == 0, edited.output  # the run was driven here and succeeded
    assert "edited and approved review" in edited.stdout and "succeeded" in edited.stdout

    data = json.loads(invoke(store, "reviews", "show", review_id, "--json").stdout)
    assert data["status"] == "approved"
    assert [(a["by"], a["role"]) for a in data["approvals"]] == [
        ("dr_okafor", "medical_reviewer"),
        ("cli_user", "quality_assurance"),
    ]
    assert data["approvals"][1]["changes"] == {
        "summary": {"before": "fracture, left wrist", "after": "fracture, right wrist"}
    }
    run = json.loads(invoke(store, "runs", "show", data["run_id"], "--json").stdout)
    assert run["run"]["output"] == "EHR <- P-7: fracture, right wrist"

    again = invoke(store, "reviews", "reject", review_id, "--reason", "late", "--role", "quality_assurance")
    assert again.exit_code == 2 and "already approved" in again.stderr


def test_reject_with_a_reason_and_stats(store: str, app: str) -> None:
    review_id = _park(store, app, "P-8")
    missing = invoke(store, "reviews", "reject", review_id, "--role", "medical_reviewer")
    assert missing.exit_code == 2 and "--reason" in missing.stderr
    rejected = invoke(store, "reviews", "reject", review_id, "--role", "medical_reviewer", "--reason", "wrong patient")
    assert rejected.exit_code == 0 and "rejected review" in rejected.stdout

    everything = json.loads(invoke(store, "reviews", "list", "--status", "all", "--json").stdout)
    assert [(i["status"], i["decision"]["reason"]) for i in everything] == [("rejected", "wrong patient")]
    stats = json.loads(invoke(store, "reviews", "stats", "--json").stdout)
    assert stats["by_status"] == {"rejected": 1} and stats["decisions"] == 1
    text = invoke(store, "reviews", "stats")
    assert "escalation rate  0.0% of 1 gate(s)" in text.stdout


def test_unknown_items_and_bad_payloads(store: str, app: str) -> None:
    review_id = _park(store, app, "P-9")
    unknown = invoke(store, "reviews", "show", "rv-nope")
    assert unknown.exit_code == 2 and "review 'rv-nope' does not exist" in unknown.stderr
    bad = invoke(store, "reviews", "edit", review_id, "--payload", "{not json", "--role", "medical_reviewer")
    assert bad.exit_code == 2
