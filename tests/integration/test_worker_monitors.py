"""``orchestrate worker --monitors``: two real worker processes evaluate the same monitors from
one store (SQLite, PostgreSQL) and the store keeps one alert per incident; the alert's
action diverts the workers' later runs."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from orchestrate import Client
from orchestrate.cli.alerts import load_monitors
from orchestrate.cli.main import cli
from orchestrate.cli.yaml_commands import load_target
from orchestrate.errors import InvalidInputError
from orchestrate.types import RunStatus
from tests.postgres import in_schema

APP = """
from orchestrate import Fallback, Step, Workflow
from orchestrate.observe.monitors import Monitor, Threshold


def identity(application):
    return application


def fraud_check(application):
    raise TimeoutError("the fraud model did not answer")


def decide(check):
    return check["decision"]


loans = Workflow(
    "loans",
    [
        Step("identity", identity),
        Step("fraud_check", fraud_check, fallback=Fallback.value({"decision": "manual", "confidence": 0.0})),
        Step("decide", decide),
    ],
    version="1",
)

MONITORS = [Monitor("fraud_check", "fallback_rate", Threshold(above=0.5), window=5, action="review")]
NOT_MONITORS = [42]
"""

RUNS = 12


def _entry_point() -> str:
    found = shutil.which("orchestrate", path=os.path.dirname(sys.executable)) or shutil.which("orchestrate")
    if found is None:
        pytest.fail("the `orchestrate` command is not installed: pip install -e .")
    return found


@pytest.fixture(params=["sqlite", "postgres"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'loans.db'}"
    else:
        yield from in_schema()


def _wait(condition: str, check: object, workers: list[subprocess.Popen[str]], deadline: float) -> None:
    while not check():  # type: ignore[operator]
        assert all(w.poll() is None for w in workers), [w.communicate() for w in workers]
        assert time.monotonic() < deadline, f"never: {condition}"
        time.sleep(0.1)


def test_two_workers_write_one_alert_per_incident_and_divert_later_runs(store_url: str, tmp_path: Path) -> None:
    app = tmp_path / "loans_app.py"
    app.write_text(textwrap.dedent(APP))
    target = f"{app}:loans"
    command = [_entry_point(), "worker", "--store", store_url, "--app", target, "--monitors", f"{app}:MONITORS"]
    command += ["--monitor-interval", "0.1", "--poll", "0.05", "--log-level", "warning"]
    workers = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in "ab"]

    async def start(n: int) -> list[str]:
        async with Client(store_url, workflows=[load_target(target)]) as client:
            return [await client.start("loans", i) for i in range(n)]

    async def statuses() -> list[RunStatus]:
        async with Client(store_url) as client:
            return [r.status for r in await client.list(limit=100)]

    async def alerts() -> list[object]:
        async with Client(store_url) as client:
            return list(await client.alerts())

    async def status_of(run_id: str) -> RunStatus:
        async with Client(store_url) as client:
            return (await client.get(run_id)).status

    def settled() -> bool:
        found = asyncio.run(statuses())
        return len(found) == RUNS and all(s.terminal or s is RunStatus.WAITING for s in found)

    try:
        deadline = time.monotonic() + 90
        asyncio.run(start(RUNS))
        _wait("an alert fired", lambda: asyncio.run(alerts()), workers, deadline)
        _wait("the runs ended or parked", settled, workers, deadline)
        # Both evaluators make more passes over the same records, and the workers' view of
        # the diverting alerts (read at most every 2 s) catches up.
        time.sleep(2.5)
        # The alert's action: a run whose fraud check comes after it waits for a person.
        (late,) = asyncio.run(start(1))
        _wait("a later run parked", lambda: asyncio.run(status_of(late)) is RunStatus.WAITING, workers, deadline)
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.send_signal(signal.SIGTERM)
        outputs = []
        for worker in workers:
            try:
                outputs.append(worker.communicate(timeout=30))
            except subprocess.TimeoutExpired:
                worker.kill()
                outputs.append(worker.communicate())

    async def read() -> tuple[list[object], list[list[str]]]:
        async with Client(store_url) as client:
            parked = await client.list(status=RunStatus.WAITING, limit=100)
            return list(await client.alerts()), [
                [e.kind for e in (await client.detail(r.run_id)).events] for r in parked
            ]

    found, parked = asyncio.run(read())
    (alert,) = found
    assert alert.state == "firing" and alert.action == "review" and alert.step == "fraud_check"  # type: ignore[attr-defined]
    assert parked and all("step_diverted" in kinds and "review_created" in kinds for kinds in parked)
    for _, stderr in outputs:
        assert "worker monitors: fraud_check.fallback_rate" in stderr
    logged = [
        json.loads(line)
        for _, stderr in outputs
        for line in stderr.splitlines()
        if line.startswith("{") and '"monitor_alert"' in line
    ]
    assert len(logged) == 1 and logged[0]["alert_id"] == alert.alert_id  # type: ignore[attr-defined]


def test_a_monitors_target_that_holds_no_monitor_is_one_line(tmp_path: Path) -> None:
    app = tmp_path / "loans_app.py"
    app.write_text(textwrap.dedent(APP))
    assert [m.name for m in load_monitors([f"{app}:MONITORS"])] == ["fraud_check.fallback_rate"]
    with pytest.raises(InvalidInputError, match="used twice: fraud_check.fallback_rate"):
        load_monitors([f"{app}:MONITORS", f"{app}:MONITORS"])
    url = f"sqlite:///{tmp_path / 'loans.db'}"
    for name, says in (("NOT_MONITORS", "holds a int, not a monitor"), ("MISSING", "has no attribute 'MISSING'")):
        result = CliRunner().invoke(
            cli, ["worker", "--store", url, "--app", f"{app}:loans", "--monitors", f"{app}:{name}", "--until-idle"]
        )
        assert result.exit_code == 2, result.output
        assert says in result.output and "Traceback" not in result.output
