"""Seed 000's pipeline, written without annotations, killed with SIGKILL between two steps.

``need_human_review`` reads ``doc.confidence`` of the dataclass ``generate_doc`` returned;
after the kill and a restart in another process it must get the same dataclass, not the
dict its JSON record holds.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from orchestrate import Client, RunStatus
from orchestrate.store import open_store

APP = Path(__file__).with_name("seed000_app.py")


def _spawn(url: str, workdir: Path, mode: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(APP), url, str(workdir), mode, "seed000-run"],
        env=dict(os.environ),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


async def _detail(url: str):
    store = open_store(url)
    await store.open()
    try:
        return await Client(store).detail("seed000-run")
    finally:
        await store.close()


def test_sigkill_between_generate_doc_and_review_check_keeps_the_dataclass(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/runs.db"
    first = _spawn(url, tmp_path, "start")
    deadline = time.monotonic() + 60
    while not (tmp_path / "in_review_check").exists():
        assert first.poll() is None, first.communicate()
        assert time.monotonic() < deadline, "review_check never started"
        time.sleep(0.05)
    first.send_signal(signal.SIGKILL)
    first.communicate()
    detail = asyncio.run(_detail(url))
    assert [s.step_key for s in detail.steps] == ["deidentify", "policy_check", "generate_doc"]

    second = _spawn(url, tmp_path, "resume")
    out, err = second.communicate(timeout=120)
    assert second.returncode == 0, err
    assert "review_check got ComplianceDoc confidence=0.93" in out, out + err
    assert out.strip().endswith("succeeded")
    detail = asyncio.run(_detail(url))
    assert detail.run.status is RunStatus.SUCCEEDED
    assert detail.run.output == {"patient_ref": "P-0183", "text": detail.run.output["text"], "confidence": 0.93}
