"""A YAML file's ``monitors:`` drive alerts and actions through ``orchestrate run`` and
``orchestrate worker``, on SQLite and PostgreSQL, as ``--monitors`` does for Python apps."""

from __future__ import annotations

import asyncio
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from orchestrate import Client
from orchestrate.cli.alerts import load_monitors
from orchestrate.cli.main import cli
from orchestrate.observe.monitors import Monitor, Threshold
from orchestrate.types import RunStatus
from tests.postgres import in_schema

STEPS = """
def fraud_check(application):
    raise TimeoutError("the fraud model did not answer")


def decide(check):
    return check["decision"]
"""

FLOW = """
name: loans
version: "1"
steps:
  - step: fraud_check
    call: fraud_steps:fraud_check
    fallback: {value: {decision: manual}}
  - step: decide
    call: fraud_steps:decide
monitors:
  - step: fraud_check
    metric: fallback_rate
    threshold: {above: 0.5}
    window: 3
    action: review
"""


@pytest.fixture(params=["sqlite", "postgres"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'loans.db'}"
    else:
        yield from in_schema()


@pytest.fixture
def flow(tmp_path: Path) -> Path:
    (tmp_path / "fraud_steps.py").write_text(textwrap.dedent(STEPS))
    path = tmp_path / "loans.yaml"
    path.write_text(textwrap.dedent(FLOW))
    return path


def invoke(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), env={"COLUMNS": "200"}, catch_exceptions=False)


def alerts(store_url: str) -> list[tuple[str, str]]:
    async def read() -> list[tuple[str, str]]:
        async with Client(store_url) as client:
            return [(a.monitor, str(a.state)) for a in await client.alerts()]

    return asyncio.run(read())


def test_run_evaluates_the_files_monitors_and_takes_their_action(store_url: str, flow: Path) -> None:
    for _ in range(2):
        assert invoke("run", str(flow), "--store", store_url, "--input", "1").exit_code == 0
    assert alerts(store_url) == []  # a window is three executions
    assert invoke("run", str(flow), "--store", store_url, "--input", "1").exit_code == 0
    [(monitor, state)] = alerts(store_url)
    assert monitor == "fraud_check.fallback_rate" and "firing" in state
    # The alert holds: the next run's fraud check goes to people (exit 3: waiting).
    parked = invoke("run", str(flow), "--store", store_url, "--input", "1")
    assert parked.exit_code == 3, parked.output


def test_a_worker_serving_the_file_evaluates_its_monitors(store_url: str, flow: Path) -> None:
    for _ in range(3):
        assert invoke("run", str(flow), "--detach", "--store", store_url, "--input", "1").exit_code == 0
    worked = invoke("worker", "--app", str(flow), "--until-idle", "--store", store_url, "--monitor-interval", "0.1")
    assert worked.exit_code == 0, worked.output
    assert "worker monitors: fraud_check.fallback_rate" in worked.output
    [(monitor, _)] = alerts(store_url)
    assert monitor == "fraud_check.fallback_rate"

    async def statuses() -> list[RunStatus]:
        async with Client(store_url) as client:
            return [r.status for r in await client.list(limit=10)]

    assert asyncio.run(statuses()) == [RunStatus.SUCCEEDED] * 3


def test_monitors_option_takes_a_yaml_file(flow: Path) -> None:
    assert load_monitors([str(flow)]) == [
        Monitor("fraud_check", "fallback_rate", Threshold(above=0.5), window=3, workflow="loans", action="review")
    ]


def test_the_loans_example_runs_to_its_review_and_declares_five_monitors(tmp_path: Path) -> None:
    example = Path(__file__).resolve().parents[2] / "examples" / "yaml" / "loans.yaml"
    application = '{"name": "Ada", "id": "A-1", "amount": 20000, "documents": [{"monthly": 6000}, {"monthly": 6500}]}'
    result = invoke("run", str(example), "--store", f"sqlite:///{tmp_path / 'runs.db'}", "--input", application)
    assert result.exit_code == 3, result.output  # waiting for the credit officer
    assert "credit_officer" in result.output
    assert [m.name for m in load_monitors([str(example)])] == [
        "fraud_check.fallback_rate",
        "fraud_check.latency_p95",
        "score.confidence",
        "score.score.drift",
        "loans.corrected_rate",
    ]
