"""``orchestrate stats`` and ``orchestrate alerts`` on a SQLite store."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from click.testing import CliRunner

from orchestrate import Engine, Fallback, Step, Workflow
from orchestrate.cli.main import cli
from orchestrate.observe.alerts import AlertEvaluator
from orchestrate.observe.monitors import Monitor, Threshold
from orchestrate.store import open_store


def fraud_check(application: int) -> dict[str, object]:
    if 40 <= application < 50:
        raise TimeoutError("the fraud model did not answer")
    return {"decision": "approve", "confidence": 0.9}


async def _record(url: str) -> None:
    wf = Workflow("loans", [Step("fraud_check", fraud_check, fallback=Fallback.value({"decision": "manual"}))])
    async with Engine(open_store(url), workflows=[wf]) as engine:
        for application in range(60):
            await engine.run(wf, application)
        monitor = Monitor("fraud_check", "fallback_rate", Threshold(above=0.5), window=10, action="review")
        await AlertEvaluator(engine.store, [monitor], sinks=[]).evaluate()


def test_stats_and_alerts_commands(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'q.db'}"
    asyncio.run(_record(url))
    runner = CliRunner()
    shown = runner.invoke(cli, ["stats", "fraud_check", "--store", url, "--window", "10", "--json"])
    assert shown.exit_code == 0, shown.output
    stats = json.loads(shown.output)
    assert stats["overall"]["executions"] == 60
    assert [w["fallback_rate"] for w in stats["windows"]] == [0, 0, 0, 0, 1, 0]
    assert stats["windows"][0]["confidence_mean"] == 0.9
    table = runner.invoke(cli, ["stats", "fraud_check", "--store", url, "--window", "10"])
    assert "fallback rate" in table.output and "▁▁▁▁█▁" in table.output
    listed = json.loads(runner.invoke(cli, ["alerts", "list", "--store", url, "--json"]).output)
    assert [(a["alert_id"], a["state"]) for a in listed] == [("loans:fraud_check.fallback_rate#1", "resolved")]
    acked = runner.invoke(cli, ["alerts", "ack", listed[0]["alert_id"], "--by", "ana", "--store", url])
    assert acked.exit_code == 0 and "acknowledged" in acked.output
    missing = runner.invoke(cli, ["alerts", "ack", "nope", "--by", "ana", "--store", url])
    assert missing.exit_code == 2 and "no alert 'nope'" in missing.output
