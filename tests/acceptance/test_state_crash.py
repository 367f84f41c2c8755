"""Seed 001's intake with StepSchema, compress_after and offloaded values, SIGKILLed mid-run.

The process is killed while ``summary`` runs, after three steps recorded: one trimmed by
its schema, one offloaded to the blob store, one compressed. Another process resumes
the run: ``summary`` must receive the value a run that was never killed hands it (same
digest of fields, values and types), on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrate import Client, RunStatus
from orchestrate.store import _blobs, open_store
from tests.postgres import in_schema

APP = Path(__file__).with_name("state_app.py")


def _spawn(url: str, workdir: Path, mode: str, run_id: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(APP), url, str(workdir), mode, run_id],
        env=dict(os.environ),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _digest(out: str) -> str:
    found = re.search(r"digest=([0-9a-f]{64})", out)
    assert found is not None, out
    return found.group(1)


async def _detail(url: str, run_id: str):  # type: ignore[no-untyped-def]
    store = open_store(url)
    await store.open()
    try:
        return await Client(store).detail(run_id), await store.get_steps(run_id)
    finally:
        await store.close()


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/runs.db"
    else:
        for url in in_schema():
            yield f"{url}&blob_dir={tmp_path / 'blobs'}"


def test_sigkill_after_trimmed_offloaded_and_compressed_steps_hands_summary_the_live_value(
    store_url: str, tmp_path: Path
) -> None:
    clean_dir = tmp_path / "clean"
    clean_dir.mkdir()
    (clean_dir / "in_summary").write_text("already")  # no hang: a run that is never killed
    clean = _spawn(store_url, clean_dir, "start", "clean-run")
    out, err = clean.communicate(timeout=120)
    assert clean.returncode == 0, err
    live = _digest(out)

    first = _spawn(store_url, tmp_path, "start", "killed-run")
    deadline = time.monotonic() + 60
    while not (tmp_path / "in_summary").exists():
        assert first.poll() is None, first.communicate()
        assert time.monotonic() < deadline, "summary never started"
        time.sleep(0.05)
    first.send_signal(signal.SIGKILL)
    first.communicate()
    _, steps = asyncio.run(_detail(store_url, "killed-run"))
    by_key = {s.step_key: s for s in steps}
    assert list(by_key) == ["extract", "enrich", "validate"]
    assert set(by_key["extract"].output) == {"patient_id", "extracted_fields"}
    assert by_key["enrich"].output is None and "blob" in by_key["enrich"].meta[_blobs.PACKED]
    assert by_key["validate"].meta[_blobs.PACKED]["encoding"] == "zstd"

    second = _spawn(store_url, tmp_path, "resume", "killed-run")
    out, err = second.communicate(timeout=120)
    assert second.returncode == 0, err
    assert "summary got ['extracted_fields', 'notes', 'patient_id', 'scan', 'valid']" in out, out + err
    assert _digest(out) == live
    assert out.strip().endswith("succeeded")
    detail, _ = asyncio.run(_detail(store_url, "killed-run"))
    assert detail.run.status is RunStatus.SUCCEEDED and detail.run.output == live
    assert [s.step_key for s in detail.steps] == ["extract", "enrich", "validate", "summary"]
