"""Steps that return model results record model, tokens and cost; a run sums them."""

from __future__ import annotations

from orchestrate import Client, Engine, Step, Workflow
from orchestrate.models.router import CostLedger, Price, PriceTable, Router
from orchestrate.store import InMemoryStore
from orchestrate.testing import FunctionModel


async def test_tokens_and_cost_are_recorded_per_step_and_summed_per_run():
    model = FunctionModel(lambda request: "Your parcel is in Memphis.", model_id="small-1")
    prices = PriceTable({"small-1": Price(input_per_mtok=1.0, output_per_mtok=2.0)})
    router = Router({"small": model}, default="small", prices=prices, ledger=CostLedger())

    async def draft(message: str):
        return await router.generate(message)

    async def polish(result):
        return await router.generate(f"Polish: {result.text}")

    wf = Workflow("usage", [Step("draft", draft), Step("polish", polish)])
    async with Engine(InMemoryStore()) as engine:
        record = await engine.run_record(wf, "where is my order?")
        detail = await Client(engine=engine).detail(record.run_id)
    steps = {s.step_key: s for s in detail.steps}
    draft_model = steps["draft"].meta["model"]
    assert draft_model["model"] == "small-1"
    assert draft_model["tokens_in"] > 0 and draft_model["tokens_out"] > 0
    assert draft_model["cost"] > 0
    usage = detail.usage()
    both = steps["draft"].meta["model"], steps["polish"].meta["model"]
    assert usage["tokens_in"] == sum(m["tokens_in"] for m in both)
    assert usage["cost"] == sum(m["cost"] for m in both)
    assert set(usage["by_model"]) == {"small-1"}


async def test_plain_steps_record_no_model_data():
    async with Engine(InMemoryStore()) as engine:
        record = await engine.run_record(Workflow("plain", [Step("a", lambda x: x)]), 1)
        detail = await Client(engine=engine).detail(record.run_id)
    assert "model" not in detail.steps[0].meta
    assert detail.usage()["tokens_in"] == 0
