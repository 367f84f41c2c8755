"""Definitions refuse, when built, arguments that would be ignored or misbehave later."""

from __future__ import annotations

from typing import Any

import pytest

from orchestrate import (
    AgentWorkflow,
    Branch,
    DefinitionError,
    Engine,
    Fallback,
    HumanReviewGate,
    Map,
    Parallel,
    Retry,
    RunFailedError,
    Step,
    Timeout,
    Workflow,
    workflow,
)
from orchestrate.store import InMemoryStore
from orchestrate.workflow import CallPlan


def one(x):
    return x


async def durable(ctx, x):
    return x


def message(exc: pytest.ExceptionInfo[DefinitionError]) -> str:
    text = str(exc.value)
    assert "\n" not in text
    return text


# versions --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "build",
    [
        lambda v: Workflow("w", [Step("a", one)], version=v),
        lambda v: workflow(durable, name="w", version=v),
        lambda v: workflow(name="w", version=v)(durable),
    ],
)
def test_version_must_be_a_string(build):
    with pytest.raises(DefinitionError) as exc:
        build(5)
    assert message(exc) == "workflow 'w': version must be a string, got 5; pass version=\"5\""
    with pytest.raises(DefinitionError, match="workflow 'w': version must be a non-empty string"):
        build("")
    with pytest.raises(DefinitionError, match="version must be a non-empty string"):
        build("  ")
    assert build("5").version == "5"


# workflow-level numbers and types ----------------------------------------------------------


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), 0])
def test_workflow_timeout_must_be_finite_and_positive(bad):
    with pytest.raises(DefinitionError, match="workflow 'w': timeout must be"):
        Workflow("w", [Step("a", one)], timeout=bad)
    with pytest.raises(DefinitionError, match="workflow 'durable': timeout must be"):
        workflow(durable, timeout=bad)


@pytest.mark.parametrize("bad", [True, 0, -1, 2.5, "3"])
def test_workflow_max_concurrency_must_be_a_positive_int(bad):
    with pytest.raises(DefinitionError, match=r"workflow 'w': max_concurrency must be >= 1 \(an int"):
        Workflow("w", [Step("a", one)], max_concurrency=bad)
    with pytest.raises(DefinitionError, match=r"workflow 'durable': max_concurrency must be >= 1"):
        workflow(durable, max_concurrency=bad)


def test_components_must_map_names_to_functions():
    with pytest.raises(DefinitionError, match=r"workflow 'w': components\['small'\] must map a name to a function"):
        Workflow("w", [Step("a", one)], components={"small": "gpt-4o-mini"})
    with pytest.raises(DefinitionError, match="components must be a mapping of names to functions"):
        Workflow("w", [Step("a", one)], components=[one])  # type: ignore[arg-type]


def test_state_store_must_be_a_url_or_a_store():
    with pytest.raises(DefinitionError, match="workflow 'w': state_store must be a store URL or a Store, got 42"):
        Workflow("w", [Step("a", one)], state_store=42)  # type: ignore[arg-type]
    with pytest.raises(DefinitionError, match="state_store must be a store URL, got ''"):
        workflow(durable, state_store="")
    store = InMemoryStore()
    assert Workflow("w", [Step("a", one)], state_store=store).state_store is store
    assert Workflow("w", [Step("a", one)], state_store="memory").state_store == "memory"


def test_steps_must_be_a_list():
    with pytest.raises(DefinitionError, match="workflow 'w': steps must be a list.*got a Step; wrap it in a list"):
        Workflow("w", Step("a", one))  # type: ignore[arg-type]
    with pytest.raises(DefinitionError, match="Parallel 'p': nodes must be a list.*got a Step"):
        Parallel(Step("a", one), name="p")  # type: ignore[arg-type]


def test_description_must_be_a_string():
    with pytest.raises(DefinitionError, match="description must be a string"):
        Workflow("w", [Step("a", one)], description=None)  # type: ignore[arg-type]


# node arguments ----------------------------------------------------------------------------


def test_map_over_must_be_a_function():
    with pytest.raises(DefinitionError, match="Map 'm': over must be a function of the incoming value, got 'items'"):
        Map(Step("m", one), over="items")  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), True, "0.8", None])
def test_tier_thresholds_must_be_finite_numbers(bad):
    with pytest.raises(DefinitionError, match=r"Branch.tiers 'score': tiers\[1\] threshold must be a finite number"):
        Branch.tiers("score", [(0.8, Step("a", one)), (bad, Step("b", one))])


def test_tiers_must_be_pairs():
    with pytest.raises(DefinitionError, match=r"tiers\[0\] must be a \(threshold, route\) pair"):
        Branch.tiers(None, [0.8])  # type: ignore[list-item]


def test_step_gate_and_failover_model_types():
    with pytest.raises(DefinitionError, match="step 'a': gate must be a HumanReviewGate or TieredGate, got True"):
        Step("a", one, gate=True)
    with pytest.raises(DefinitionError, match="step 'a': failover_model must be the name of a component, got <fun"):
        Step("a", one, failover_model=one)  # type: ignore[arg-type]
    assert Step("b", one, gate=HumanReviewGate()).gate is not None


def test_a_retry_count_that_is_a_bool_is_refused():
    with pytest.raises(DefinitionError, match="step 'a': retry must be a Retry or a count >= 0, got True"):
        Step("a", one, retries=True)


# unknown step options -----------------------------------------------------------------------


def test_seed_003_on_fail_block_is_refused_and_points_at_the_fallback():
    with pytest.raises(DefinitionError) as exc:
        Step("keyword_filter", model="regex_patterns", timeout=0.5, on_fail="block")
    text = message(exc)
    assert text.startswith("step 'keyword_filter': option on_fail='block' is not a step setting and would be ignored")
    assert "fallback=Fallback.value(" in text
    # The spelling the message points at builds and is the seed's.
    step = Step("keyword_filter", model="regex_patterns", timeout=0.5, fallback=Fallback.value({"blocked": True}))
    assert step.policy.fallback == (Fallback.value({"blocked": True}),)


@pytest.mark.parametrize(
    ("option", "points_at"),
    [
        ("on_error", "fallback=Fallback.value("),
        ("onFail", "fallback=Fallback.value("),
        ("on_timeout", "timeout=Timeout(attempt=..., total=...)"),
        ("on_success", "steps have no event handlers"),
        ("retries_on", "retry=Retry(retry_on=(SomeError,))"),
        ("retry_on", "retry=Retry(retry_on=(SomeError,))"),
        ("give_up_on", "retry=Retry(give_up_on=(SomeError,))"),
        ("max_retries", "retries=<count>"),
        ("maxAttempts", "retry=Retry(max_attempts=...)"),
        ("backoff", "backoff=..."),
        ("jitter", "retry=Retry("),
        ("deadline", "timeout=<seconds>"),
        ("ttl", "cache=<seconds>"),
        ("concurrency", "max_concurrency=<count>"),
        ("requires_approval", "gate=HumanReviewGate(...)"),
        ("fallback_model", "failover_model="),
    ],
)
def test_options_that_read_as_engine_behaviour_are_refused(option, points_at):
    with pytest.raises(DefinitionError) as exc:
        Step("s", one, **{option: 1})
    text = message(exc)
    assert text.startswith(f"step 's': option {option}=1 is not a step setting and would be ignored; ")
    assert points_at in text


def test_policy_keywords_in_another_case_are_typos():
    with pytest.raises(DefinitionError, match="unknown option 'Timeout'; did you mean 'timeout'"):
        Step("s", one, Timeout=5)
    with pytest.raises(DefinitionError, match="unknown option 'minBudget'; did you mean 'min_budget'"):
        Step("s", one, minBudget=5)


def test_free_form_options_still_reach_components():
    step = Step("s", model="gpt-4", pipeline="p", threshold=0.7, temperature=0.1, max_tokens=100, top_k=3)
    assert step.options == {
        "model": "gpt-4",
        "pipeline": "p",
        "threshold": 0.7,
        "temperature": 0.1,
        "max_tokens": 100,
        "top_k": 3,
    }


def test_decorated_steps_check_their_options_too():
    agent = AgentWorkflow("w")
    with pytest.raises(DefinitionError, match="step 'keyword_filter': option on_fail='block' is not a step setting"):

        @agent.step(on_fail="block")
        def keyword_filter(text: str) -> str:
            return text


# how a dict input reaches a step function -------------------------------------------------------


def test_a_lone_dict_parameter_gets_the_whole_one_key_dict():
    def f(payload: dict) -> Any:
        return payload

    def g(payload: dict[str, int] | None) -> Any:
        return payload

    for fn in (f, g):
        assert CallPlan.of(fn, "s").arguments({"payload": 1}) == (({"payload": 1},), {})
        assert CallPlan.of(fn, "s").arguments({"payload": 1, "x": 2}) == (({"payload": 1, "x": 2},), {})


def test_a_lone_plain_or_str_parameter_still_gets_its_field():
    def unannotated(form_id):
        return form_id

    def typed(form_id: str) -> str:
        return form_id

    for fn in (unannotated, typed):
        assert CallPlan.of(fn, "s").arguments({"form_id": "F-1"}) == ((), {"form_id": "F-1"})
        assert CallPlan.of(fn, "s").arguments({"form_id": "F-1", "extra": 1}) == ((), {"form_id": "F-1"})
        assert CallPlan.of(fn, "s").arguments({"other": 1}) == (({"other": 1},), {})


async def test_the_engine_hands_a_dict_parameter_the_whole_dict():
    def keep(payload: dict) -> dict:
        return {"got": payload}

    def extract(form_id: str) -> str:
        return form_id.lower()

    async with Engine(InMemoryStore()) as engine:
        assert await engine.run(Workflow("keep", [Step("keep", keep)]), {"payload": 1}) == {"got": {"payload": 1}}
        assert await engine.run(Workflow("extract", [Step("extract", extract)]), {"form_id": "F-1"}) == "f-1"


# unlimited retries on the engine -------------------------------------------------------------------


async def test_unlimited_retries_run_until_the_step_succeeds():
    calls = 0

    def flaky(x: int) -> int:
        nonlocal calls
        calls += 1
        if calls < 6:
            raise ConnectionError("down")
        return x + 1

    policy = Retry(max_attempts=None, initial_delay=0.001, max_delay=0.002, jitter=0.0)
    async with Engine(InMemoryStore()) as engine:
        assert await engine.run(Workflow("flaky", [Step("flaky", flaky, retry=policy)]), 1) == 2
    assert calls == 6


async def test_unlimited_retries_end_at_the_total_timeout():
    calls = 0

    def down(x: int) -> int:
        nonlocal calls
        calls += 1
        raise ConnectionError("down")

    policy = Retry(max_attempts=None, initial_delay=0.001, max_delay=0.002, jitter=0.0)
    wf = Workflow("down", [Step("down", down, retry=policy, timeout=Timeout(total=0.05))])
    async with Engine(InMemoryStore()) as engine:
        with pytest.raises(RunFailedError, match="down"):
            await engine.run(wf, 1)
    assert calls > 1
