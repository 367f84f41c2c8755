"""Poison runs: a step that kills its own worker process ends in the dead-letter queue.

Two real ``orchestrate worker`` processes serve :mod:`tests.acceptance.poison_app`, each
restarted by the test as soon as it dies (as systemd or Kubernetes would). Poisoned runs
call ``os._exit(1)`` in a step: every execution takes its worker down with it, leaving no
record. What a user would notice is checked: each poisoned run is executed exactly
``max_crashes`` times, then lands in the dead-letter queue with ``reason=crashed``, the
count and the last worker; the worker deaths stop there; every healthy run succeeds with
each step recorded once, none of them is taken for a poison; on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from orchestrate import Engine
from orchestrate.store import open_store
from tests.acceptance import poison_app
from tests.acceptance.test_postgres_workers import Db, database, db  # noqa: F401 - fixtures

APP = Path(poison_app.__file__)
LEASE = 2.0
CAP = 3


class Supervisor:
    """Worker processes kept running: one that exits is started again at once, and counted."""

    def __init__(self, url: str, tmp_path: Path, count: int, *args: str) -> None:
        self.url = url
        self.tmp_path = tmp_path
        self.args = args
        self.ledger = tmp_path / "ledger"
        self.slots: list[subprocess.Popen[bytes]] = []
        self.logs: dict[int, Path] = {}
        self.deaths: list[tuple[int, int | None, float]] = []  # (pid, exit code, when)
        self.killed: set[int] = set()
        for _ in range(count):
            self.slots.append(self._start())

    def _start(self) -> subprocess.Popen[bytes]:
        log = self.tmp_path / f"worker-{len(self.logs)}.log"
        with open(log, "wb") as out:
            proc = subprocess.Popen(
                [sys.executable, "-c", "from orchestrate.cli import main; main()", "worker", *self.args],
                env={**os.environ, "ORCHESTRATE_STORE": self.url, "POISON_LEDGER": str(self.ledger)},
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        self.logs[proc.pid] = log
        return proc

    def tend(self) -> None:
        """Restart the workers that exited."""
        for i, proc in enumerate(self.slots):
            code = proc.poll()
            if code is not None:
                self.deaths.append((proc.pid, code, time.monotonic()))
                self.slots[i] = self._start()

    def kill_one(self, index: int) -> None:
        proc = self.slots[index]
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        self.killed.add(proc.pid)

    def executions(self) -> Counter[tuple[str, str]]:
        if not self.ledger.exists():
            return Counter()
        return Counter(tuple(line.split()[:2]) for line in self.ledger.read_text().splitlines() if line)  # type: ignore[misc]

    def tails(self) -> str:
        return "\n".join(path.read_text(errors="replace")[-1500:] for path in list(self.logs.values())[-3:])

    def stop(self) -> None:
        for proc in self.slots:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.slots:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def start_runs(url: str, inputs: list[dict[str, Any]]) -> list[str]:
    async def go() -> list[str]:
        async with Engine(open_store(url), workflows=[poison_app.mixed]) as engine:
            ids = [uuid.uuid4().hex for _ in inputs]
            for run_id, value in zip(ids, inputs, strict=True):
                await engine.start(poison_app.mixed, value, run_id=run_id)
            return ids

    return asyncio.run(go())


def statuses(url: str) -> dict[str, tuple[str, Any]]:
    async def go() -> dict[str, tuple[str, Any]]:
        async with Engine(open_store(url)) as engine:
            runs = await engine.store.list_runs(limit=100_000)
            return {r.run_id: (r.status.value, r.error) for r in runs}

    return asyncio.run(go())


@pytest.fixture
def supervised() -> Iterator[list[Supervisor]]:
    made: list[Supervisor] = []
    yield made
    for sup in made:
        sup.stop()


def _poison_test(url: str, tmp_path: Path, supervised: list[Supervisor], *, healthy: int, poison: int) -> None:
    inputs = [{"n": 0} for _ in range(healthy)]
    inputs[:: max(healthy // poison, 1)] = [{"n": 0, "poison": True}] * poison
    ids = start_runs(url, inputs)
    bad = {rid for rid, value in zip(ids, inputs, strict=True) if value.get("poison")}
    assert len(bad) == poison
    sup = Supervisor(
        url, tmp_path, 2, "--app", f"{APP}:mixed", "--concurrency", "4", "--lease", str(LEASE), "--poll", "0.2"
    )
    supervised.append(sup)
    deadline = time.monotonic() + 60 + poison * CAP * (LEASE + 3)
    while True:
        sup.tend()
        found = statuses(url)
        done = {rid for rid, (status, _) in found.items() if status in ("succeeded", "dead", "failed")}
        if done == set(ids):
            break
        assert time.monotonic() < deadline, (
            f"runs left: {Counter(s for s, _ in found.values())}, worker deaths: {len(sup.deaths)}\n{sup.tails()}"
        )
        time.sleep(0.2)
    sup.stop()
    sup.tend()
    found = statuses(url)
    assert {rid for rid, (status, _) in found.items() if status == "dead"} == bad, {r: found[r] for r in bad}
    assert {rid for rid, (status, _) in found.items() if status == "succeeded"} == set(ids) - bad
    runs_executed = sup.executions()
    for rid in bad:
        assert runs_executed[(rid, "s2")] == CAP, (rid, runs_executed[(rid, "s2")])
        error = found[rid][1]
        assert error["reason"] == "crashed" and error["crashes"] == CAP, error
        assert error["name"] == "RunCrashedError"
        owner_pid = int(error["owner"].split(":")[1])
        assert owner_pid in {pid for pid, code, _ in sup.deaths if code == 1}
    # Each poison execution took one worker down, and nothing else did.
    assert sorted(code for _, code, _ in sup.deaths) == [0] * 2 + [1] * (poison * CAP)
    for rid in set(ids) - bad:
        # A healthy step ran again only when a poisoned run took its worker down meanwhile.
        assert runs_executed[(rid, "s3")] >= 1


@pytest.mark.timeout(300)
def test_poison_runs_reach_the_dead_letter_queue_on_sqlite(tmp_path: Path, supervised: list[Supervisor]) -> None:
    _poison_test(f"sqlite:///{tmp_path}/orchestrate.db", tmp_path, supervised, healthy=60, poison=2)


@pytest.mark.timeout(300)
def test_poison_runs_reach_the_dead_letter_queue_on_postgres(
    db: Db,  # noqa: F811 - the fixture
    tmp_path: Path,
    supervised: list[Supervisor],
) -> None:
    _poison_test(db.url, tmp_path, supervised, healthy=60, poison=2)
