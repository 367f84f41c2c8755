"""Two workers in separate PID namespaces on one host (as two containers with the same
hostname): neither may judge the other dead from a pid it cannot see.

Worker A runs inside its own PID namespace and holds a run whose step hangs, renewing its
lease. Worker B, in another PID namespace, looks for orphaned runs: A's pid does not exist
in B's namespace, yet A is alive, so B must not take the run over.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from orchestrate import Client, RunStatus

APP = Path(__file__).with_name("pidns_app.py")

pytestmark = pytest.mark.skipif(shutil.which("unshare") is None, reason="needs util-linux's unshare")


def _in_namespace(*args: str, padding: int = 0) -> list[str]:
    # A few throw-away processes first, so that the worker's pid differs between namespaces.
    warmup = "; ".join(["/bin/true"] * padding)
    script = f"{warmup + '; ' if warmup else ''}{sys.executable} {APP} " + " ".join(args)
    return ["unshare", "--pid", "--fork", "--kill-child", "/bin/sh", "-c", script]


async def _status(url: str, run_id: str) -> RunStatus:
    async with Client(url) as client:
        return (await client.get(run_id)).status


def test_a_worker_in_another_pid_namespace_does_not_steal_a_live_run(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/runs.db"
    holder = subprocess.Popen(
        _in_namespace(url, str(tmp_path), "start", "held", padding=6), stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        deadline = time.monotonic() + 60
        while not (tmp_path / "started").exists():
            assert holder.poll() is None, holder.communicate()
            assert time.monotonic() < deadline, "the step never started"
            time.sleep(0.05)
        for _ in range(3):  # over a lease's length: the holder keeps renewing it
            other = subprocess.run(
                _in_namespace(url, str(tmp_path), "recover"), capture_output=True, text=True, timeout=60, check=False
            )
            assert other.returncode == 0, other.stderr
            assert other.stdout.strip() == "0", other.stdout + other.stderr  # nothing taken over
            time.sleep(1.2)
        assert asyncio.run(_status(url, "held")) is RunStatus.RUNNING
        assert (tmp_path / "ledger").read_text().splitlines() == [(tmp_path / "started").read_text()]
    finally:
        holder.kill()
        holder.communicate()
