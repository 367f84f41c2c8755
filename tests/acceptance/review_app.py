"""A gated intake workflow driven by separate processes in the review acceptance tests.

usage: python review_app.py STORE_URL WORKDIR start RUN_ID
       python review_app.py STORE_URL WORKDIR work
       python review_app.py STORE_URL WORKDIR decide REVIEW_ID approve|reject BY ROLE

``$REVIEW_SLA`` (seconds, default 3600) is the gate's SLA; on timeout the item escalates
to ``supervisor`` (no deadline). Steps append ``step pid`` to WORKDIR/ledger. ``decide``
waits for WORKDIR/go to exist before deciding (so that two of them race) and prints
``won`` or ``conflict: ...``.
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path
from typing import Any

from orchestrate import Client, ConflictError, Engine, Step, Workflow
from orchestrate.review import Escalate, HumanReviewGate
from orchestrate.store import open_store

WORKDIR = Path(sys.argv[2])
SLA = float(os.environ.get("REVIEW_SLA", "3600"))


def _ledger(step: str) -> None:
    with open(WORKDIR / "ledger", "a") as fh:
        fh.write(f"{step} {os.getpid()}\n")
        fh.flush()
        os.fsync(fh.fileno())


def summarise(form: dict[str, Any]) -> dict[str, Any]:
    _ledger("summarise")
    return {"patient": form["patient"], "summary": "fracture, left wrist"}


def update_record(summary: dict[str, Any]) -> str:
    _ledger("update_record")
    return f"EHR <- {summary['patient']}: {summary['summary']}"


INTAKE = Workflow(
    "intake",
    [
        Step(
            "summarise",
            summarise,
            gate=HumanReviewGate(
                required_approvals=["medical_reviewer", "quality_assurance"],
                timeout=SLA,
                warn_before=SLA / 2,
                on_timeout=Escalate("supervisor"),
            ),
        ),
        Step("update_record", update_record),
    ],
    version="1",
)


async def main() -> None:
    url, mode = sys.argv[1], sys.argv[3]
    if mode == "start":
        async with Engine(open_store(url), workflows=[INTAKE]) as engine:
            record = await engine.run_record(INTAKE, {"patient": "P-7"}, run_id=sys.argv[4])
            print(record.status.value, flush=True)
    elif mode == "work":
        async with Engine(open_store(url), workflows=[INTAKE], lease_seconds=5.0) as engine:
            driven = await engine.work(until_idle=True, poll_seconds=0.05)
            print(f"idle after {driven}", flush=True)
    else:
        review_id, action, by, role = sys.argv[4:8]
        async with Client(url) as client:
            while not (WORKDIR / "go").exists():
                await asyncio.sleep(0.001)
            try:
                if action == "approve":
                    await client.approve(review_id, by=by, role=role)
                else:
                    await client.reject(review_id, by=by, role=role, reason=f"{by} says no")
            except ConflictError as exc:
                print(f"conflict: {exc}", flush=True)
            else:
                print("won", flush=True)


if __name__ == "__main__":
    asyncio.run(main())
