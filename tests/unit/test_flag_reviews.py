"""``flag="human_review"`` opens a real review item people see and close; the run goes on."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from orchestrate import Client, Fallback, RunStatus, Step, Workflow
from orchestrate.review import ReviewStatus


def _support(calls: list[str]) -> Workflow:
    def compensation(order: dict[str, Any]) -> dict[str, Any]:
        calls.append("compensation")
        raise ConnectionError("loyalty service down")

    return Workflow(
        "eta_with_flag",
        [
            Step("eta", lambda order: {**order, "eta": "Friday"}),
            Step(
                "compensation",
                compensation,
                fallback=Fallback.value({"eta": "Friday", "discount": None}, flag="human_review"),
            ),
            Step("reply", lambda d: f"Your parcel arrives {d['eta']}."),
        ],
        version="1",
    )


async def test_a_flagged_fallback_opens_an_item_without_holding_the_run(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'flags.db'}"
    calls: list[str] = []
    wf = _support(calls)
    async with Client(url, workflows=[wf]) as client:
        done = await client.run(wf, {"id": "4829"})
        assert done.status is RunStatus.SUCCEEDED and done.output == "Your parcel arrives Friday."
        (item,) = await client.list_reviews(run_id=done.run_id)
        assert item.queue == "human_review" and item.status is ReviewStatus.PENDING
        assert item.payload["step"] == "compensation" and item.payload["output"] == {"eta": "Friday", "discount": None}
        assert item.meta["error"]["message"] == "loyalty service down"
        # A replay of the run does not open a second item.
        await client.replay(done.run_id, from_step="reply")
        assert len(await client.list_reviews(run_id=done.run_id, status=None)) == 1
    # Someone looks at it later, from another process, after the run ended, and closes it.
    async with Client(url, workflows=[wf]) as client:
        closed = await client.approve(item.review_id, by="support_lead")
        assert closed.status is ReviewStatus.APPROVED
        assert (await client.get(done.run_id)).status is RunStatus.SUCCEEDED
        kinds = [e.kind for e in (await client.detail(done.run_id)).events]
    assert kinds.count("review_created") == 1 and "review_decided" in kinds
