"""A worker for the PID-namespace test.

usage: python pidns_app.py STORE_URL WORKDIR start RUN_ID   (drive a run whose step hangs)
       python pidns_app.py STORE_URL WORKDIR recover        (recover orphaned runs, then exit)

The step appends its pid to WORKDIR/ledger and, on its first execution, writes
WORKDIR/started and hangs, holding the run under a lease it keeps renewing.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from pathlib import Path

from orchestrate import Engine, Step, Workflow
from orchestrate.store import open_store

WORKDIR = Path(sys.argv[2])


def slow(value: int) -> int:
    with open(WORKDIR / "ledger", "a") as fh:
        fh.write(f"{os.getpid()}\n")
    marker = WORKDIR / "started"
    if not marker.exists():
        marker.write_text(str(os.getpid()))
        time.sleep(600)
    return value + 1


HANG = Workflow("pidns", [Step("slow", slow)], version="1")


async def main() -> None:
    url, mode = sys.argv[1], sys.argv[3]
    async with Engine(open_store(url), workflows=[HANG], lease_seconds=3.0) as engine:
        if mode == "start":
            await engine.run_record(HANG, 1, run_id=sys.argv[4])
        else:
            print(await engine.recover_orphans(), flush=True)


if __name__ == "__main__":
    asyncio.run(main())
