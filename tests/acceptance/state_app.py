"""Seed 001's intake with a state schema, compression and offload, for a SIGKILL test.

usage: python state_app.py STORE_URL WORKDIR start|resume RUN_ID

``summary`` prints a digest of the value it received (its JSON, keys sorted, with the
type of each field). On its first execution in ``WORKDIR`` it writes
WORKDIR/in_summary and hangs there, so that the test kills the process with the three
steps before it recorded: their values are read back, after the kill, from the kept
fields, the compressed record and the blob store.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import sys
import time
from pathlib import Path

from orchestrate import Engine, Step, StepSchema, Workflow, compress_after
from orchestrate.store import open_store

WORKDIR = Path(sys.argv[2])
KiB = 1024


def _noise(seed: str, size: int) -> str:
    out, block = [], seed.encode()
    for _ in range(size // 64 + 1):
        block = hashlib.sha256(block).digest()
        out.append(block.hex())
    return "".join(out)[:size]


@StepSchema(keep=["patient_id", "extracted_fields"], discard=["raw_ocr", "tokens"])
@compress_after(step=2, strategy="zstd")
def step_data_extraction(form_id: str) -> dict:
    return {
        "patient_id": form_id,
        "extracted_fields": {"name": "J. Doe", "dob": "1961-03-02", "medications": ["warfarin"]},
        "raw_ocr": _noise(form_id, 200 * KiB),
        "tokens": list(range(3000)),
    }


def enrich(data: dict) -> dict:
    return {**data, "scan": _noise("scan", 150 * KiB)}


def validate(data: dict) -> dict:
    return {**data, "valid": True, "notes": "interaction checked. " * 500}


def summary(data: dict) -> str:
    marker = WORKDIR / "in_summary"
    if not marker.exists():
        marker.write_text("here")
        time.sleep(600)  # killed here
    typed = {key: [type(value).__name__, value] for key, value in sorted(data.items())}
    digest = hashlib.sha256(json.dumps(typed, sort_keys=True).encode()).hexdigest()
    print(f"summary got {sorted(data)} digest={digest}", flush=True)
    return digest


intake = Workflow(
    "intake_state",
    [
        Step("extract", step_data_extraction),
        Step("enrich", enrich),
        Step("validate", validate),
        Step("summary", summary),
    ],
    version="1",
)


async def main() -> None:
    url, mode, run_id = sys.argv[1], sys.argv[3], sys.argv[4]
    async with Engine(open_store(url), workflows=[intake], lease_seconds=2.0) as engine:
        if mode == "start":
            record = await engine.run_record(intake, "FORM-2026-07-001", run_id=run_id)
        else:
            record = await engine.execute(run_id, force=True)
        assert record is not None
        print(record.status.value, flush=True)


if __name__ == "__main__":
    asyncio.run(main())
