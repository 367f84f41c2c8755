"""The review-gate examples run and do what their stories say."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType

import pytest

from orchestrate import RunStatus
from orchestrate.review import APPROVERS, ReviewStatus

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.fixture(autouse=True)
def _no_approval_checks_from_elsewhere() -> Iterator[None]:
    # Approval checks are process-wide per role: an example imported by another test may
    # have registered one for a role used here.
    saved = dict(APPROVERS)
    APPROVERS.clear()
    yield
    APPROVERS.clear()
    APPROVERS.update(saved)


@pytest.fixture
def load() -> Iterator[Callable[[str], ModuleType]]:
    names: list[str] = []

    def _load(name: str) -> ModuleType:
        path = EXAMPLES / name
        module_name = f"_review_example_{path.stem}"
        spec = importlib.util.spec_from_file_location(module_name, path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module
        names.append(module_name)
        spec.loader.exec_module(module)
        return module

    yield _load
    for name in names:
        sys.modules.pop(name, None)


async def test_patient_intake_waits_for_both_roles_and_writes_the_corrected_summary(load, capsys) -> None:
    example = load("patient_intake_review.py")
    result = await example.main()

    assert result["parked"].status is RunStatus.WAITING
    item = result["item"]
    assert item.required_roles == ["medical_reviewer", "quality_assurance"] and item.priority == "high"
    assert item.sla_seconds == 900 and item.meta["on_timeout"] == "escalate:attending_physician"
    assert "right wrist" in item.payload["summary"]

    decided = result["decided"]
    assert decided.status is ReviewStatus.APPROVED
    assert [(a["by"], a["role"], a["outcome"]) for a in decided.approvals] == [
        ("dr_okafor", "medical_reviewer", "edited"),
        ("qa_lee", "quality_assurance", "approved"),
    ]
    (written,) = result["ehr"]  # exactly one EHR write, with the corrected text
    assert "left wrist" in written["summary"] and "Hold ibuprofen" in written["summary"]
    assert result["finished"].output["summary"] == written["summary"]
    assert result["history"] == ["review_created", "review_approval_recorded", "review_decided"]
    out = capsys.readouterr().out
    assert "refused: role 'intern' may not decide" in out
    assert "a late decision: review" in out and "already approved by qa_lee" in out
    assert "after one role the run is still waiting" in out


async def test_confidence_tiers_route_each_ticket_and_escalate_the_sensitive_one(load, capsys) -> None:
    example = load("confidence_tiers.py")
    result = await example.main()

    results = result["results"]
    assert results["T-1"].output.startswith("sent to T-1")
    assert results["T-4"].output == "sent to T-4: Our shop opens at 10 on Sundays."  # the agent's edit
    assert all(r.status is RunStatus.SUCCEEDED for r in results.values())
    assert result["t3_events"] == [
        "review_created",
        "review_sla_warning",
        "review_escalated",
        "review_created",
        "review_decided",
    ]
    stats = result["stats"]
    assert stats.gates == 3 and stats.escalations == 1 and stats.escalation_rate == pytest.approx(1 / 3, abs=1e-3)
    out = capsys.readouterr().out
    assert "T-1 conf=0.93 -> succeeded (auto-sent)" in out
    assert "T-2 conf=0.62 -> waiting (normal>=0.5: normal for ['support_agent'], SLA 7200s)" in out
    assert "T-3 conf=0.31 -> waiting (emergency: urgent for ['senior_agent'], SLA 1800s)" in out
    assert "T-4 conf=0.22 -> waiting (otherwise: low for ['support_agent'], SLA 21600s)" in out


@pytest.mark.parametrize("name", ["patient_intake_review.py", "confidence_tiers.py"])
def test_the_examples_run_as_scripts(name: str) -> None:
    done = subprocess.run([sys.executable, str(EXAMPLES / name)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "succeeded" in done.stdout
