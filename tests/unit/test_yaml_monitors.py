"""``monitors:`` in YAML workflow files: the Python twin, every schema error with its place, the JSON Schema."""

from __future__ import annotations

import textwrap

import pytest

from orchestrate import Step, Workflow
from orchestrate.observe.alerts import OutcomeMonitor
from orchestrate.observe.change import Cusum, PageHinkley
from orchestrate.observe.drift import Drift
from orchestrate.observe.monitors import Deviation, DriftMonitor, Monitor, Threshold
from orchestrate.yaml import YamlDefinitionError, json_schema, loads, monitors_of

HEAD = """\
name: scoring
steps:
  - step: classify
    call: builtins:str
  - step: score
    call: builtins:len
monitors:
"""


def _load(monitors: str) -> Workflow:
    return loads(HEAD + textwrap.indent(textwrap.dedent(monitors), "  "), source="flow.yaml")


def test_every_kind_of_monitor_equals_its_python_twin() -> None:
    wf = _load(
        """\
        - step: classify
          metric: fallback_rate
          threshold: {above: 0.05}
          action: fallback
        - step: classify
          metric: latency_p95
          deviation: {sigmas: 2, direction: up}
          window: 50
        - step: score
          metric: field_mean
          field: scores.fraud
          cusum: {k: 0.25, h: 8, warmup: 10}
          name: fraud_mean
        - step: score
          metric: error_rate
          page_hinkley: {threshold: 4}
          action: review
        - step: score
          drift: {test: psi, threshold: 0.2, reference: 100, window: 50, every: 10}
          field: score
        - outcome: label_rate
          match: corrected
          threshold: {above: 0.1}
          step: score
          action: review
        """
    )
    assert monitors_of(wf) == [
        Monitor("classify", "fallback_rate", Threshold(above=0.05), workflow="scoring", action="fallback"),
        Monitor("classify", "latency_p95", Deviation(sigmas=2, direction="up"), window=50, workflow="scoring"),
        Monitor(
            "score",
            "field_mean",
            Cusum(k=0.25, h=8, warmup=10),
            workflow="scoring",
            field="scores.fraud",
            name="fraud_mean",
        ),
        Monitor("score", "error_rate", PageHinkley(threshold=4), workflow="scoring", action="review"),
        DriftMonitor("score", Drift("psi", 0.2, reference=100, window=50, every=10), field="score", workflow="scoring"),
        OutcomeMonitor("scoring", "label_rate", Threshold(above=0.1), match="corrected", step="score", action="review"),
    ]


def test_monitors_do_not_change_the_version() -> None:
    bare = loads(HEAD.replace("monitors:\n", ""), source="flow.yaml")
    watched = _load("- {step: score, metric: error_rate, threshold: {above: 0.5}}\n")
    assert watched.version == bare.version
    assert monitors_of(bare) == []


def test_a_python_workflow_declares_no_monitors() -> None:
    assert monitors_of(Workflow("plain", [Step("a", str)])) == []
    assert monitors_of(object()) == []


def test_a_drift_monitor_takes_its_encoder_from_a_component() -> None:
    wf = loads(
        HEAD.replace("steps:", "components:\n  embed: tests.unit.test_yaml_monitors:encode\nsteps:")
        + "  - {step: classify, drift: {test: embedding, threshold: 0.3}, encode: embed}\n",
        source="flow.yaml",
    )
    (monitor,) = monitors_of(wf)
    assert isinstance(monitor, DriftMonitor) and monitor.encode is encode


def encode(texts: list[str]) -> list[list[float]]:
    return [[float(len(t)), 1.0] for t in texts]


ERRORS = [
    ("- {step: classify, metric: error_rate, threshold: {above: 1}, colour: red}\n", 8, "colour: unknown key 'colour'"),
    ("- {step: classify, metric: speed, threshold: {above: 1}}\n", 8, "metric: expected 'latency_mean'"),
    ("- {step: classify, metric: error_rate, threshold: {above: 1}, cusum: {}}\n", 8, "got threshold, cusum"),
    ("- {step: classify, metric: error_rate}\n", 8, "exactly one of threshold, deviation, cusum, page_hinkley"),
    ("- {step: clasify, metric: error_rate, threshold: {above: 1}}\n", 8, "no step named 'clasify' in workflow"),
    ("- {step: classify, metric: field_mean, threshold: {above: 1}}\n", 8, "field= goes with metric='field_mean'"),
    ("- {step: classify, metric: error_rate, threshold: {above: 1}, action: page}\n", 8, "expected 'fallback' or"),
    ("- {step: classify, drift: {test: wasserstein, threshold: 1}}\n", 8, "test: expected 'psi'"),
    ("- {step: classify, metric: retry_rate, deviation: {sigmas: -1}}\n", 8, "Deviation needs sigmas > 0"),
    ("- {step: classify, metric: retry_rate, threshold: {}}\n", 8, "Threshold needs above=, below= or both"),
    ("- {step: classify, metric: retry_rate, window: 0, threshold: {above: 1}}\n", 8, "window: expected a number >= 1"),
    ("- {outcome: label_rate, threshold: {below: 0.5}}\n", 8, "match= goes with the rates"),
    ("- {step: classify, drift: {test: embedding, threshold: 0.2}}\n", 8, "through an encoder"),
    ("- {step: classify, drift: {test: psi, threshold: 0.2}, encode: nowhere}\n", 8, "no component named 'nowhere'"),
    ("- 42\n", 8, "expected a monitor"),
    (
        "- {step: classify, metric: error_rate, threshold: {above: 1}}\n"
        "- {step: classify, metric: error_rate, threshold: {above: 2}}\n",
        9,
        "two monitors are named 'classify.error_rate'",
    ),
]


@pytest.mark.parametrize(("monitors", "line", "message"), ERRORS, ids=[m for _, _, m in ERRORS])
def test_each_problem_is_reported_at_its_line(monitors: str, line: int, message: str) -> None:
    with pytest.raises(YamlDefinitionError) as caught:
        _load(monitors)
    (problem,) = caught.value.problems
    assert (problem.file, problem.line) == ("flow.yaml", line), problem
    assert problem.column >= 3
    assert message in str(problem), problem


def test_every_problem_of_the_monitors_at_once() -> None:
    with pytest.raises(YamlDefinitionError) as caught:
        _load("- {step: nope, metric: error_rate, threshold: {above: 1}}\n- {step: classify, metric: x, cusum: {}}\n")
    assert [p.line for p in caught.value.problems] == [9]  # the schema's problems come first, then the build's
    with pytest.raises(YamlDefinitionError) as caught:
        _load(
            "- {step: nope, metric: error_rate, threshold: {above: 1}}\n"
            "- {step: classify, metric: error_rate, threshold: {}}\n"
        )
    assert [p.line for p in caught.value.problems] == [8, 9]


def test_the_json_schema_describes_the_monitors() -> None:
    schema = json_schema()
    assert "monitors" in schema["properties"]
    defs = schema["$defs"]
    assert {"MetricMonitorSpec", "DriftMonitorSpec", "OutcomeMonitorSpec"} <= set(defs)
    assert defs["MetricMonitorSpec"]["additionalProperties"] is False
    assert set(defs["CusumSpec"]["properties"]) == {"k", "h", "warmup", "direction", "resolve", "min_sd"}
