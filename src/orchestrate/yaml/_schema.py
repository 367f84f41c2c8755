"""The schema of YAML definitions: pydantic models that refuse unknown keys.

Each model mirrors a part of the Python API (``Step``, ``Branch``, ``Retry``,
``HumanReviewGate``...) with the same names. Scalars that the Python API reads in its
own way (durations, names, references, expressions) are checked as the file gives them
(:mod:`orchestrate.yaml._scalars`), so that every problem is reported with its line and
column before anything is built; ``monitors:`` has its own models
(:mod:`orchestrate.yaml._monitor_schema`). Unions are
discriminated by a function (by a kind key or by the value's type), so that a wrong
value gets one error about the form it was meant to have, not one per alternative.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, ConfigDict, Field, Tag, model_validator

from orchestrate.yaml._errors import show_value
from orchestrate.yaml._monitor_schema import DriftMonitorSpec, MetricMonitorSpec, MonitorField, OutcomeMonitorSpec
from orchestrate.yaml._scalars import (
    Delay,
    Duration,
    Expr,
    Name,
    Number,
    OptionalName,
    PositiveInt,
    Reference,
    RouteKey,
    Spec,
    Text,
    Version,
    _by_key,
    _by_type,
    _fail,
    _form,
)

# policies ---------------------------------------------------------------------------------------


class TimeoutSpec(Spec):
    """``Timeout(attempt=..., total=...)``."""

    attempt: Duration | None = Field(None, description="Time one attempt may take.")
    total: Duration | None = Field(None, description="Time the step may take across its attempts and backoffs.")


class ExponentialRetrySpec(Spec):
    """``ExponentialBackoff(...)``: the delay grows by ``backoff`` after each failed attempt."""

    strategy: Literal["exponential"] = "exponential"
    max_attempts: PositiveInt | None = Field(3, description="Attempts in all, the first included; null: no limit.")
    initial_delay: Delay = Field(None, description="Delay before the second attempt (default 1s).")
    backoff: Number = Field(None, description="Multiplier of the delay after each failed attempt (default 2).")
    max_delay: Delay = Field(None, description="Ceiling of one delay (default 60s).")
    jitter: Number = Field(None, description="Random spread as a fraction of the delay (default 0.2).")
    retry_on: list[Reference] | None = Field(None, description="Only these exception types are retried.")
    give_up_on: list[Reference] | None = Field(None, description="These exception types are never retried.")


class FixedRetrySpec(Spec):
    """``FixedRetry(...)``: the same delay between attempts."""

    strategy: Literal["fixed"]
    max_attempts: PositiveInt | None = Field(3, description="Attempts in all, the first included; null: no limit.")
    delay: Delay = Field(None, description="Delay between attempts (default 1s).")
    jitter: Number = Field(None, description="Random spread as a fraction of the delay (default 0).")
    retry_on: list[Reference] | None = None
    give_up_on: list[Reference] | None = None


def _retry_kind(value: Any) -> str | None:
    if isinstance(value, dict):
        return "<fixed retry>" if value.get("strategy") == "fixed" else "<exponential retry>"
    if isinstance(value, int) and not isinstance(value, bool):
        return "<retries>"
    return None


Retries = Annotated[int, Field(ge=0)]
RetryField = Annotated[
    Annotated[Retries, Tag("<retries>")]
    | Annotated[ExponentialRetrySpec, Tag("<exponential retry>")]
    | Annotated[FixedRetrySpec, Tag("<fixed retry>")],
    _form(
        _retry_kind,
        "expected a number of retries after the first attempt, or a mapping (strategy: exponential or fixed)",
    ),
]


class ValueFallbackSpec(Spec):
    """``Fallback.value(value, flag=...)``: use this value as the step's output."""

    value: Any = Field(description="The output on failure (any YAML value, null included).")
    flag: Text | None = Field(None, description="Open a review item with this label; the run does not wait.")


class CallFallbackSpec(Spec):
    """``Fallback.call(fn, flag=...)``: call another function with the step's input."""

    call: Reference
    flag: Text | None = None


class CachedFallbackSpec(Spec):
    """``Fallback.cached(max_age=..., flag=...)``: the last output of this step for the same input."""

    cached: Literal[True]
    max_age: Duration | None = None
    flag: Text | None = None


class SkipFallbackSpec(Spec):
    """``Fallback.skip(flag=...)``: mark the step skipped; later steps see what is missing."""

    skip: Literal[True]
    flag: Text | None = None


_FALLBACK_KEYS = {"value": "<value>", "call": "<call>", "cached": "<cached>", "skip": "<skip>"}
FallbackItem = Annotated[
    Annotated[Literal["skip", "cached"], Tag("<word>")]
    | Annotated[ValueFallbackSpec, Tag("<value>")]
    | Annotated[CallFallbackSpec, Tag("<call>")]
    | Annotated[CachedFallbackSpec, Tag("<cached>")]
    | Annotated[SkipFallbackSpec, Tag("<skip>")],
    _form(
        _by_key(_FALLBACK_KEYS, scalar="<word>"),
        "expected a fallback: a mapping with one of value, call, cached: true or skip: true "
        "(or the word skip or cached)",
    ),
]
FallbackField = Annotated[
    Annotated[Annotated[list[FallbackItem], Field(min_length=1)], Tag("<chain>")]
    | Annotated[FallbackItem, Tag("<one>")],
    _form(_by_type(mapping="<one>", sequence="<chain>", scalar="<one>"), "expected a fallback or a list of them"),
]


class CacheSpec(Spec):
    """``Cache(ttl=...)``."""

    ttl: Duration


CacheField = Annotated[
    Annotated[Duration, Tag("<ttl>")] | Annotated[CacheSpec, Tag("<cache>")],
    _form(_by_type(mapping="<cache>", scalar="<ttl>"), "expected a time to live (a duration) or a mapping with ttl"),
]
TimeoutField = Annotated[
    Annotated[Duration, Tag("<seconds>")] | Annotated[TimeoutSpec, Tag("<timeout>")],
    _form(
        _by_type(mapping="<timeout>", scalar="<seconds>"),
        "expected a duration (per attempt) or a mapping with attempt and total",
    ),
]


# review gates ------------------------------------------------------------------------------------

Priority = Literal["urgent", "high", "normal", "low"]
At = Literal["before", "after"]


class EscalateSpec(Spec):
    """``Escalate(to=..., timeout=..., priority=..., on_timeout=...)``: hand the item to another role."""

    to: Text = Field(description="The role that gets the new item.")
    timeout: Duration | None = Field(None, description="Its SLA; null waits without a deadline.")
    priority: Priority = "urgent"
    on_timeout: OnTimeout = Field("fail", description="What happens when its SLA passes.")
    warn_before: Delay | None = None


class EscalateActionSpec(Spec):
    """``on_timeout: {escalate: {...}}``."""

    escalate: EscalateSpec


class DefaultActionSpec(Spec):
    """``on_timeout: {default: VALUE}``: go on with this value (recorded as expired)."""

    default: Any


class RouteActionSpec(Spec):
    """``on_timeout: {route_to: STEP}``: send the run to a later step."""

    route_to: Text


OnTimeout = Annotated[
    Annotated[Literal["fail", "approve", "reject", "continue"], Tag("<action>")]
    | Annotated[EscalateActionSpec, Tag("<escalate>")]
    | Annotated[DefaultActionSpec, Tag("<default>")]
    | Annotated[RouteActionSpec, Tag("<route_to>")],
    _form(
        _by_key({"escalate": "<escalate>", "default": "<default>", "route_to": "<route_to>"}, scalar="<action>"),
        "expected fail, approve, reject, continue, or a mapping with escalate, default or route_to",
    ),
]
EscalateSpec.model_rebuild()


def _roles_or_count(value: Any) -> str | None:
    if isinstance(value, list):
        return "<roles>"
    if isinstance(value, int) and not isinstance(value, bool):
        return "<count>"
    return None


RequiredApprovals = Annotated[
    Annotated[list[Text], Tag("<roles>")] | Annotated[PositiveInt, Tag("<count>")],
    _form(_roles_or_count, "expected a list of roles that must each approve, or a number of approvals"),
]


class GateSpec(Spec):
    """``HumanReviewGate(...)``: the run parks until people decide."""

    at: At = Field("after", description="after: review the step's output; before: approve its input first.")
    roles: list[Text] = Field(default_factory=list, description="Roles allowed to decide; empty: anyone.")
    required_approvals: RequiredApprovals = Field(
        default_factory=list, description="Roles that must each approve, or a number of approvals."
    )
    timeout: Duration | None = Field(None, description="The SLA; null waits without a deadline.")
    on_timeout: OnTimeout | None = Field(None, description="What happens when the SLA passes (default: fail).")
    escalate_on_timeout: bool = False
    escalate_to: Text = "supervisor"
    on_reject: Text = Field("fail", description="fail, or the name of a later step that gets the payload.")
    warn_before: Delay | None = Field(None, description="Warn this long before the deadline; 0: no warning.")
    priority: Priority = "normal"
    notify: list[Reference] = Field(
        default_factory=list, description="Webhook URLs, or hooks by component or import path."
    )
    queue: Text = "review"


class GateTierSpec(Spec):
    """``Tier(threshold, gate, when=..., name=...)``."""

    at_least: Number = Field(description="The lowest confidence this tier takes.")
    review: GateSpec | None = Field(
        None, description="The review for this tier; absent or null: approve automatically."
    )
    when: Expr | None = Field(None, description="An extra condition on the reviewed value.")
    name: Text | None = None


class TieredGateSpec(Spec):
    """``TieredGate(on, tiers, otherwise=..., at=...)``: confidence tiers in one gate."""

    on: Text = Field(description="The confidence: a field or dotted path of the reviewed value, or an expression.")
    tiers: Annotated[list[GateTierSpec], Field(min_length=1)]
    otherwise: GateSpec | None = Field(None, description="The review when no tier matches; null: automatic.")
    at: At = "after"


GateField = Annotated[
    Annotated[GateSpec, Tag("<gate>")] | Annotated[TieredGateSpec, Tag("<tiered gate>")],
    _form(
        _by_key({"tiers": "<tiered gate>"}, default="<gate>"),
        "expected a gate: a mapping (roles, timeout, ...) or a mapping with on and tiers",
    ),
]


class StepSchemaSpec(Spec):
    """``StepSchema(keep=[...], discard=[...])``: the fields of a step's output later steps receive."""

    keep: Annotated[list[Text], Field(min_length=1)] | None = Field(
        None, description="The fields kept; every other field is dropped."
    )
    discard: Annotated[list[Text], Field(min_length=1)] | None = Field(None, description="The fields dropped.")


class CompressSpec(Spec):
    """``compress_after(step=..., strategy=...)``: values recorded after that step are stored compressed."""

    step: Annotated[int, Field(ge=0)] | Text = Field(
        description="A step number (values recorded after the run's n-th step) or a step's name."
    )
    strategy: Literal["gzip", "zstd"] = "gzip"
    level: int | None = Field(None, description="The compression level; default the strategy's own.")


# nodes ------------------------------------------------------------------------------------------


class StepSpec(Spec):
    """``Step(name, fn, ...)``: call a function under a policy."""

    step: Name = Field(description="The step's name, unique in its scope (its step key).")
    call: Reference | None = Field(None, description="The function: a component's name or package.module:function.")
    model: Text | None = Field(
        None, description="A component (a model) that provides the function, kept in ctx.options."
    )
    pipeline: Text | None = Field(None, description="A component that provides the function, kept in ctx.options.")
    options: dict[str, Any] = Field(
        default_factory=dict, description="Free-form settings the step reads as ctx.options."
    )
    timeout: TimeoutField | None = None
    retry: RetryField | None = None
    fallback: FallbackField | None = None
    failover_model: Text | None = Field(None, description="A component called when the step fails (a fallback).")
    cache: CacheField | None = None
    max_concurrency: PositiveInt | None = None
    isolation: Literal["thread", "process", "inline"] = "thread"
    min_budget: Duration | None = Field(None, description="With less run time left, go straight to the fallback.")
    gate: GateField | None = None
    schema_: StepSchemaSpec | None = Field(
        None, alias="schema", description="The fields of the output kept for the record and later steps."
    )
    compress: CompressSpec | None = Field(
        None, description="The run stores values recorded after that step compressed."
    )


NODE_KINDS = ("step", "branch", "parallel", "map", "loop", "subworkflow")

Node = Annotated[
    Annotated[StepSpec, Tag("<step>")]
    | Annotated["BranchSpec", Tag("<branch>")]
    | Annotated["ParallelSpec", Tag("<parallel>")]
    | Annotated["MapSpec", Tag("<map>")]
    | Annotated["LoopSpec", Tag("<loop>")]
    | Annotated["SubWorkflowSpec", Tag("<subworkflow>")],
    _form(
        _by_key({kind: f"<{kind}>" for kind in NODE_KINDS}),
        "expected a node: a mapping with one of the keys step, branch, parallel, map, loop, subworkflow",
    ),
]
Nodes = Annotated[list[Node], Field(min_length=1)]
Route = Annotated[
    Annotated[Name, Tag("<jump>")] | Annotated[Node, Tag("<node>")] | Annotated[Nodes, Tag("<nodes>")],
    _form(
        _by_type(mapping="<node>", sequence="<nodes>", scalar="<jump>"),
        "expected a route: a node, a list of nodes, or the name of a later step to jump to",
    ),
]


class RuleSpec(Spec):
    """One ``(predicate, route)`` pair of a branch: the first rule whose ``when`` holds wins."""

    when: Expr = Field(description='An expression on the decided value, e.g. score > 0.95 or value == "refund".')
    then: Route


class BranchTierSpec(Spec):
    """One ``(threshold, route)`` pair of ``Branch.tiers``."""

    at_least: Number = Field(description="Taken when the score is at least this.")
    then: Route


class BranchSpec(Spec):
    """``Branch(on, routes, default=...)`` and ``Branch.tiers(on, tiers, otherwise=...)``."""

    branch: OptionalName = Field(None, description="The branch's name (default branch:<on>).")
    on: Text | None = Field(None, description="step.field of a recorded output, input.field, or absent: the value.")
    routes: dict[RouteKey, Route] | None = Field(None, description="Value -> route.")
    rules: Annotated[list[RuleSpec], Field(min_length=1)] | None = Field(None, description="when/then rules, in order.")
    tiers: Annotated[list[BranchTierSpec], Field(min_length=1)] | None = Field(None, description="Confidence tiers.")
    default: Route | None = Field(None, description="The route when nothing matches.")

    @model_validator(mode="after")
    def _one_form(self) -> BranchSpec:
        forms = [name for name in ("routes", "rules", "tiers") if getattr(self, name) is not None]
        if len(forms) != 1:
            found = f"got {', '.join(forms)}" if forms else "got none"
            raise _fail("branch_form", f"a branch needs exactly one of routes, rules or tiers ({found})")
        return self


class ParallelSpec(Spec):
    """``Parallel(nodes, max_workers=..., merge=...)``: every node on the same input."""

    parallel: OptionalName = Field(None, description="The node's name (default parallel).")
    steps: Nodes
    max_workers: PositiveInt | None = None
    merge: Literal["list", "dict"] = "list"


class MapSpec(Spec):
    """``Map(node, over=..., max_workers=..., reduce=...)``: a node over each item of a list."""

    map: OptionalName = Field(None, description="The node's name (default: the name of each).")
    over: Expr | None = Field(None, description="An expression giving the list (default: the value itself).")
    each: Node = Field(description="The node run for every item.")
    max_workers: PositiveInt | None = None
    reduce: Reference = Field("list", description="list, concat, merge, sum, or a function (component or import path).")


class LoopSpec(Spec):
    """``Loop(body, until=..., max_iterations=..., on_exhausted=...)``."""

    loop: OptionalName = Field(None, description="The node's name (default loop).")
    steps: Nodes
    until: Expr = Field(description="The exit condition on an iteration's output.")
    max_iterations: PositiveInt
    on_exhausted: Literal["continue", "fail"] = "continue"


class SubWorkflowSpec(Spec):
    """``SubWorkflow(workflow, name=...)``: another workflow inline."""

    subworkflow: OptionalName = Field(None, description="The node's name (default: the workflow's name).")
    file: Text | None = Field(None, description="A YAML file, relative to this one.")
    workflow: Reference | None = Field(
        None, description="A workflow given to load(workflows=...), or package.module:attribute."
    )

    @model_validator(mode="after")
    def _one_source(self) -> SubWorkflowSpec:
        if (self.file is None) == (self.workflow is None):
            raise _fail("subworkflow_source", "a subworkflow needs exactly one of file or workflow")
        return self


# components -------------------------------------------------------------------------------------

FailureCode = Annotated[Any, BeforeValidator(lambda v: _failure_code(v))]


def _failure_code(value: Any) -> Any:
    if isinstance(value, int) and not isinstance(value, bool) and 100 <= value <= 599:
        return value
    if isinstance(value, str) and value and not any(c.isspace() for c in value):
        return value  # timeout, connection, invalid_output, or an exception type (checked when built)
    raise _fail(
        "failure_code",
        f"expected an HTTP status, timeout, connection, invalid_output or an exception type, got {show_value(value)}",
    )


class CircuitBreakerSpec(Spec):
    """``CircuitBreaker(...)`` around a model component."""

    failure_threshold: PositiveInt = 5
    window: Duration | None = Field(60, description="Failures are counted over this window; null: consecutive.")
    recovery_timeout: Duration = Field(30, description="How long the breaker stays open.")
    half_open_max_requests: PositiveInt = 1
    failure_codes: list[FailureCode] | None = Field(
        None, description="Which errors count (default 429, 5xx, timeout...)."
    )
    fallback: Text | None = Field(None, description="A model component that answers while the breaker is open.")


class RateLimitSpec(Spec):
    """``RateLimiter(...)`` in front of a model component: calls queue instead of failing."""

    requests_per_second: Annotated[Number, Field(gt=0)] | None = None
    requests_per_minute: Annotated[Number, Field(gt=0)] | None = None
    burst: PositiveInt | None = None
    tokens_per_minute: Annotated[Number, Field(gt=0)] | None = None
    token_burst: PositiveInt | None = None


class ComponentSpec(Spec):
    """A component: a function or a model, with a rate limit and a circuit breaker for models."""

    use: Reference = Field(description="Another component's name, or package.module:attribute.")
    rate_limit: RateLimitSpec | None = None
    circuit_breaker: CircuitBreakerSpec | None = None


Component = Annotated[
    Annotated[Reference, Tag("<use>")] | Annotated[ComponentSpec, Tag("<component>")],
    _form(
        _by_type(mapping="<component>", scalar="<use>"),
        "expected a component: a name or import path (package.module:attribute), or a mapping with use",
    ),
]


class WorkflowSpec(Spec):
    """A workflow: ``Workflow(name, steps, ...)``."""

    model_config = ConfigDict(title="orchestrate workflow")

    name: Name = Field(description="The workflow's name.")
    version: Version | None = Field(None, description="An explicit version (a string); default: a fingerprint.")
    description: str = ""
    timeout: Duration | None = Field(None, description="The run's time budget.")
    max_concurrency: PositiveInt | None = Field(None, description="Most runs executing at once in a process.")
    state_store: Text | None = Field(None, description="Store URL for Workflow.run (memory, sqlite, postgresql...).")
    components: dict[Name, Component] = Field(
        default_factory=dict, description="Named functions and models for steps to use."
    )
    steps: Nodes
    error_handler: StepSpec | None = Field(None, description="A step run with a failure report when the run fails.")
    compress_after: CompressSpec | None = Field(
        None, description="The run stores the values it records after that step compressed."
    )
    monitors: list[MonitorField] = Field(
        default_factory=list, description="Monitors of the steps' health, drift and outcome feedback."
    )


for _model in (RuleSpec, BranchTierSpec, BranchSpec, ParallelSpec, MapSpec, LoopSpec, SubWorkflowSpec, WorkflowSpec):
    _model.model_rebuild()

TAGS: dict[str, type[Spec]] = {
    "<exponential retry>": ExponentialRetrySpec,
    "<fixed retry>": FixedRetrySpec,
    "<value>": ValueFallbackSpec,
    "<call>": CallFallbackSpec,
    "<cached>": CachedFallbackSpec,
    "<skip>": SkipFallbackSpec,
    "<cache>": CacheSpec,
    "<component>": ComponentSpec,
    "<timeout>": TimeoutSpec,
    "<escalate>": EscalateActionSpec,
    "<default>": DefaultActionSpec,
    "<route_to>": RouteActionSpec,
    "<gate>": GateSpec,
    "<tiered gate>": TieredGateSpec,
    "<step>": StepSpec,
    "<branch>": BranchSpec,
    "<parallel>": ParallelSpec,
    "<map>": MapSpec,
    "<loop>": LoopSpec,
    "<subworkflow>": SubWorkflowSpec,
    "<monitor>": MetricMonitorSpec,
    "<drift monitor>": DriftMonitorSpec,
    "<outcome monitor>": OutcomeMonitorSpec,
}
"""Union tags and the model each selects, to find the keys allowed at a place of the file."""
