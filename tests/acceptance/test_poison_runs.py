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


# soak -------------------------------------------------------------------------------------------

SOAK_LEASE = 5.0
SOAK_POLL = 0.5


def _drain(url: str, sup: Supervisor, ids: list[str], limit: float, *, kills: int = 0) -> float:
    """Tend the workers until every run of ``ids`` has ended (SIGKILLing one every few seconds
    ``kills`` times meanwhile); return the seconds it took."""
    started = time.monotonic()
    next_kill = started + 4.0
    wanted = set(ids)
    while True:
        sup.tend()
        found = statuses(url)
        if all(found[rid][0] in ("succeeded", "dead", "failed", "cancelled") for rid in wanted):
            return time.monotonic() - started
        if kills and time.monotonic() >= next_kill:
            sup.kill_one(kills % 2)
            kills -= 1
            next_kill = time.monotonic() + 4.0
        assert time.monotonic() - started < limit, (
            f"runs left: {Counter(found[rid][0] for rid in wanted)}, deaths: {len(sup.deaths)}\n{sup.tails()}"
        )
        time.sleep(0.25)


@pytest.mark.soak
@pytest.mark.timeout(1200)
def test_soak_poison_oversized_and_secret_echoing_runs_among_1000_healthy_ones(
    db: Db,  # noqa: F811 - the fixture
    tmp_path: Path,
    supervised: list[Supervisor],
    request: pytest.FixtureRequest,
) -> None:
    """1,000 healthy runs with 3 poisoned, 3 oversized and 3 secret-echoing ones, on PostgreSQL
    with two supervised workers SIGKILLed three times: 0 lost, 0 stuck, each poisoned run in
    the DLQ within max_crashes x (lease + poll) of its first execution, no canary in any
    table, and the healthy runs' throughput at least 80 % of what it is without the others."""
    if "soak" not in (request.config.getoption("markexpr") or ""):
        pytest.skip("a soak variant: run it with -m soak")
    args = ("--app", f"{APP}:mixed", "--concurrency", "4", "--lease", str(SOAK_LEASE), "--poll", str(SOAK_POLL))
    healthy = {"n": 0, "pause": 0.15}
    # The floor: healthy runs alone, on the same workers.
    sup = Supervisor(db.url, tmp_path, 2, *args)
    supervised.append(sup)
    warm = start_runs(db.url, [healthy] * 20)
    _drain(db.url, sup, warm, 120)
    floor_ids = start_runs(db.url, [healthy] * 400)
    floor_rate = len(floor_ids) / _drain(db.url, sup, floor_ids, 300)
    # The mix: the odd runs spread among the healthy ones.
    odd = [{"n": 0, "poison": True}] * 3 + [{"n": 0, "big": True}] * 3 + [{"n": 0, "echo": True}] * 3
    inputs = [dict(healthy) for _ in range(1000)]
    for i, value in enumerate(odd):
        inputs[50 + i * 100] = value
    ids = start_runs(db.url, inputs)
    took = _drain(db.url, sup, ids, 900, kills=3)
    sup.stop()
    sup.tend()
    kind = {
        rid: next((k for k in ("poison", "big", "echo") if value.get(k)), "healthy")
        for rid, value in zip(ids, inputs, strict=True)
    }
    found = statuses(db.url)
    # 0 lost, 0 stuck: every run ended, the way its kind must.
    expected = {"healthy": "succeeded", "echo": "succeeded", "big": "dead", "poison": "dead"}
    assert {rid: found[rid][0] for rid in ids} == {rid: expected[kind[rid]] for rid in ids}
    assert not [s for s, _ in found.values() if s in ("pending", "running", "waiting")]
    for rid in ids:
        error = found[rid][1]
        if kind[rid] == "poison":
            assert (error["reason"], error["crashes"]) == ("crashed", CAP)
        elif kind[rid] == "big":
            assert error["name"] == "PayloadTooLargeError"
    # Each step of each healthy run recorded once.
    recorded = Counter(db.query("SELECT run_id, step_key FROM orchestrate_steps"))
    assert set(recorded.values()) == {1}
    assert all(recorded[(rid, "s3")] == 1 for rid in ids if kind[rid] in ("healthy", "echo"))
    # Poisoned runs: in the DLQ within max_crashes x (lease + poll) of their first execution.
    first: dict[str, float] = {}
    for line in sup.ledger.read_text().splitlines():
        run_id, step, _pid, at = line.split()
        if kind.get(run_id) == "poison" and step == "s2":
            first.setdefault(run_id, float(at))
    dead_at = dict(db.query("SELECT run_id, at FROM orchestrate_events WHERE kind = 'run_dead'"))
    for rid, began in first.items():
        assert dead_at[rid] - began <= CAP * (SOAK_LEASE + SOAK_POLL), (rid, dead_at[rid] - began)
    # No canary anywhere in the store.
    canary = poison_app.CANARY.reveal()
    tables = [t for (t,) in db.query("SELECT tablename FROM pg_tables WHERE schemaname = current_schema()")]
    for table in tables:
        (hits,) = db.query(f"SELECT count(*) FROM {table} t WHERE t::text LIKE %s", (f"%{canary}%",))[0]
        assert hits == 0, table
    assert canary not in "".join(path.read_text(errors="replace") for path in sup.logs.values())
    # The healthy runs kept their pace.
    rate = sum(1 for k in kind.values() if k == "healthy") / took
    deaths = Counter(code for _, code, _ in sup.deaths)
    print(f"floor {floor_rate:.1f} runs/s, with the odd runs {rate:.1f} runs/s ({rate / floor_rate:.0%}); {deaths}")
    assert deaths[1] == 3 * CAP  # the poisoned runs took down their workers max_crashes times each
    assert rate >= 0.8 * floor_rate
