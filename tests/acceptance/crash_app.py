"""A five-step workflow run in a subprocess by the crash tests.

usage: python crash_app.py STORE_URL WORKDIR start RUN_ID
       python crash_app.py STORE_URL WORKDIR resume
       python crash_app.py STORE_URL WORKDIR backoff RUN_ID

Each step appends ``step attempt pid time`` to WORKDIR/ledger (fsynced) before it
returns. Step 3 hangs on its first execution (after writing WORKDIR/in_step3) so that
the test can kill the process in the middle of it.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from pathlib import Path

from orchestrate import Engine, Retry, Step, StepContext, Workflow
from orchestrate.store import open_store

WORKDIR = Path(sys.argv[2])


def _ledger(step: str, ctx: StepContext) -> None:
    with open(WORKDIR / "ledger", "a") as fh:
        fh.write(f"{step} {ctx.attempt} {os.getpid()} {time.time()}\n")
        fh.flush()
        os.fsync(fh.fileno())


def make_step(name: str):
    def step(value: int, ctx: StepContext) -> int:
        if name == "s3":
            marker = WORKDIR / "in_step3"
            if not marker.exists():
                marker.write_text(str(os.getpid()))
                time.sleep(float(os.environ.get("HANG_SECONDS", "600")))  # killed (or paused) here
        if name == "s2" and (WORKDIR / "fail_s2_once").exists() and ctx.attempt == 1:
            _ledger(name + "-failed", ctx)
            raise ConnectionError("carrier API reset")
        _ledger(name, ctx)
        return value + 1

    step.__name__ = name
    return step


FIVE = Workflow(
    "five",
    [
        Step(f"s{i}", make_step(f"s{i}"), retry=Retry(max_attempts=3, initial_delay=3.0, jitter=0.0))
        for i in range(1, 6)
    ],
    version="1",
)


async def main() -> None:
    url, mode = sys.argv[1], sys.argv[3]
    async with Engine(open_store(url), workflows=[FIVE], lease_seconds=2.0, park_after_seconds=1.0) as engine:
        if mode in ("start", "backoff"):
            record = await engine.run_record(FIVE, 0, run_id=sys.argv[4])
            print(record.status.value, record.output, flush=True)
        else:
            await engine.work(until_idle=True, poll_seconds=0.1)
            print("idle", flush=True)


if __name__ == "__main__":
    asyncio.run(main())
