"""Every definition error is raised when the workflow is built, naming the place."""

from __future__ import annotations

import pytest

from orchestrate import (
    Branch,
    DefinitionError,
    Fallback,
    Loop,
    Map,
    Orchestrator,
    Parallel,
    Retry,
    Step,
    SubWorkflow,
    Workflow,
    workflow,
)


def one(x):
    return x


def two(x):
    return x


def test_valid_workflow_builds_and_has_a_stable_version():
    wf = Workflow("ok", [Step("a", one), Step("b", two)])
    again = Workflow("ok", [Step("a", one), Step("b", two)])
    assert wf.version == again.version
    assert len(wf.version) == 12


def test_changed_definition_is_a_new_version():
    base = Workflow("w", [Step("a", one), Step("b", two)])
    assert Workflow("w", [Step("a", one), Step("b", two, retries=2)]).version != base.version
    assert Workflow("w", [Step("a", one), Step("b", one)]).version != base.version
    assert Workflow("w", [Step("a", one), Step("b", two)], version="7").version == "7"


def test_empty_workflow():
    with pytest.raises(DefinitionError, match="'empty' has no steps"):
        Workflow("empty", []).validate()


def test_duplicate_names_name_both_places():
    with pytest.raises(DefinitionError, match=r"steps\[1\].*duplicate name 'a' \(also at steps\[0\]"):
        Workflow("dup", [Step("a", one), Step("a", two)])


def test_duplicate_name_inside_a_branch_route():
    with pytest.raises(DefinitionError, match="duplicate name 'a'"):
        Workflow("dup", [Step("a", one), Branch(None, {"x": Step("a", two)})])


def test_unknown_step_reference_in_branch_path():
    with pytest.raises(DefinitionError, match="decides on 'classify.result' but no step named 'classify'"):
        Workflow("w", [Step("a", one), Branch("classify.result", {"x": Step("b", two)})])


def test_route_to_nowhere():
    with pytest.raises(DefinitionError, match=r"routes to 'nowhere', which is not a step"):
        Workflow("w", [Step("a", one), Branch(None, {"x": "nowhere"})])


def test_route_backwards_is_refused():
    with pytest.raises(DefinitionError, match="routes back to 'a'; jumps may only go forward"):
        Workflow("w", [Step("a", one), Branch(None, {"x": "a"}), Step("c", two)])


def test_unbounded_loop():
    with pytest.raises(DefinitionError, match="Loop 'again' is unbounded"):
        Loop([Step("a", one)], until=lambda v: v, name="again")
    with pytest.raises(DefinitionError, match="unbounded"):
        Loop([Step("a", one)], until=lambda v: v, max_iterations=0)


def test_branch_without_routes():
    with pytest.raises(DefinitionError, match="has no routes"):
        Branch(None, {})


def test_branch_pairs_must_be_predicate_route():
    with pytest.raises(DefinitionError, match=r"routes\[0\] must be a \(predicate, route\) pair"):
        Branch(None, [("not callable", Step("a", one))])


def test_step_without_function_or_component():
    with pytest.raises(DefinitionError, match="step 'ghost' has no function.*'gpt-9'"):
        Workflow("w", [Step("ghost", model="gpt-9")])


def test_step_resolved_from_components_by_model():
    wf = Workflow("w", [Step("classify", model="small-model")], components={"small-model": one})
    assert wf.nodes[0].fn is one  # type: ignore[attr-defined]


def test_failover_model_must_be_a_component():
    with pytest.raises(DefinitionError, match="failover_model 'backup' is not a component"):
        Workflow("w", [Step("gen", one, failover_model="backup")])


def test_bad_policy_values_name_the_step():
    with pytest.raises(DefinitionError, match="step 'a': timeout must be positive"):
        Step("a", one, timeout=0)
    with pytest.raises(DefinitionError, match="step 'a': retry must be a Retry or a count"):
        Step("a", one, retry=-1)
    with pytest.raises(DefinitionError, match="only one of retries=, retry=, retry_policy="):
        Step("a", one, retries=1, retry=2)
    with pytest.raises(DefinitionError, match="isolation must be"):
        Step("a", one, isolation="fork")  # type: ignore[arg-type]
    with pytest.raises(DefinitionError, match="fallback must be built with Fallback"):
        Step("a", one, fallback=[Fallback("queue", 1)])


def test_bad_names():
    with pytest.raises(DefinitionError, match="name must be"):
        Step("", one)
    with pytest.raises(DefinitionError, match="name must be"):
        Workflow("has space", [Step("a", one)])


def test_map_and_parallel_workers():
    with pytest.raises(DefinitionError, match="max_workers must be >= 1"):
        Workflow("w", [Map(Step("m", one), max_workers=0)])
    with pytest.raises(DefinitionError, match="has no branches"):
        Workflow("w", [Parallel([])])
    with pytest.raises(DefinitionError, match="unknown reduce strategy"):
        Workflow("w", [Map(Step("m", one), reduce="avg")])  # type: ignore[arg-type]


def test_not_a_node():
    with pytest.raises(DefinitionError, match="expected a step, node or function"):
        Workflow("w", [42])  # type: ignore[list-item]


def test_error_handler_must_be_a_step():
    with pytest.raises(DefinitionError, match="error_handler must be a Step"):
        Workflow("w", [Step("a", one)], error_handler=Parallel([Step("b", two)]))


def test_nested_scopes_have_their_own_names():
    Workflow("w", [Step("a", one), Loop([Step("a", two)], until=bool, max_iterations=2)])
    Workflow("w", [Step("a", one), Map(Step("a", two), name="each")])


def test_sub_workflow_is_validated():
    inner = Workflow("inner", [Step("x", one)])
    Workflow("outer", [SubWorkflow(inner), Step("y", two)])
    with pytest.raises(DefinitionError, match="SubWorkflow needs a Workflow"):
        SubWorkflow("inner")  # type: ignore[arg-type]


def test_orchestrator_add_step_validates_each_addition():
    orch = Orchestrator(name="hipaa_approval_v2")
    orch.add_step(Step("deidentify", one, timeout=5.0))
    with pytest.raises(DefinitionError, match="duplicate name 'deidentify'"):
        orch.add_step(Step("deidentify", two))


def test_frozen_after_registration():
    wf = Workflow("w", [Step("a", one)])
    wf.freeze()
    with pytest.raises(DefinitionError, match="already ran"):
        wf.add_step(Step("b", two))


def test_durable_function_must_be_async():
    with pytest.raises(DefinitionError, match="must be an async def"):
        workflow(lambda ctx, x: x, name="sync")


def test_retry_policy_objects_accepted():
    step = Step("a", one, retry_policy=Retry(max_attempts=5))
    assert step.policy.retry.max_attempts == 5
    assert Step("b", one, retries=2).policy.retry.max_attempts == 3
    assert Step("c", one, retry=3).policy.retry.max_attempts == 4


def test_policy_keyword_typos_are_caught():
    with pytest.raises(DefinitionError, match="unknown option 'retires'; did you mean 'retries'"):
        Step("a", one, retires=3)
    assert Step("b", one, model="gpt-4", threshold=0.7).options == {"model": "gpt-4", "threshold": 0.7}


def test_a_tier_threshold_or_a_timedelta_change_makes_a_new_version() -> None:
    from datetime import timedelta

    from orchestrate import Branch, Step, Workflow

    def f(x):
        return x

    def tiered(threshold: float) -> Workflow:
        return Workflow("v", [Step("s", f), Branch.tiers("s", [(threshold, Step("hi", f))], otherwise=Step("lo", f))])

    assert tiered(0.8).version == tiered(0.8).version
    assert tiered(0.8).version != tiered(0.7).version
    five = Workflow("v", [Step("s", f, timeout=timedelta(seconds=5))])
    six = Workflow("v", [Step("s", f, timeout=timedelta(seconds=6))])
    assert five.version != six.version
