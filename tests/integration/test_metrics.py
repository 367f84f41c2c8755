"""Prometheus metrics: the families an observer fills, and a real endpoint scraped while two
worker processes share a SQLite file and prometheus-client's multiprocess directory."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from orchestrate import Client, Engine, RunStatus, Step, Timeout, Workflow
from orchestrate.cli.yaml_commands import load_target
from orchestrate.observe import add_observer, remove_observer
from orchestrate.observe.prometheus import STEP_BUCKETS, PrometheusObserver
from orchestrate.review import Escalate, HumanReviewGate
from orchestrate.store import InMemoryStore
from orchestrate.testing import FakeClock
from tests.unit.test_hooks import run_support_scenario, shared_memory


async def test_the_families_count_steps_runs_reviews_and_model_calls() -> None:
    registry = CollectorRegistry()
    observer = PrometheusObserver(registry=registry)
    # The support scenario (a retry, a fallback, a model call, a gate approved, a second
    # engine), the metrics observer process-wide beside the scenario's recorders.
    add_observer(observer)
    try:
        await run_support_scenario(shared_memory())
    finally:
        remove_observer(observer)

    def value(name: str, **labels: str) -> float:
        found = registry.get_sample_value(name, labels)
        return 0.0 if found is None else found

    wf = {"workflow": "support"}
    assert value("orchestrate_step_attempts_total", **wf, step="lookup") == 2
    assert value("orchestrate_step_errors_total", **wf, step="lookup", error_type="ConnectionError") == 1
    assert value("orchestrate_step_retries_total", **wf, step="lookup") == 1
    assert value("orchestrate_step_fallbacks_total", **wf, step="track", fallback="value") == 1
    assert value("orchestrate_step_duration_seconds_count", **wf, step="draft", outcome="succeeded") == 1
    assert value("orchestrate_step_duration_seconds_count", **wf, step="track", outcome="fallback") == 1
    assert value("orchestrate_runs_created_total", **wf) == 1
    assert value("orchestrate_runs_parked_total", **wf, reason="signal") == 1
    assert value("orchestrate_runs_resumed_total", **wf) == 1
    assert value("orchestrate_runs_ended_total", **wf, status="succeeded") == 1
    assert value("orchestrate_reviews_created_total", **wf) == 1
    assert value("orchestrate_reviews_decided_total", **wf, outcome="approved") == 1
    assert value("orchestrate_reviews_waiting", **wf) == 0
    assert value("orchestrate_review_decision_seconds_count", **wf, outcome="approved") == 1
    assert value("orchestrate_model_calls_total", model="fake-model", outcome="ok") == 1
    assert value("orchestrate_model_tokens_total", model="fake-model", kind="input") > 0
    # The seeds' 50-200 ms range has buckets of its own.
    assert {0.05, 0.1, 0.15, 0.2} <= set(STEP_BUCKETS)
    assert value("orchestrate_step_duration_seconds_bucket", **wf, step="draft", outcome="succeeded", le="0.15") == 1


async def test_timeouts_escalations_and_dead_runs() -> None:
    registry = CollectorRegistry()
    observer = PrometheusObserver(registry=registry)

    async def slow(x: int) -> int:
        await asyncio.sleep(1)
        return x

    def never(x: int) -> int:
        raise ValueError("bad")

    timing = Workflow("timing", [Step("slow", slow, timeout=Timeout(attempt=0.01)), Step("never", never)])
    async with Engine(InMemoryStore(), observers=[observer]) as engine:
        assert (await engine.run_record(timing, 1)).status is RunStatus.DEAD
    assert registry.get_sample_value("orchestrate_step_timeouts_total", {"workflow": "timing", "step": "slow"}) == 1
    dead = {"workflow": "timing", "status": "dead"}
    assert registry.get_sample_value("orchestrate_runs_ended_total", dead) == 1

    clock = FakeClock()
    gate = HumanReviewGate(roles=["agent"], timeout=300, on_timeout=Escalate("supervisor", timeout=600))
    escalating = Workflow("escalating", [Step("draft", lambda q: {"q": q}, gate=gate)])
    async with Client(engine=Engine(InMemoryStore(), clock=clock, observers=[observer]), workflows=[escalating]) as c:
        parked = await c.run(escalating, "q")
        clock.advance(301)
        await c.resume(parked.run_id)
    labels = {"workflow": "escalating"}
    assert registry.get_sample_value("orchestrate_reviews_escalated_total", labels) == 1
    assert registry.get_sample_value("orchestrate_reviews_created_total", labels) == 2
    assert registry.get_sample_value("orchestrate_reviews_waiting", labels) == 1  # the supervisor's item


# a real endpoint, two workers ------------------------------------------------------------------

APP = """
import time

from orchestrate import Fallback, Retry, Step, Workflow


def lookup(order: int, ctx) -> int:
    time.sleep(0.02)
    if ctx.attempt == 1 and order % 2 == 0:
        raise ConnectionError("reset by peer")
    return order


def track(order: int) -> str:
    raise TimeoutError("the carrier's API did not answer")


metered = Workflow(
    "metered",
    [
        Step("lookup", lookup, retry=Retry(max_attempts=2, initial_delay=0.01, jitter=0)),
        Step("track", track, fallback=Fallback.value("unknown")),
    ],
    version="1",
)
"""

RUNS = 20


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _entry_point() -> str:
    found = shutil.which("orchestrate", path=os.path.dirname(sys.executable)) or shutil.which("orchestrate")
    if found is None:
        pytest.fail("the `orchestrate` command is not installed: pip install -e .")
    return found


def _scrape(port: int) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """``{sample name: {sorted labels: value}}`` from the text format."""
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    samples: dict[str, dict[tuple[tuple[str, str], ...], float]] = defaultdict(dict)
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[sample.name][tuple(sorted(sample.labels.items()))] = sample.value
    return samples


def _total(samples: dict[str, Any], name: str, **labels: str) -> float:
    return sum(v for key, v in samples.get(name, {}).items() if set(labels.items()) <= set(key))


def test_two_workers_serve_one_sum_on_their_endpoints(tmp_path: Path) -> None:
    app = tmp_path / "metered_app.py"
    app.write_text(textwrap.dedent(APP))
    shared = tmp_path / "prometheus"
    shared.mkdir()
    url = f"sqlite:///{tmp_path / 'metered.db'}"
    env = {**os.environ, "ORCHESTRATE_STORE": url, "PROMETHEUS_MULTIPROC_DIR": str(shared)}
    ports = [_free_port(), _free_port()]
    command = [_entry_point(), "worker", "--app", f"{app}:metered", "--poll", "0.05", "--concurrency", "2"]
    workers = [
        subprocess.Popen(
            [*command, "--metrics-port", str(port), "--log-level", "warning"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for port in ports
    ]
    try:
        deadline = time.monotonic() + 60
        for port, worker in zip(ports, workers, strict=True):
            while True:
                assert worker.poll() is None, worker.communicate()
                assert time.monotonic() < deadline, "a worker never served its metrics"
                try:
                    httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2)
                    break
                except httpx.TransportError:
                    time.sleep(0.1)

        async def start_runs() -> list[str]:
            async with Client(url, workflows=[load_target(f"{app}:metered")]) as client:
                return [await client.start("metered", n) for n in range(RUNS)]

        run_ids = asyncio.run(start_runs())

        async def finished() -> int:
            async with Client(url) as client:
                return sum(1 for r in await client.list(limit=100) if r.status is RunStatus.SUCCEEDED)

        while asyncio.run(finished()) < RUNS:
            assert all(w.poll() is None for w in workers), [w.communicate() for w in workers]
            assert time.monotonic() < deadline + 60, "the workers never finished the runs"
            time.sleep(0.1)
        first, second = (_scrape(port) for port in ports)
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.send_signal(signal.SIGTERM)
        for worker in workers:
            try:
                worker.communicate(timeout=30)
            except subprocess.TimeoutExpired:
                worker.kill()
                worker.communicate()
    assert len(run_ids) == RUNS
    # Both processes wrote metrics, and each endpoint serves their sum.
    pids = {path.stem.rsplit("_", 1)[-1] for path in shared.glob("counter_*.db")}
    assert len(pids) == 2, pids
    for samples in (first, second):
        wf = {"workflow": "metered"}
        assert _total(samples, "orchestrate_runs_ended_total", **wf, status="succeeded") == RUNS
        assert _total(samples, "orchestrate_runs_resumed_total", **wf) == RUNS
        assert _total(samples, "orchestrate_step_attempts_total", **wf, step="lookup") == RUNS + RUNS // 2
        assert _total(samples, "orchestrate_step_retries_total", **wf, step="lookup") == RUNS // 2
        assert _total(samples, "orchestrate_step_errors_total", **wf, step="track", error_type="TimeoutError") == RUNS
        assert _total(samples, "orchestrate_step_fallbacks_total", **wf, step="track", fallback="value") == RUNS
        lookup = {**wf, "step": "lookup", "outcome": "succeeded"}
        assert _total(samples, "orchestrate_step_duration_seconds_count", **lookup) == RUNS
        # every lookup sleeps 20 ms: none is in the 10 ms bucket, all are in the +Inf one
        assert _total(samples, "orchestrate_step_duration_seconds_bucket", **lookup, le="0.01") == 0
        assert _total(samples, "orchestrate_step_duration_seconds_bucket", **lookup, le="+Inf") == RUNS
