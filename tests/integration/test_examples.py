"""Every example runs and does what its story says: statuses, outputs, fallbacks, reviews."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

from orchestrate import Client, RunStatus, StepStatus

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
SEEDS = sorted((EXAMPLES / "seeds").glob("seed*.py"))


@pytest.fixture
def load() -> Iterator[object]:
    """Import an example by path (fresh module state each time), forgotten afterwards."""
    from orchestrate.review import APPROVERS

    names: list[str] = []
    approvers = dict(APPROVERS)  # examples register @approval handlers process-wide

    def _load(relative: str) -> ModuleType:
        path = EXAMPLES / relative
        name = f"_example_{path.stem}"
        spec = importlib.util.spec_from_file_location(name, path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # dataclasses look their module up while being built
        names.append(name)
        spec.loader.exec_module(module)
        return module

    yield _load
    for name in names:
        sys.modules.pop(name, None)
    APPROVERS.clear()
    APPROVERS.update(approvers)


def test_every_seed_has_an_example():
    assert [p.name for p in SEEDS] == [
        "seed000_compliance.py",
        "seed001_patient_intake.py",
        "seed001_patterns.py",
        "seed002_document_processing.py",
        "seed002_shared_context.py",
        "seed002_supervisor.py",
        "seed003_moderation.py",
        "seed003_support.py",
    ]


# seed 000 -------------------------------------------------------------------------------------


async def test_seed000_low_confidence_parks_on_the_queue_and_resumes_after_the_review(load, capsys):
    example = load("seeds/seed000_compliance.py")
    result = await example.main()

    assert result["routine"].confidence == 0.93  # passed straight through, no review
    parked = result["parked"]
    assert parked.status is RunStatus.WAITING
    assert parked.wait_reason == "signal:" + example.REVIEW_SIGNAL
    resumed = result["resumed"]
    assert resumed.status is RunStatus.SUCCEEDED
    assert resumed.output["confidence"] == 0.72
    assert "Policy 7.2" in resumed.output["text"]
    steps = {key: (status, fallback) for key, status, _, fallback in result["steps"]}
    assert steps["review_check"] == ("succeeded", "route:human_review_queue")
    assert steps["wait:" + example.REVIEW_SIGNAL][0] == "succeeded"
    assert "reviewer approved; run succeeded" in capsys.readouterr().out


async def test_seed000_a_rejected_document_fails_the_run(load, tmp_path):
    example = load("seeds/seed000_compliance.py")
    store = f"sqlite:///{tmp_path}/compliance.db"
    orchestrator = example.build_orchestrator(store)
    async with Client(store, workflows=[orchestrator]) as client:
        parked = await client.run(orchestrator, example.EXPERIMENTAL)
        assert parked.status is RunStatus.WAITING
        await client.signal(parked.run_id, example.REVIEW_SIGNAL, {"approved": False, "reason": "missing consent"})
        ended = await client.resume(parked.run_id)
    assert ended.status is RunStatus.FAILED
    assert ended.error["name"] == "RejectedError"
    assert "missing consent" in ended.error["message"]


# seed 001 -------------------------------------------------------------------------------------


async def test_seed001_intake_retries_the_blurry_read_and_waits_for_the_doctor(load):
    example = load("seeds/seed001_patient_intake.py")
    result = await example.main()

    assert result["parked"].status is RunStatus.WAITING
    assert result["parked"].wait_reason == "signal:review:generate_summary"
    assert result["ehr_updates_before_approval"] == 0
    steps = result["steps"]
    assert steps["extract_document"].attempts == 2  # LowConfidenceError, then a clean read
    assert steps["extract_document"].meta["attempt_log"][0]["error"] == "LowConfidenceError"
    assert "bleeding risk" in steps["generate_summary"].output
    assert steps["wait:review:generate_summary"].output["approved"] is True
    record = result["record"]
    assert record.status is RunStatus.SUCCEEDED
    assert record.output["ehr_update"] == "EHR-UPD-0001"
    assert len(result["ehr_updates"]) == 1


async def test_seed001_patterns_map_reduce_fallback_and_gate(load):
    example = load("seeds/seed001_patterns.py")
    result = await example.main()

    files = ["intake.pdf", "wrist.jpg", "notes.txt", "referral.pdf"]
    assert sorted(result["consolidated"]) == sorted(files)
    assert result["consolidated"]["wrist.jpg"]["kind"] == "image"
    assert result["durable_batch"].status is RunStatus.SUCCEEDED
    assert result["durable_batch"].output == result["consolidated"]
    # A map's children are recorded as they finish, in any order; the reduce comes after them.
    batch_steps = result["durable_batch_steps"]
    assert sorted(batch_steps[:4]) == [f"extract_document[{i}]" for i in range(4)]
    assert batch_steps[4:] == ["merge_extractions"]

    assert result["primary_calls"] == 3  # the first try and max_retries=2, then the switch
    assert result["complex_answer"].startswith("[ollama/llama3]")
    assert result["simple_answer"].startswith("[ollama/llama3]")

    assert result["gate_parked"].status is RunStatus.WAITING
    assert result["gate_parked"].wait_reason == "signal:review:approve_diagnosis"
    finished = result["gate_finished"]
    assert finished.status is RunStatus.SUCCEEDED
    assert finished.output["diagnosis"] == "distal radius fracture"
    assert finished.output["notified"] == ["orthopedics"]


async def test_seed001_a_rejected_diagnosis_is_not_sent(load):
    example = load("seeds/seed001_patterns.py")
    wf = example.diagnosis_review
    async with Client("memory://", workflows=[wf]) as client:
        parked = await client.run(wf, {"patient": "P-7"})
        await client.decide(parked.run_id, "approve_diagnosis", approved=False, reason="wrong side", by="qa")
        ended = await client.resume(parked.run_id)
        steps = [s.step_key for s in (await client.detail(parked.run_id)).steps]
    assert ended.status is RunStatus.FAILED
    assert ended.error["name"] == "RejectedError"
    assert "notify_care_team" not in steps


# seed 003 -------------------------------------------------------------------------------------


async def test_seed003_support_routes_fails_over_and_logs_errors(load):
    example = load("seeds/seed003_support.py")
    result = await example.main()

    refund = result["refund"]
    assert refund["record"].status is RunStatus.SUCCEEDED
    assert refund["record"].output == {"model": "gpt-4", "reply": "I've issued your refund. (refund issued)"}
    assert "refund_handler" in refund["steps"] and "tech_support" not in refund["steps"]

    technical = result["technical"]
    assert technical["record"].output["model"] == "claude-3-haiku"
    generation = technical["steps"]["response_generation"]
    assert generation.fallback == "call:claude_3_haiku"
    assert generation.meta["error_class"] == "ConnectionError"

    assert "human_escalation" in result["unknown"]["steps"]

    outage = result["outage"]
    assert outage["record"].status is RunStatus.DEAD
    assert outage["record"].error["step"] == "knowledge_retrieval"
    assert outage["steps"]["knowledge_retrieval"].attempts == 2  # FixedRetry(attempts=2)
    assert outage["steps"]["knowledge_retrieval"].status is StepStatus.FAILED
    assert [(r["step"], r["error"]["name"]) for r in result["error_log"]] == [
        ("knowledge_retrieval", "ConnectionError")
    ]


async def test_seed003_moderation_branches_parallel_checks_and_tiers(load):
    example = load("seeds/seed003_moderation.py")
    result = await example.main()

    def final(entry):
        return entry.get("final", entry["record"]).output["action"]

    outcome = {text: (final(r), r["path"]) for text, r in result["moderation"].items()}
    start = ["keyword_filter", "ai_moderator"]
    assert outcome["Buy cheap pills at spam-pharmacy.example"] == ("blocked", [*start, "auto_block"])
    assert outcome["I know where you live and I will hurt you"] == ("blocked", [*start, "auto_block"])
    # held for a moderator, who edits the action to "allowed"
    assert outcome["This movie was so bad I wanted to scream at the screen"] == (
        "allowed",
        [*start, "queue_for_review"],
    )
    assert outcome["You people are animals"] == ("blocked", [*start, "second_opinion", "auto_block"])
    # held for a moderator, who approves the hold
    assert outcome["That referee should be shot for that call"] == (
        "blocked",
        [*start, "second_opinion", "queue_for_review"],
    )
    assert outcome["What a lovely sunset over the bay tonight"] == ("allowed", [*start, "second_opinion", "allow"])

    images = result["images"]
    assert images["sunset.jpg"]["record"].output["action"] == "allowed"
    assert images["beach_party.jpg"]["record"].status is RunStatus.WAITING
    assert final(images["beach_party.jpg"]) == "blocked"
    assert sorted(images["sunset.jpg"]["steps"][:3]) == ["metadata_check", "nsfw_detector", "text_extraction"]

    tiers = result["tiers"]
    assert tiers["T-1"]["record"].status is RunStatus.SUCCEEDED and tiers["T-1"]["record"].output["sent"] is True
    assert tiers["T-2"]["record"].wait_reason == "signal:review:review_normal"
    assert tiers["T-3"]["record"].wait_reason == "signal:review:emergency_escalation"
    assert tiers["T-4"]["record"].wait_reason == "signal:review:review_low"
    assert tiers["T-3"]["finished"].status is RunStatus.SUCCEEDED
    assert tiers["T-3"]["finished"].output["sent"] is True


async def test_seed003_keyword_filter_fails_closed(load):
    example = load("seeds/seed003_moderation.py")

    def broken_filter(text):
        raise RuntimeError("regex engine crashed")

    steps = example.moderation.nodes
    wf = example.Workflow(
        "moderation_fail_closed",
        [example.Step("keyword_filter", broken_filter, timeout=0.5, fallback=steps[0].fallback), *steps[1:]],
        components=example.COMPONENTS,
    )
    async with Client("memory://", workflows=[wf]) as client:
        record = await client.run(wf, "anything at all")
        detail = await client.detail(record.run_id)
    assert record.status is RunStatus.SUCCEEDED
    assert record.output["action"] == "blocked"
    assert detail.steps[0].fallback == "value"


# the README demo --------------------------------------------------------------------------------


async def test_support_demo_falls_back_to_the_cached_location_and_flags_review(load, tmp_path):
    example = load("support_demo.py")
    detail = await example.main(["--store", f"sqlite:///{tmp_path}/demo.db"])

    assert detail.run.status is RunStatus.SUCCEEDED
    steps = {s.step_key: s for s in detail.steps}
    tracking = steps["carrier_tracking"]
    assert tracking.fallback == "cached"
    assert tracking.meta["error_class"] == "StepTimeoutError"
    assert tracking.output["city"] == "Memphis, TN"  # the earlier run's successful tracking
    compensation = steps["check_compensation"]
    assert compensation.fallback == "value"
    assert compensation.meta["flag"] == "human_review"
    assert compensation.attempts == 2
    assert steps["send_reply"].status is StepStatus.SUCCEEDED
    output = detail.run.output
    assert output["needs_human_review"] is True
    assert "2026-07-16" in output["reply"]  # the ETA still went out
    assert "SORRY15" not in output["reply"]  # no discount without a working compensation check
    flags = [e.data.get("flag") for e in detail.events if e.kind == "step_fallback"]
    assert "human_review" in flags


async def test_support_demo_without_a_cached_location_still_answers_nothing_it_cannot(load):
    example = load("support_demo.py")
    example.WORLD.carrier_up = False
    async with Client("memory://", workflows=[example.support]) as client:
        record = await client.run(example.support, example.MESSAGE)
        steps = {s.step_key: s for s in (await client.detail(record.run_id)).steps}
    # No earlier tracking of this parcel in this store: the cached fallback has nothing to give.
    assert record.status is RunStatus.DEAD
    assert record.error["step"] == "carrier_tracking"
    assert steps["carrier_tracking"].meta["fallbacks_failed"][0]["fallback"] == "cached"
    assert "send_reply" not in steps


# runnable as scripts, leaving nothing behind ---------------------------------------------------------


@pytest.mark.parametrize("path", SEEDS, ids=[p.stem for p in SEEDS])
def test_seed_example_runs_as_a_script_and_leaves_no_files(path, tmp_path):
    done = subprocess.run(
        [sys.executable, str(path)], cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip()
    assert list(tmp_path.iterdir()) == []


# the docs that point at them ------------------------------------------------------------------

DOCS = EXAMPLES.parent / "docs"
# Every Python block of docs/ (patterns.md's included) runs in tests/integration/test_docs.py.


def test_seeds_doc_links_every_example_and_only_existing_ones():
    text = (DOCS / "seeds.md").read_text()
    linked = set(re.findall(r"\(\.\./(examples/[\w/]+\.py)\)", text))
    examples = [*SEEDS, *EXAMPLES.glob("*.py"), *EXAMPLES.glob("*/main.py")]
    on_disk = {str(p.relative_to(EXAMPLES.parent)) for p in examples}
    assert linked == on_disk
