"""Review gates across processes: parked runs outlive their process, races have one winner,
and an SLA escalation fires exactly once from the durable timer, across worker restarts."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from orchestrate import Client, RunStatus
from orchestrate.review import ReviewStatus

APP = Path(__file__).with_name("review_app.py")


def _spawn(url: str, workdir: Path, *args: str, sla: float = 3600) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(APP), url, str(workdir), *args],
        env={**os.environ, "REVIEW_SLA": str(sla)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _finish(proc: subprocess.Popen[str], limit: float = 120) -> str:
    out, err = proc.communicate(timeout=limit)
    assert proc.returncode == 0, err
    return out.strip()


def _cli(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "orchestrate.cli", *args, "--store", url],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "ORCHESTRATE_USER": "cli_reviewer"},
        check=False,
    )


async def _client_call(url: str, method: str, *args: object, **kwargs: object) -> object:
    async with Client(url) as client:
        return await getattr(client, method)(*args, **kwargs)


def call(url: str, method: str, *args: object, **kwargs: object) -> object:
    return asyncio.run(_client_call(url, method, *args, **kwargs))


def _ledger(workdir: Path) -> list[str]:
    path = workdir / "ledger"
    return [line.split()[0] for line in path.read_text().splitlines()] if path.exists() else []


def test_a_waiting_run_is_approved_by_a_new_process_and_finished_by_a_worker(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/reviews.db"
    assert _finish(_spawn(url, tmp_path, "start", "run-1")) == "waiting"  # the process has exited

    run = call(url, "get", "run-1")
    assert run.status is RunStatus.WAITING and run.owner is None
    (item,) = call(url, "list_reviews", run_id="run-1")
    first = _cli(url, "reviews", "approve", item.review_id, "--role", "medical_reviewer")
    assert first.returncode == 0, first.stderr
    second = _cli(url, "reviews", "approve", item.review_id, "--role", "quality_assurance", "--by", "qa_lee")
    assert second.returncode == 0, second.stderr
    assert "run run-1 is due to resume" in second.stdout

    _finish(_spawn(url, tmp_path, "work"))
    done = call(url, "get", "run-1")
    assert done.status is RunStatus.SUCCEEDED and done.output == "EHR <- P-7: fracture, left wrist"
    assert _ledger(tmp_path) == ["summarise", "update_record"]  # nothing ran twice
    decided = call(url, "get_review", item.review_id)
    assert [(a["by"], a["role"]) for a in decided.approvals] == [
        ("cli_reviewer", "medical_reviewer"),
        ("qa_lee", "quality_assurance"),
    ]


@pytest.mark.parametrize("round_", range(3))
def test_approve_and_reject_racing_from_two_processes_have_one_winner(tmp_path: Path, round_: int) -> None:
    url = f"sqlite:///{tmp_path}/race.db"
    assert _finish(_spawn(url, tmp_path, "start", "race")) == "waiting"
    (item,) = call(url, "list_reviews", run_id="race")
    call(url, "approve", item.review_id, by="qa_lee", role="quality_assurance")  # the last approval decides

    approver = _spawn(url, tmp_path, "decide", item.review_id, "approve", "dr_a", "medical_reviewer")
    rejecter = _spawn(url, tmp_path, "decide", item.review_id, "reject", "dr_b", "medical_reviewer")
    time.sleep(0.5)  # both are waiting for the start signal (not a timing assertion)
    (tmp_path / "go").touch()
    results = {"dr_a": _finish(approver), "dr_b": _finish(rejecter)}

    winners = [who for who, said in results.items() if said == "won"]
    losers = [who for who, said in results.items() if said.startswith("conflict:")]
    assert len(winners) == 1 and len(losers) == 1, results
    assert "the first decision stands" in results[losers[0]]
    decided = call(url, "get_review", item.review_id)
    assert decided.decision["by"] == winners[0]
    _finish(_spawn(url, tmp_path, "work"))
    run = call(url, "get", "race")
    assert run.status is (RunStatus.SUCCEEDED if winners == ["dr_a"] else RunStatus.FAILED)
    events = call(url, "detail", "race").events
    assert len([e for e in events if e.kind == "review_decided"]) == 1


def test_a_real_deadline_escalates_exactly_once_across_worker_restarts(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/sla.db"
    sla = 3.0
    assert _finish(_spawn(url, tmp_path, "start", "sla-run", sla=sla)) == "waiting"
    (root,) = call(url, "list_reviews", run_id="sla-run")

    # A worker sees the warning, then dies (SIGKILL) before the deadline.
    worker = _spawn(url, tmp_path, "work", sla=sla)
    deadline = time.monotonic() + 60
    while not any(e.kind == "review_sla_warning" for e in call(url, "detail", "sla-run").events):
        assert worker.poll() is None, worker.communicate()
        assert time.monotonic() < deadline, "no warning"
        time.sleep(0.05)
    worker.send_signal(signal.SIGKILL)
    worker.communicate()

    # After the deadline, two fresh workers start at once: the escalation fires once.
    while time.time() < root.due_at + 0.2:
        time.sleep(0.05)
    workers = [_spawn(url, tmp_path, "work", sla=sla) for _ in range(2)]
    for proc in workers:
        _finish(proc)

    items = sorted(call(url, "list_reviews", run_id="sla-run", status=None), key=lambda r: r.level)
    assert [(i.level, i.status) for i in items] == [(0, ReviewStatus.ESCALATED), (1, ReviewStatus.PENDING)]
    assert items[1].roles == ["supervisor"] and items[0].escalated_to == items[1].review_id
    events = call(url, "detail", "sla-run").events
    assert len([e for e in events if e.kind == "review_escalated"]) == 1
    assert len([e for e in events if e.kind == "review_sla_warning"]) == 1
    assert call(url, "get", "sla-run").status is RunStatus.WAITING

    call(url, "approve", items[1].review_id, by="sup_ade", role="supervisor")
    _finish(_spawn(url, tmp_path, "work", sla=sla))
    assert call(url, "get", "sla-run").status is RunStatus.SUCCEEDED
    assert _ledger(tmp_path) == ["summarise", "update_record"]
