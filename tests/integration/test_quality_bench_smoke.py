"""``bench.quality`` runs end to end at its smallest sizes (no timing asserted: that is the benchmark's)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

from bench.quality import queries

ROOT = Path(__file__).resolve().parents[2]


def test_the_query_table_has_a_row_per_query_with_and_without_the_index() -> None:
    rows = asyncio.run(queries([1_000], ["sqlite"]))
    assert [r[2] for r in rows] == [
        "step_results(last=100)",
        "step_stats(100 x 10)",
        "evaluator first pass",
        "evaluator steady pass",
    ]
    assert all(r[0] == "sqlite" and r[1] == "1,000" and float(r[3]) > 0 and float(r[4]) > 0 for r in rows)


def test_the_instruction_counting_entry_runs_the_observed_chain() -> None:
    for store in ("memory", "sqlite"):
        done = subprocess.run(
            [sys.executable, "-m", "bench.quality", "instructions", "observed", store, "3"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=100,
        )
        assert done.returncode == 0, done.stderr
    wrong = subprocess.run(
        [sys.executable, "-m", "bench.quality", "instructions", "nothing", "memory", "3"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=100,
    )
    assert wrong.returncode == 2 and "usage:" in wrong.stderr
