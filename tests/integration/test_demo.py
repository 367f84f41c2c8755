"""The README demo, run the way a user runs it: a subprocess printing the run's timeline."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

DEMO = Path(__file__).resolve().parents[2] / "examples" / "support_demo.py"


def run_demo(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "200"}  # wide enough that rich truncates no column
    env.pop("ORCHESTRATE_STORE", None)
    return subprocess.run(
        [sys.executable, str(DEMO), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture(scope="module")
def demo_output(tmp_path_factory: pytest.TempPathFactory) -> str:
    tmp_path = tmp_path_factory.mktemp("demo")
    done = run_demo(tmp_path, "--store", f"sqlite:///{tmp_path}/store/demo.db")
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_timeline_shows_the_cached_fallback_after_the_tracking_timeout(demo_output):
    lines = [line for line in demo_output.splitlines() if "carrier_tracking" in line]
    assert any("fallback cached" in line and "StepTimeoutError" in line for line in lines), demo_output


def test_timeline_shows_the_compensation_fallback_flagged_for_human_review(demo_output):
    assert re.search(r"check_compensation.*fallback value after ConnectionError", demo_output), demo_output
    assert "human_review" in demo_output


def test_the_customer_still_gets_the_eta_and_the_run_succeeds(demo_output):
    assert "Memphis, TN" in demo_output
    assert "2026-07-16" in demo_output
    assert re.search(r"status\s+succeeded", demo_output), demo_output


def test_default_store_is_the_embedded_sqlite_file_under_dot_orchestrate(tmp_path):
    first = run_demo(tmp_path)
    assert first.returncode == 0, first.stderr
    assert [p.name for p in tmp_path.iterdir()] == [".orchestrate"]
    assert (tmp_path / ".orchestrate" / "demo.db").is_file()
    again = run_demo(tmp_path)  # a second demo on the same store works the same way
    assert again.returncode == 0, again.stderr
    assert "fallback cached" in again.stdout
    ids = {re.search(r"runs show (\w+)", out).group(1) for out in (first.stdout, again.stdout)}
    assert len(ids) == 2


def test_engine_logs_stay_off_the_terminal_unless_asked_for(tmp_path):
    quiet = run_demo(tmp_path, "--store", "memory://")
    assert quiet.returncode == 0, quiet.stderr
    assert "step_fallback" not in quiet.stderr
    loud = run_demo(tmp_path, "--store", "memory://", "--logs")
    assert loud.returncode == 0, loud.stderr
    assert '"event": "step_fallback"' in loud.stderr


def test_demo_classifies_and_retrieves_with_the_embedded_models(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    demo = Path(__file__).resolve().parents[2] / "examples" / "support_demo.py"
    result = subprocess.run(
        [sys.executable, str(demo), "--store", f"sqlite:///{tmp_path}/demo.db"],
        capture_output=True,
        text=True,
        timeout=300,
        env={**__import__("os").environ, "COLUMNS": "120"},
    )
    assert result.returncode == 0, result.stderr
    assert "intent: order_status" in result.stdout  # MiniLM nearest-centroid classifier
    assert "Order late or stuck in transit" in result.stdout  # MiniLM retrieval over the articles
