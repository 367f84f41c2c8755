"""The schema of a workflow file's ``monitors:``: the observation layer's monitors and rules.

``Monitor`` (a ``metric:``), ``DriftMonitor`` (a ``drift:``) and ``OutcomeMonitor`` (an
``outcome:``) with the same keys as their Python arguments; each ``Monitor`` and
``OutcomeMonitor`` takes exactly one of the rules ``threshold``, ``deviation``,
``cusum``, ``page_hinkley``.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, Tag, model_validator

from orchestrate.yaml._scalars import Name, Number, PositiveInt, Reference, Spec, Text, _by_key, _fail, _form

Direction = Literal["up", "down", "both"]


class ThresholdSpec(Spec):
    """``Threshold(above=..., below=...)``."""

    above: Number | None = None
    below: Number | None = None


class DeviationSpec(Spec):
    """``Deviation(sigmas=..., ...)``: standard deviations from the normal windows' baseline."""

    sigmas: Number = None
    direction: Direction = "both"
    baseline: PositiveInt = 50
    min_windows: PositiveInt = 5
    min_delta: Number = None


class CusumSpec(Spec):
    """``Cusum(k=..., h=..., ...)``: a sustained shift of the mean."""

    k: Number = None
    h: Number = None
    warmup: PositiveInt = 20
    direction: Direction = "both"
    resolve: PositiveInt = 3
    min_sd: Number = None


class PageHinkleySpec(Spec):
    """``PageHinkley(delta=..., threshold=..., ...)``."""

    delta: Number = None
    threshold: Number = None
    warmup: PositiveInt = 20
    direction: Direction = "both"
    resolve: PositiveInt = 3
    min_sd: Number = None


RULES = ("threshold", "deviation", "cusum", "page_hinkley")


class RuleMixin(Spec):
    """Exactly one rule judges a monitor's windows."""

    threshold: ThresholdSpec | None = Field(None, description="Abnormal above or below a value.")
    deviation: DeviationSpec | None = Field(None, description="Abnormal sigmas away from the baseline.")
    cusum: CusumSpec | None = Field(None, description="A sustained shift of the mean (CUSUM).")
    page_hinkley: PageHinkleySpec | None = Field(None, description="A sustained shift (Page-Hinkley).")

    @model_validator(mode="after")
    def _one_rule(self) -> RuleMixin:
        rules = [name for name in RULES if getattr(self, name) is not None]
        if len(rules) != 1:
            found = f"got {', '.join(rules)}" if rules else "got none"
            raise _fail("monitor_rule", f"a monitor needs exactly one of {', '.join(RULES)} ({found})")
        return self


MonitorAction = Literal["fallback", "review"]


class MetricMonitorSpec(RuleMixin):
    """``Monitor(step, metric, rule, ...)``: a step's health over windows of executions."""

    step: Name = Field(description="The watched step.")
    metric: Literal[
        "latency_mean", "latency_p95", "error_rate", "fallback_rate", "retry_rate", "attempts_mean", "field_mean"
    ]
    window: PositiveInt = Field(100, description="Executions per window.")
    field: Text | None = Field(None, description="For field_mean: the output's field, dotted for nested ones.")
    name: Text | None = Field(None, description="The monitor's name (default <step>.<metric> or <step>.<field>).")
    action: MonitorAction | None = Field(None, description="What a firing alert does to the step until acknowledged.")


class DriftRuleSpec(Spec):
    """``Drift(test, threshold, ...)``."""

    test: Literal["psi", "ks", "js", "chi2", "embedding", "mmd"]
    threshold: Number
    reference: PositiveInt = 500
    window: PositiveInt = 200
    every: PositiveInt = 50
    bins: PositiveInt = 10


class DriftMonitorSpec(Spec):
    """``DriftMonitor(step, Drift(...), field=..., ...)``: drift of a step's outputs."""

    step: Name = Field(description="The watched step.")
    drift: DriftRuleSpec
    field: Text | None = Field(None, description="The output's field (default: the whole output).")
    encode: Reference | None = Field(None, description="For embedding and mmd: texts to vectors (a component).")
    name: Text | None = None
    action: MonitorAction | None = None


class OutcomeMonitorSpec(RuleMixin):
    """``OutcomeMonitor(workflow, metric, rule, ...)``: the runs' outcome feedback."""

    outcome: Literal["score_mean", "outcome_rate", "label_rate"] = Field(description="The metric of the feedback.")
    match: Text | None = Field(None, description="The outcome or label counted by the rates.")
    window: PositiveInt = Field(50, description="Feedback entries per window.")
    step: Name | None = Field(None, description="Only feedback about this step (and the step an action diverts).")
    name: Text | None = None
    action: MonitorAction | None = None


MonitorField = Annotated[
    Annotated[MetricMonitorSpec, Tag("<monitor>")]
    | Annotated[DriftMonitorSpec, Tag("<drift monitor>")]
    | Annotated[OutcomeMonitorSpec, Tag("<outcome monitor>")],
    _form(
        _by_key({"drift": "<drift monitor>", "outcome": "<outcome monitor>"}, default="<monitor>"),
        "expected a monitor: a mapping with step and metric, step and drift, or outcome",
    ),
]
