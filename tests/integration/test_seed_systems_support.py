"""Order #4829 (seed 000) on the embedded MiniLM models: each fault alone, then both, on SQLite.

"If the tracking agent times out, the orchestrator falls back to a cached location. If the
compensation check fails, it still sends the ETA but flags a human review." The models
load once for the module (10-25 s on two cores); each test then runs in about a second.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from orchestrate import Client, RunStatus, StepStatus
from orchestrate.review import ReviewStatus

DEMO = Path(__file__).resolve().parents[2] / "examples" / "support_demo.py"


@pytest.fixture(scope="module")
def demo() -> Iterator[ModuleType]:
    name = "_seed_system_support_demo"
    spec = importlib.util.spec_from_file_location(name, DEMO)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    module.embedded_models()  # the classifier and the retriever, once for every test here
    yield module
    sys.modules.pop(name, None)


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'support.db'}"


async def answer(demo: ModuleType, url: str, *, carrier_up: bool, loyalty_up: bool) -> tuple[Any, dict[str, Any]]:
    """Yesterday's question with every service up (it caches the parcel's location), then today's."""
    async with Client(url, workflows=[demo.support]) as client:
        demo.WORLD.carrier_up, demo.WORLD.loyalty_up = True, True
        await client.run(demo.support, demo.EARLIER_MESSAGE)
        demo.WORLD.carrier_up, demo.WORLD.loyalty_up = carrier_up, loyalty_up
        try:
            record = await client.run(demo.support, demo.MESSAGE)
        finally:
            demo.WORLD.carrier_up, demo.WORLD.loyalty_up = True, True
        steps = {s.step_key: s for s in (await client.detail(record.run_id)).steps}
    return record, steps


async def test_a_tracking_timeout_answers_with_the_cached_location(demo: ModuleType, url: str):
    record, steps = await answer(demo, url, carrier_up=False, loyalty_up=True)
    assert record.status is RunStatus.SUCCEEDED
    assert steps["classify_intent"].output["label"] == "order_status"  # MiniLM
    tracking = steps["carrier_tracking"]
    assert (tracking.fallback, tracking.meta["error_class"]) == ("cached", "StepTimeoutError")
    assert tracking.output["city"] == "Memphis, TN"
    assert "2026-07-16" in record.output["reply"] and "SORRY15" in record.output["reply"]
    async with Client(url) as client:
        assert await client.list_reviews(status=None) == []  # nothing for people to look at


async def test_a_failed_compensation_check_still_sends_the_eta_and_opens_a_review_item(demo: ModuleType, url: str):
    record, steps = await answer(demo, url, carrier_up=True, loyalty_up=False)
    assert record.status is RunStatus.SUCCEEDED
    compensation = steps["check_compensation"]
    assert (compensation.fallback, compensation.meta["flag"], compensation.attempts) == ("value", "human_review", 2)
    assert steps["send_reply"].status is StepStatus.SUCCEEDED
    assert "2026-07-16" in record.output["reply"] and "SORRY15" not in record.output["reply"]
    assert record.output["needs_human_review"] is True

    # A support agent, in another process, finds the flagged item after the run ended and closes it.
    async with Client(url) as agent:
        (item,) = await agent.list_reviews(run_id=record.run_id)
        assert (item.queue, item.step_key, item.status) == ("human_review", "check_compensation", ReviewStatus.PENDING)
        assert item.meta["error"]["name"] == "ConnectionError"
        closed = await agent.approve(item.review_id, by="agent_7", comment="sent SORRY15 by hand")
        assert closed.status is ReviewStatus.APPROVED
        assert await agent.list_reviews() == []
        assert (await agent.get(record.run_id)).status is RunStatus.SUCCEEDED  # the run did not wait for it


async def test_both_faults_at_once_reply_with_the_cached_eta_and_flag_the_compensation(demo: ModuleType, url: str):
    record, steps = await answer(demo, url, carrier_up=False, loyalty_up=False)
    assert record.status is RunStatus.SUCCEEDED
    assert steps["carrier_tracking"].fallback == "cached"
    assert steps["check_compensation"].meta["flag"] == "human_review"
    assert record.output["eta"] == "2026-07-16" and record.output["location"] == "Memphis, TN"
    async with Client(url) as agent:
        (item,) = await agent.list_reviews(role="support_agent")  # open to anyone: any role sees it
        assert item.run_id == record.run_id
