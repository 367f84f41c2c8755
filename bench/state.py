"""State that stays small: bytes stored per run and time per step on seed 001's intake.

    python -m bench.state [--quick]

The workload is seed 001's "state explosion": a 10-step patient intake whose steps each
return the state they were given plus their own intermediate data (the OCR text and its
tokens, ontology matches, an embedding, retrieved passages, prompts and drafts...), so
that the state grows at every step. Variants, each on a fresh SQLite file
(``synchronous=FULL``, as shipped):

* **as written**: no schema, no compression, nothing offloaded (the floor);
* **offload**: the default SQLite store: stored forms above 64 KiB go to the blob directory;
* **compress**: ``compress_after(step=5, strategy="gzip")`` (or ``"zstd"``) alone;
* **schema**: a ``StepSchema`` on every step keeping the fields later steps read;
* **schema + gzip** / **schema + zstd**: both, as seed 001 writes them.

Bytes are the database's pages in use after ``PRAGMA wal_checkpoint`` (grown per run)
plus the blob directory's bytes; time is the median over runs of a whole run divided by
its 10 steps.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from orchestrate import Engine, Step, StepSchema, Workflow, compress_after
from orchestrate.store import use_blob_store
from orchestrate.store.sqlite import SQLiteStore

_DICTATION = (
    "patient reports intermittent chest pain radiating left arm since tuesday denies fever history of "
    "hypertension type two diabetes on metformin warfarin ibuprofen allergic penicillin latex mother "
    "father siblings smoker quit 2019 alcohol social exercise walks daily weight stable sleep poor"
)
WORDS = tuple(_DICTATION.split())


def _text(rng: random.Random, chars: int) -> str:
    out: list[str] = []
    size = 0
    while size < chars:
        word = rng.choice(WORDS)
        out.append(word)
        size += len(word) + 1
    return " ".join(out)[:chars]


def _steps(rng_seed: int) -> list[tuple[str, Callable[[dict[str, Any]], dict[str, Any]], list[str]]]:
    """``(name, function, fields later steps read)`` of the 10 intake steps."""

    def rng(name: str, data: dict[str, Any]) -> random.Random:
        return random.Random(f"{rng_seed}:{name}:{data.get('patient_id')}")

    def extract(form: dict[str, Any]) -> dict[str, Any]:
        r = rng("extract", form)
        ocr = _text(r, 5000)
        return {
            "patient_id": form["form_id"],
            "extracted_fields": {"name": "J. Doe", "dob": "1961-03-02", "medications": ["warfarin", "ibuprofen"]},
            "raw_ocr": ocr,
            "tokens": [{"text": t, "score": round(r.random(), 4)} for t in ocr.split()],
        }

    def validate(data: dict[str, Any]) -> dict[str, Any]:
        r = rng("validate", data)
        matches = [
            {"code": f"SNOMED:{r.randrange(10**8)}", "term": _text(r, 40), "score": r.random()} for _ in range(150)
        ]
        return {**data, "codes": ["RxNorm:1001", "RxNorm:1002"], "ontology_matches": matches}

    def interactions(data: dict[str, Any]) -> dict[str, Any]:
        r = rng("interactions", data)
        return {**data, "flags": ["warfarin + ibuprofen: bleeding risk"], "evidence": _text(r, 6000)}

    def embed(data: dict[str, Any]) -> dict[str, Any]:
        r = rng("embed", data)
        return {**data, "embedding": [round(r.gauss(0, 1), 6) for _ in range(384)]}

    def retrieve(data: dict[str, Any]) -> dict[str, Any]:
        r = rng("retrieve", data)
        return {**data, "passages": [{"id": i, "text": _text(r, 500)} for i in range(20)]}

    def prompt(data: dict[str, Any]) -> dict[str, Any]:
        r = rng("prompt", data)
        return {**data, "prompt": _text(r, 8000)}

    def summarise(data: dict[str, Any]) -> dict[str, Any]:
        r = rng("summarise", data)
        return {**data, "summary": _text(r, 1200), "draft_history": [_text(r, 1200) for _ in range(3)]}

    def review_notes(data: dict[str, Any]) -> dict[str, Any]:
        return {**data, "review": {"reviewer": "dr_okafor", "approved": True, "notes": "ok"}}

    def ehr_payload(data: dict[str, Any]) -> dict[str, Any]:
        return {**data, "ehr": {"patient_id": data["patient_id"], "summary": data["summary"], "codes": data["codes"]}}

    def update(data: dict[str, Any]) -> dict[str, Any]:
        return {"patient_id": data["patient_id"], "ehr_update": "EHR-UPD-0001", "flags": data["flags"]}

    keep_base = ["patient_id", "extracted_fields"]
    return [
        ("extract", extract, keep_base),
        ("validate", validate, [*keep_base, "codes"]),
        ("interactions", interactions, [*keep_base, "codes", "flags"]),
        ("embed", embed, [*keep_base, "codes", "flags", "embedding"]),
        ("retrieve", retrieve, [*keep_base, "codes", "flags", "passages"]),
        ("prompt", prompt, [*keep_base, "codes", "flags", "prompt"]),
        ("summarise", summarise, [*keep_base, "codes", "flags", "summary"]),
        ("review_notes", review_notes, [*keep_base, "codes", "flags", "summary", "review"]),
        ("ehr_payload", ehr_payload, ["patient_id", "summary", "codes", "flags", "ehr"]),
        ("update", update, ["patient_id", "ehr_update", "flags"]),
    ]


VARIANTS: dict[str, dict[str, Any]] = {
    "as written": {"schema": False, "compress": None, "offload": False},
    "offload (default)": {"schema": False, "compress": None, "offload": True},
    "compress gzip": {"schema": False, "compress": "gzip", "offload": False},
    "compress zstd": {"schema": False, "compress": "zstd", "offload": False},
    "schema": {"schema": True, "compress": None, "offload": False},
    "schema + gzip": {"schema": True, "compress": "gzip", "offload": False},
    "schema + zstd": {"schema": True, "compress": "zstd", "offload": False},
}


def _workflow(name: str, *, schema: bool, compress: str | None) -> Workflow:
    nodes = [
        Step(step, fn, schema=StepSchema(keep=kept) if schema else None, isolation="inline")
        for step, fn, kept in _steps(7)
    ]
    wf = Workflow(name.replace(" ", "_").replace("+", "and").replace("(", "").replace(")", ""), nodes, version="1")
    return compress_after(step=5, strategy=compress)(wf) if compress else wf  # type: ignore[arg-type]


def _pages_in_use(path: str) -> int:
    conn = sqlite3.connect(path)
    try:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        pages = conn.execute("PRAGMA page_count").fetchone()[0]
        page = conn.execute("PRAGMA page_size").fetchone()[0]
        free = conn.execute("PRAGMA freelist_count").fetchone()[0]
        return int((pages - free) * page)
    finally:
        conn.close()


def _dir_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) if folder.is_dir() else 0


async def measure(variant: str, runs: int) -> tuple[float, float, float, float]:
    """``(database bytes per run, blob bytes per run, ms per step, record JSON bytes per run)``."""
    settings = VARIANTS[variant]
    wf = _workflow(variant, schema=settings["schema"], compress=settings["compress"])
    with tempfile.TemporaryDirectory(prefix="bench-state-") as tmp:
        path = os.path.join(tmp, "intake.db")
        store = SQLiteStore(f"sqlite:///{path}")
        if not settings["offload"]:
            use_blob_store(store, None)
        async with Engine(store, workflows=[wf]) as engine:
            await engine.run(wf, {"form_id": "FORM-warmup"})
            base = _pages_in_use(path)
            blobs0 = _dir_bytes(Path(path + ".blobs"))
            times = []
            for i in range(runs):
                started = time.perf_counter()
                await engine.run(wf, {"form_id": f"FORM-2026-07-{i:04d}"})
                times.append(time.perf_counter() - started)
            grown = _pages_in_use(path) - base
            blobs = _dir_bytes(Path(path + ".blobs")) - blobs0
            last = (await store.list_runs(limit=1))[0]
            record_bytes = sum(
                len(str(s.output if s.output is not None else "")) for s in await store.get_steps(last.run_id)
            )
    return grown / runs, blobs / runs, statistics.median(times) * 1000 / 10, float(record_bytes)


def _table(headers: tuple[str, ...], rows: list[tuple[str, ...]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    return "\n".join(lines)


async def report(runs: int) -> list[tuple[str, ...]]:
    results = {variant: await measure(variant, runs) for variant in VARIANTS}
    floor_db, _, floor_ms, _ = results["as written"]
    rows = []
    for variant, (db, blobs, ms, _) in results.items():
        total = db + blobs
        rows.append(
            (
                variant,
                f"{db / 1024:,.1f}",
                f"{blobs / 1024:,.1f}",
                f"{total / 1024:,.1f}",
                f"{(1 - total / floor_db) * 100:.0f}%",
                f"{ms:.2f}",
                f"{ms - floor_ms:+.2f}",
            )
        )
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.state", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="10 runs per variant instead of 40")
    args = parser.parse_args(argv)
    rows = asyncio.run(report(10 if args.quick else 40))
    print("seed 001 intake, 10 steps, SQLite (synchronous=FULL): stored per run and time per step")
    headers = ("variant", "db KiB/run", "blobs KiB/run", "total KiB/run", "saved", "ms/step", "vs as written")
    print(_table(headers, rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
