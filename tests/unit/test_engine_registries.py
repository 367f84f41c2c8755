"""Registries an engine or a client owns beside the process-wide ones: human queues
(``Engine(review_queues=...)``) and approval checks (``Client(approvers=...)``)."""

from __future__ import annotations

from typing import Any

import pytest

from orchestrate import Client, Engine, Fallback, HumanReviewGate, Step, Workflow
from orchestrate.errors import InvalidInputError, ReviewPermissionError
from orchestrate.review import approval, review_queue
from orchestrate.review.gate import APPROVERS
from orchestrate.store import InMemoryStore


def _triage(doc: dict[str, Any]) -> Any:
    return Fallback("triage", doc)


WF = Workflow("intake", [Step("check", _triage), Step("file", lambda d: f"filed {d['id']}")], version="1")


async def _item_of(engine: Engine) -> Any:
    client = Client(engine=engine)
    parked = await client.run(WF, {"id": 1})
    assert parked.wait_reason == "signal:queue:triage:check"
    (item,) = await client.list_reviews(run_id=parked.run_id)
    return item


async def test_each_engine_uses_its_own_gate_for_a_queue() -> None:
    nurses = HumanReviewGate(roles=["nurse"], priority="high")
    async with Engine(InMemoryStore(), review_queues={"triage": nurses}) as owned:
        item = await _item_of(owned)
    assert (item.queue, item.roles, item.priority) == ("triage", ["nurse"], "high")
    async with Engine(InMemoryStore()) as plain:  # no gate of its own, none for the process
        item = await _item_of(plain)
    assert item.allowed_roles == []


async def test_an_engine_s_queue_wins_over_the_process_s_and_others_fall_back_to_it() -> None:
    review_queue("triage", HumanReviewGate(roles=["clerk"]))
    try:
        async with Engine(InMemoryStore(), review_queues={"triage": HumanReviewGate(roles=["nurse"])}) as owned:
            assert (await _item_of(owned)).roles == ["nurse"]
        async with Engine(InMemoryStore(), review_queues={"other": HumanReviewGate(roles=["nurse"])}) as other:
            assert (await _item_of(other)).roles == ["clerk"]
    finally:
        review_queue("triage", HumanReviewGate())


@pytest.mark.parametrize(
    ("queues", "message"),
    [
        ({"triage": "nurses"}, "review_queues['triage'] must be a HumanReviewGate or TieredGate, got str"),
        ({"": HumanReviewGate()}, "a queue name must be a non-empty string"),
        (["triage"], "review_queues must map queue names to gates"),
    ],
)
def test_a_queue_that_is_not_a_gate_is_refused_naming_it(queues: Any, message: str) -> None:
    with pytest.raises(InvalidInputError, match=message.replace("[", r"\[").replace("]", r"\]")):
        Engine(InMemoryStore(), review_queues=queues)


# approval checks ----------------------------------------------------------------------------
DOSING = Workflow(
    "dosing",
    [Step("prescribe", lambda d: d, gate=HumanReviewGate(roles=["pharmacist"])), Step("send", lambda d: d["dose"])],
    version="1",
)


async def test_a_client_s_approval_check_refuses_what_it_does_not_approve() -> None:
    async with Engine(InMemoryStore()) as engine:
        careful = Client(engine=engine, approvers={"pharmacist": lambda d: d["dose"] <= 10})
        parked = await careful.run(DOSING, {"dose": 20})
        (item,) = await careful.list_reviews(run_id=parked.run_id)
        with pytest.raises(ReviewPermissionError, match="approval check of role 'pharmacist'"):
            await careful.approve(item.review_id, by="ph_1", role="pharmacist")
        # Another client of the same store, without the check, is not bound by it.
        await Client(engine=engine).approve(item.review_id, by="ph_1", role="pharmacist")
        assert (await careful.resume(parked.run_id)).output == 20


async def test_a_client_s_check_wins_over_the_process_s_for_its_role() -> None:
    approval(role="pharmacist")(lambda d: False)  # the process refuses every approval
    try:
        async with Engine(InMemoryStore()) as engine:
            lenient = Client(engine=engine, approvers={"pharmacist": lambda d: True})
            parked = await lenient.run(DOSING, {"dose": 5})
            (item,) = await lenient.list_reviews(run_id=parked.run_id)
            with pytest.raises(ReviewPermissionError):
                await Client(engine=engine).approve(item.review_id, by="ph_1", role="pharmacist")
            await lenient.approve(item.review_id, by="ph_1", role="pharmacist")
            assert (await lenient.resume(parked.run_id)).output == 5
    finally:
        APPROVERS.pop("pharmacist", None)
