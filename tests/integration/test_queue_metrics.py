"""Queue depth and the claim wait as Prometheus gauges, read from the store: on every store, and
scraped from a real ``orchestrate worker --metrics-port`` endpoint."""

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
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from orchestrate import Client, Step, Workflow
from orchestrate.observe.prometheus import read_queues
from orchestrate.store import open_store
from tests.postgres import in_schema

APP = """
from orchestrate import Step, Workflow

backlog = Workflow("backlog", [Step("work", lambda x: x)], version="1")
"""


def _wf() -> Workflow:
    return Workflow("backlog", [Step("work", lambda x: x)], version="1")


@pytest.fixture(params=["memory", "sqlite", "postgres"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "memory":
        yield "memory://"
    elif request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'queues.db'}"
    else:
        yield from in_schema()


async def test_the_gauges_count_due_runs_per_queue(store_url: str) -> None:
    registry = CollectorRegistry()
    async with Client(open_store(store_url), workflows=[_wf()]) as client:
        now = client.engine.clock.now()
        for n in range(3):
            await client.start("backlog", n, queue="backlog")
        await client.start("backlog", 9, queue="later", start_at=now + 3600)  # not due for an hour
        await client.start("backlog", 10, queue="other")
        at = client.engine.clock.now() + 5
        assert await read_queues(client.store, now=at, registry=registry) == {"backlog": 3, "other": 1}
        assert registry.get_sample_value("orchestrate_queue_depth", {"queue": "backlog"}) == 3
        waited = registry.get_sample_value("orchestrate_queue_oldest_due_seconds", {"queue": "backlog"})
        assert waited is not None and 5 <= waited < 60
        assert registry.get_sample_value("orchestrate_queue_depth", {"queue": "later"}) is None
        assert await client.engine.work(until_idle=True, queues=["other"], poll_seconds=0.01) == 1
        assert await read_queues(client.store, now=at, registry=registry) == {"backlog": 3}
        assert registry.get_sample_value("orchestrate_queue_depth", {"queue": "other"}) == 0  # drained


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _gauge(port: int, name: str, queue: str) -> float | None:
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and sample.labels.get("queue") == queue:
                return float(sample.value)
    return None


def test_a_worker_serves_the_queue_gauges(tmp_path: Path) -> None:
    app = tmp_path / "backlog_app.py"
    app.write_text(textwrap.dedent(APP))
    url = f"sqlite:///{tmp_path / 'queues.db'}"

    async def backlog() -> None:
        async with Client(url, workflows=[_wf()]) as client:
            for n in range(4):
                await client.start("backlog", n, queue="backlog")

    asyncio.run(backlog())
    found = shutil.which("orchestrate", path=os.path.dirname(sys.executable)) or shutil.which("orchestrate")
    assert found is not None, "the `orchestrate` command is not installed: pip install -e ."
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
    command = [found, "worker", "--store", url, "--app", f"{app}:backlog", "--queue", "default"]
    worker = subprocess.Popen(
        [*command, "--metrics-port", str(port), "--log-level", "warning"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        deadline = time.monotonic() + 60
        depth = None
        while depth != 4:  # the worker serves only the default queue: the backlog stays due
            assert worker.poll() is None, worker.communicate()
            assert time.monotonic() < deadline, f"the queue gauge never read 4 (last: {depth})"
            try:
                depth = _gauge(port, "orchestrate_queue_depth", "backlog")
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        waited = _gauge(port, "orchestrate_queue_oldest_due_seconds", "backlog")
        assert waited is not None and waited > 0
    finally:
        worker.send_signal(signal.SIGTERM)
        try:
            worker.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.communicate()
