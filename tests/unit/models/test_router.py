"""Routing by rules, classifier and complexity; prices, the cost ledger and the run budget."""

from __future__ import annotations

import pytest

from orchestrate.errors import BudgetExceededError, DefinitionError, NonRetryableError
from orchestrate.models import (
    AccountedModel,
    Budget,
    ClassifierRoute,
    ComplexityRoute,
    CostLedger,
    ModelSettings,
    Price,
    PriceTable,
    Router,
    Rule,
    Usage,
    complexity_score,
)
from orchestrate.testing.models import FakeModel, Reply

PRICES = PriceTable({"small": Price(0.15, 0.60), "large": Price(2.50, 10.00)})


def models():
    small = FakeModel([Reply("small says", usage=Usage(1_000, 200))], repeat_last=True, model_id="small")
    large = FakeModel([Reply("large says", usage=Usage(1_000, 200))], repeat_last=True, model_id="large")
    return small, large


def test_complexity_score_orders_easy_below_hard() -> None:
    easy = complexity_score("Where is my order?")
    hard = complexity_score(
        "Why was I charged twice? Explain how the fees are calculated and compare the annual plan with "
        "the monthly one, because I need to decide before Friday. Also, what happens if I cancel halfway?"
    )
    code = complexity_score("Debug this:\n```python\ndef f(x): return x / 0\n```\nTraceback: ZeroDivisionError")
    assert easy < 0.1 < 0.5 < hard <= 1.0
    assert code > easy
    assert complexity_score("") == 0.0


async def test_rules_win_over_complexity_then_complexity_decides() -> None:
    small, large = models()
    router = Router(
        {"small": small, "large": large},
        rules=[Rule("large", contains=["legal", "lawyer"]), Rule("small", pattern=r"^\s*(hi|hello)\b")],
        complexity=ComplexityRoute(threshold=0.4, low="small", high="large"),
        default="small",
        prices=PRICES,
    )
    legal = await router.chat("My lawyer says hi")
    assert legal.model == "large" and legal.meta["route_reason"] == "rule"
    hello = await router.chat("hello, why is everything slow? explain and compare step by step")
    assert hello.model == "small" and hello.meta["route_reason"] == "rule"
    simple = await router.chat("Where is my order?")
    assert simple.model == "small" and simple.meta["route_reason"] == "complexity" and simple.meta["route_score"] < 0.4
    hard = await router.chat("Why did my refund fail? Explain the steps and compare both payment options in detail.")
    assert hard.model == "large" and hard.meta["route"] == "large"


async def test_classifier_routes_by_label_when_confident_enough() -> None:
    class Verdict:
        def __init__(self, label, confidence):
            self.label, self.confidence = label, confidence

    small, large = models()
    verdicts = {"refund please": Verdict("refund", 0.9), "maybe refund": Verdict("refund", 0.3)}
    router = Router(
        {"small": small, "large": large},
        classifier=ClassifierRoute(lambda text: verdicts[text], {"refund": "large"}, min_confidence=0.5),
        default="small",
    )
    assert router.decide(router_request("refund please")).route == "large"
    assert router.decide(router_request("maybe refund")).route == "small"  # not confident: default
    assert small.calls == [] and large.calls == []  # deciding never calls a model


def router_request(text):
    from orchestrate.models import ModelRequest

    return ModelRequest.chat(text)


async def test_tokens_and_cost_are_recorded_per_call_step_and_model() -> None:
    small, large = models()
    router = Router(
        {"small": small, "large": large}, rules=[Rule("large", contains=["hard"])], default="small", prices=PRICES
    )
    ledger = CostLedger()
    classify = router.bind(ledger, step="classify")
    answer = router.bind(ledger, step="answer")
    first = await classify.chat("easy")
    second = await answer.chat("hard one")
    assert first.cost == pytest.approx((1_000 * 0.15 + 200 * 0.60) / 1e6)
    assert second.cost == pytest.approx((1_000 * 2.50 + 200 * 10.00) / 1e6)
    assert ledger.total_cost == pytest.approx(first.cost + second.cost)
    assert ledger.usage == Usage(2_000, 400)
    assert ledger.by_step()["classify"]["calls"] == 1 and ledger.by_step()["answer"]["cost"] == second.cost
    assert set(ledger.by_model()) == {"small", "large"}
    assert router.ledger is None  # binding does not change the shared router
    assert ledger.summary()["calls"] == 2


async def test_a_spent_budget_switches_to_the_cheap_path() -> None:
    small, large = models()
    router = Router({"small": small, "large": large}, default="large", cheap="small", prices=PRICES)
    ledger = CostLedger(budget=Budget(max_cost=0.01, on_exceeded="cheap"))
    model = router.bind(ledger)
    served = [(await model.chat("question")).model for _ in range(5)]
    # each large call costs 0.0045: two fit under 0.01, the third crosses it, then cheap
    assert served == ["large", "large", "large", "small", "small"]
    assert ledger.exceeded and ledger.remaining == 0.0
    assert (await model.chat("q")).meta["route_reason"] == "budget"


async def test_a_spent_budget_can_stop_the_run_with_a_clear_error() -> None:
    small, large = models()
    ledger = CostLedger(budget=Budget(max_cost=0.005, on_exceeded="stop"))
    model = Router({"small": small, "large": large}, default="large", prices=PRICES).bind(ledger)
    await model.chat("q")
    await model.chat("q")
    with pytest.raises(BudgetExceededError, match="budget of 0.005 is spent") as stopped:
        await model.chat("q")
    assert isinstance(stopped.value, NonRetryableError) and stopped.value.spent > stopped.value.limit
    assert len(large.calls) == 2


async def test_accounted_model_prices_a_single_model_under_a_budget() -> None:
    small, _ = models()
    ledger = CostLedger(budget=Budget(max_cost=0.0002, on_exceeded="stop"))
    model = AccountedModel(small, PRICES, ledger, step="summarise")
    assert (await model.chat("q")).cost == pytest.approx(0.00027)
    with pytest.raises(BudgetExceededError):
        await model.chat("q")


def test_definitions_are_checked() -> None:
    small, _ = models()
    with pytest.raises(DefinitionError, match="unknown route"):
        Router({"small": small}, rules=[Rule("huge", contains=["x"])], default="small")
    with pytest.raises(DefinitionError):
        Rule("small")
    with pytest.raises(DefinitionError):
        Budget(max_cost=-1)
    with pytest.raises(DefinitionError, match="no price for model 'mystery'"):
        PriceTable({"small": (0.1, 0.2)}, default=None).cost("mystery", Usage(1, 1))
    assert PriceTable().cost("anything", Usage(10, 10)) == 0.0


async def test_max_tokens_rule_routes_long_generations() -> None:
    small, large = models()
    router = Router({"small": small, "large": large}, rules=[Rule("large", max_tokens_over=1_000)], default="small")
    assert (await router.chat("essay", settings=ModelSettings(max_tokens=4_000))).model == "large"
    assert (await router.chat("essay", settings=ModelSettings(max_tokens=100))).model == "small"
