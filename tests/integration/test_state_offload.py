"""State that stays small on SQLite and PostgreSQL: a schema, compression and blob offload
through a crash and a replay, pruning with the run, and the payload limits after offload.

The fidelity rule: what a step receives after a crash (read back from compressed and
offloaded records) equals what it received on a drive that never stopped.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from orchestrate import Client, Engine, RunStatus, Step, StepSchema, Workflow, compress_after
from orchestrate.store import _blobs, open_store
from tests.postgres import in_schema

SEEN: list[Any] = []
CRASH = {"on": False}
KiB = 1024


class Crash(BaseException):
    """The process dies in the middle of a step: nothing is recorded for it."""


def _noise(seed: str, size: int) -> str:
    """Text that does not compress (hex of a hash chain)."""
    out, block = [], seed.encode()
    for _ in range(size // 64 + 1):
        block = hashlib.sha256(block).digest()
        out.append(block.hex())
    return "".join(out)[:size]


def extract(form_id: str) -> dict[str, Any]:
    return {
        "patient_id": form_id,
        "extracted_fields": {"name": "J. Doe", "dob": "1961-03-02", "allergies": ["penicillin"]},
        "raw_ocr": _noise(form_id, 300 * KiB),  # dropped by the schema
        "tokens": list(range(2000)),
    }


def enrich(data: dict[str, Any]) -> dict[str, Any]:
    return {**data, "scan": _noise("scan" + data["patient_id"], 200 * KiB)}  # offloaded


def validate(data: dict[str, Any]) -> dict[str, Any]:
    return {**data, "valid": True, "notes": "allergy checked against the formulary. " * 400}  # compressed


def summary(data: dict[str, Any]) -> str:
    SEEN.append(data)
    if CRASH["on"]:
        raise Crash
    return f"{data['patient_id']}: {len(data['scan'])} scan bytes, {sorted(data)}"


def intake() -> Workflow:
    return Workflow(
        "intake",
        [
            Step("extract", extract, schema=StepSchema(keep=["patient_id", "extracted_fields"])),
            Step("enrich", enrich),
            Step("validate", validate),
            Step("summary", summary),
        ],
        version="1",
    )


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    SEEN.clear()
    CRASH["on"] = False
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'runs.db'}"
    else:
        for url in in_schema():
            yield f"{url}&blob_dir={tmp_path / 'blobs'}"


def _blob_dir(url: str, tmp_path: Path) -> Path:
    return tmp_path / "runs.db.blobs" if url.startswith("sqlite") else tmp_path / "blobs"


async def _run(url: str, wf: Workflow, form_id: str, run_id: str) -> Any:
    store = open_store(url)
    try:
        async with Engine(store, workflows=[wf]) as engine:
            return await engine.run_record(wf, form_id, run_id=run_id)
    finally:
        await store.close()


async def _resume(url: str, wf: Workflow, run_id: str) -> Any:
    store = open_store(url)
    try:
        async with Engine(store, workflows=[wf]) as engine:
            return await engine.execute(run_id, force=True)
    finally:
        await store.close()


async def _steps(url: str, run_id: str) -> dict[str, Any]:
    store = open_store(url)
    await store.open()
    try:
        return {s.step_key: s for s in await store.get_steps(run_id)}
    finally:
        await store.close()


async def test_a_crash_after_compressed_and_offloaded_steps_hands_on_what_a_live_run_did(
    store_url: str, tmp_path: Path
) -> None:
    wf = compress_after(step=2, strategy="gzip")(intake())
    live = await _run(store_url, wf, "F-1", "live-run")
    assert live.status is RunStatus.SUCCEEDED
    (seen_live,) = SEEN

    CRASH["on"] = True
    with pytest.raises(Crash):
        await _run(store_url, wf, "F-1", "crashed-run")
    assert len(SEEN) == 2 and SEEN[1] == seen_live  # the first drive's value, handed on
    CRASH["on"] = False
    resumed = await _resume(store_url, wf, "crashed-run")
    assert resumed is not None and resumed.status is RunStatus.SUCCEEDED
    assert resumed.output == live.output
    seen_replayed = SEEN[2]
    assert seen_replayed == seen_live and type(seen_replayed) is dict
    assert set(seen_replayed) == {"patient_id", "extracted_fields", "scan", "valid", "notes"}

    steps = await _steps(store_url, "crashed-run")
    assert steps["extract"].output == {"patient_id": "F-1", "extracted_fields": seen_live["extracted_fields"]}
    assert _blobs.PACKED not in steps["extract"].meta
    offloaded = steps["enrich"].meta[_blobs.PACKED]
    assert steps["enrich"].output is None and offloaded["encoding"] == "json" and offloaded["size"] > 200 * KiB
    assert (_blob_dir(store_url, tmp_path) / "crashed-run" / offloaded["blob"]).is_file()
    compressed = steps["validate"].meta[_blobs.PACKED]
    assert compressed["encoding"] == "gzip" and "blob" in compressed  # noise stays incompressible: offloaded
    assert steps["summary"].output == live.output


async def test_pruning_a_run_deletes_its_blobs_and_a_replay_keeps_its_own(store_url: str, tmp_path: Path) -> None:
    wf = intake()
    folder = _blob_dir(store_url, tmp_path)
    async with Client(store_url, workflows=[wf]) as client:
        first = await client.run(wf, "F-2")
        assert first.status is RunStatus.SUCCEEDED
        replay = await client.replay(first.run_id, from_step="summary")
        assert replay.status is RunStatus.SUCCEEDED and replay.output == first.output
        assert sorted(p.name for p in folder.iterdir()) == sorted([first.run_id, replay.run_id])
        detail = await client.detail(first.run_id)
        shown = {s.step_key: s for s in detail.steps}
        assert len(shown["enrich"].output["scan"]) == 200 * KiB  # read back for people to see

        await asyncio.sleep(0.02)  # both ended a moment ago; prune what ended before 10 ms ago
        assert await client.prune(older_than=0.01) == 2
        assert list(folder.iterdir()) == []


async def test_the_payload_limit_applies_to_what_the_record_holds_after_offload(store_url: str) -> None:
    def scan(_: Any) -> dict[str, Any]:
        return {"scan": _noise("big", 3 * 1024 * KiB)}  # over the 2 MiB limit as a value

    def size(result: dict[str, Any]) -> int:
        return len(result["scan"])

    wf = Workflow("big", [Step("scan", scan), Step("size", size)], version="1")
    async with Client(store_url, workflows=[wf]) as client:
        run = await client.run(wf, None)
        assert (run.status, run.output) == (RunStatus.SUCCEEDED, 3 * 1024 * KiB)
        kinds = [e.kind for e in await client.store.list_events(run.run_id)]
        assert "payload_large" not in kinds  # the record holds a reference


async def test_without_a_blob_store_compression_still_brings_a_value_under_the_limit(tmp_path: Path) -> None:
    def words(_: Any) -> dict[str, Any]:
        return {"text": "the same sentence, again and again. " * 90_000}  # 3.1 MiB of JSON

    wf = compress_after(step=0, strategy="zstd")(
        Workflow("words", [Step("words", words), Step("size", lambda r: len(r["text"]))], version="1")
    )
    for url in in_schema():  # PostgreSQL has no blob store unless one is named
        async with Client(url, workflows=[wf]) as client:
            run = await client.run(wf, None)
            assert run.status is RunStatus.SUCCEEDED and run.output == 36 * 90_000
            (step, _) = await client.store.get_steps(run.run_id)
            assert step.meta[_blobs.PACKED]["encoding"] == "zstd" and len(step.output) < 64 * KiB


async def test_a_workers_retention_deletes_the_blobs_of_the_runs_it_prunes(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'runs.db'}"
    wf = intake()
    store = open_store(url)
    try:
        async with Engine(store, workflows=[wf], retain_seconds=0.01) as engine:
            record = await engine.run_record(wf, "F-3")
            folder = tmp_path / "runs.db.blobs"
            assert [p.name for p in folder.iterdir()] == [record.run_id]
            await asyncio.sleep(0.02)
            assert await engine.prune_ended() == 1
            assert list(folder.iterdir()) == []
    finally:
        await store.close()
