"""``python -m bench --quick`` runs and writes its results (orchestrate only, no peers).

No timing is asserted here: timing belongs to the benchmark run itself. This checks that
the suite runs end to end and that its results file has the shape the docs and the
targets are read from.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

OUR_KEYS = {
    "ours.memory.async",
    "ours.memory.durable_fn",
    "ours.memory.sync_inline",
    "ours.memory.sync_thread",
    "ours.sqlite.full",
    "ours.sqlite.normal",
    "ours.sqlite.full.concurrent",
    "ours.sqlite.normal.concurrent",
    "ours.memory.map",
}
OUR_TARGETS = (
    "SQLite (synchronous=FULL) cost per step / bare insert+commit",
    "100 concurrent runs: aggregate cost per step / per-commit floor",
    "1,000-way map: time per child / asyncio.gather",
)
PEER_TARGETS = (
    "def steps with a timeout (graph): overhead below LangGraph sync invoke's",
    "def steps with a timeout (graph): overhead below Burr's",
)
ROW_FIELDS = {
    "key",
    "group",
    "system",
    "label",
    "floor",
    "per_step_us",
    "floor_per_step_us",
    "overhead_per_step_us",
    "ratio",
    "runs",
    "repeats",
    "samples_us",
    "floor_samples_us",
    "extra",
    "note",
    "skipped",
}


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_quick_bench_writes_results_for_our_engine(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--no-peers", "--results", str(tmp_path)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=280,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "targets:" in done.stdout

    document = json.loads((tmp_path / "results.json").read_text(encoding="utf-8"))
    assert set(document) >= {"meta", "machine", "results", "comparisons", "targets"}
    assert document["meta"]["quick"] is True
    groups = set(document["meta"]["groups"])
    assert groups >= {"overhead", "sqlite", "throughput", "map"}
    assert not groups & {"langgraph", "burr", "dbos"}
    assert {"cpu", "cores", "memory_gib", "disk", "python", "sqlite", "packages"} <= set(document["machine"])

    rows = {row["key"]: row for row in document["results"]}
    assert set(rows) >= OUR_KEYS, "every measurement of our engine ran"
    assert not {row["system"] for row in rows.values()} & {"LangGraph", "Burr", "DBOS"}, "no peer ran"
    for key in OUR_KEYS:
        row = rows[key]
        assert set(row) == ROW_FIELDS, key
        assert row["skipped"] is None, f"{key}: {row['skipped']}"
        assert row["per_step_us"] > 0 and row["floor_per_step_us"] > 0, key
        # The ratio is the median of per-round ratios: within their interquartile range.
        assert row["extra"]["ratio_q1"] <= row["ratio"] <= row["extra"]["ratio_q3"], key
        assert row["extra"]["rounds"] == row["repeats"], key
        assert len(row["samples_us"]) == len(row["floor_samples_us"]) == row["repeats"] >= 1, key
    assert rows["ours.sqlite.full"]["extra"]["commits_per_run"] > 0
    assert rows["ours.sqlite.full.concurrent"]["extra"]["steps_per_batch"] == 1000

    targets = {t["name"]: t for t in document["targets"]}
    ours = [targets[name] for name in OUR_TARGETS]
    assert all(t["value"] is not None and t["met"] is not None for t in ours), ours
    # Without peers, the comparisons with them cannot be made.
    assert all(targets[name]["met"] is None for name in PEER_TARGETS)
    assert (tmp_path / "results.md").read_text(encoding="utf-8").startswith("# Benchmark results (quick smoke")


def test_detection_benchmark_runs_and_reports_every_monitor() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bench.detection", "--shifts", "2", "--quiet-runs", "500"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    rows = [line for line in done.stdout.splitlines() if line.startswith(("income", "confidence"))]
    assert len(rows) == 5, done.stdout
    assert done.stderr == ""  # alerts are counted, not logged
