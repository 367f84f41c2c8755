"""Every YAML construct has a Python twin with the same version and the same behaviour.

Each case below is a YAML definition and the Python definition a user would write for
it. The twins must have the same version fingerprint (no explicit version), and runs of
the same inputs must end the same way (status, output, recorded steps, review items) on
``memory://`` and on a SQLite file. The step functions live in this module and the YAML
names them by import path.
"""

from __future__ import annotations

import asyncio
import textwrap
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from orchestrate import (
    Branch,
    Client,
    Escalate,
    ExponentialBackoff,
    Fallback,
    FixedRetry,
    HumanReviewGate,
    Loop,
    Map,
    Parallel,
    RunStatus,
    Step,
    StepContext,
    SubWorkflow,
    Tier,
    TieredGate,
    Timeout,
    Workflow,
)
from orchestrate.models import CircuitBreaker, CircuitBreakerModel, RateLimitedModel, RateLimiter
from orchestrate.review import Default
from orchestrate.testing import FunctionModel
from orchestrate.yaml import Expression, load, loads, model_step

M = __name__  # the YAML files import this module's functions: f"{M}:classify"


# step functions -------------------------------------------------------------------------------


def fetch(order: dict) -> dict:
    if order.get("down"):
        raise ConnectionError("carrier down")
    if order.get("bad"):
        raise ValueError("bad order")
    return {"id": order["id"], "source": "carrier"}


def backup(order: dict) -> dict:
    if order["id"] == "lost":
        raise LookupError("no backup either")
    return {"id": order["id"], "source": "backup"}


def summarise(order: dict, ctx: StepContext) -> dict:
    if order["id"] == "slow":
        raise TimeoutError("summariser timed out")
    return {**order, "summary": f"order {order['id']} via {order['source']}", "threshold": ctx.options["threshold"]}


def finish(value: Any, ctx: StepContext) -> dict:
    return {"value": value, "missing": sorted(ctx.missing)}


def classify(message: str) -> dict:
    text = message.lower()
    intent = (
        "refund" if "refund" in text else "order_status" if "order" in text else "spam" if "win" in text else "other"
    )
    score = 0.99 if "!" in message else 0.7 if "?" in message else 0.2
    return {"intent": intent, "score": score, "message": message}


def tag(label: str) -> Callable[[dict], dict]:
    def add(ticket: dict) -> dict:
        return {**ticket, "path": [*ticket.get("path", []), label]}

    add.__name__ = add.__qualname__ = f"tag_{label}"
    return add


tag_refund, tag_track, tag_escalate = tag("refund"), tag("track"), tag("escalate")
tag_auto, tag_careful, tag_plain = tag("auto"), tag("careful"), tag("plain")
tag_high, tag_mid, tag_low = tag("high"), tag("mid"), tag("low")


def length(text: str) -> int:
    return len(text)


def words(text: str) -> int:
    return len(text.split())


def split(checks: dict) -> dict:
    return {"chunks": [[1] * checks["length"], [2] * checks["words"], [3]], "total": checks["length"]}


def size(chunk: list) -> int:
    return len(chunk)


def longest(sizes: list) -> int:
    return max(sizes)


def improve(draft: Any) -> dict:
    if not isinstance(draft, dict):
        return {"quality": 0.3, "start": draft}
    return {**draft, "quality": round(draft["quality"] + 0.3, 2)}


def enrich(value: Any) -> dict:
    return {"enriched": value}


def stamp(value: Any) -> dict:
    return {"stamped": value}


def draft(topic: str) -> dict:
    return {"topic": topic, "text": f"About {topic}", "confidence": 0.6 if "maybe" in topic else 0.9}


def publish(post: dict) -> dict:
    return {**post, "published": True}


def rejected(post: Any) -> dict:
    return {"post": post, "after_review": True}


def explode(value: Any) -> None:
    raise RuntimeError(f"cannot handle {value!r}")


def log_failure(report: dict) -> dict:
    return {"failed_at": report["step"]}


def notify(**kwargs: Any) -> None:
    """A review hook (observes new items)."""


def ask(request: Any) -> str:
    return f"answer to: {request.messages[-1].content}"


def ask_small(request: Any) -> str:
    return f"short answer to: {request.messages[-1].content}"


def prompt(topic: str) -> dict:
    return {"prompt": f"explain {topic}"}


def text_of(result: Any) -> dict:
    return {"text": result.text, "model": result.model}


# the cases -----------------------------------------------------------------------------------


@dataclass
class Case:
    """A YAML definition, its Python twin and the inputs to run both with."""

    id: str
    yaml: str
    python: Callable[[Path], Workflow]
    inputs: list[Any]
    components: Callable[[], dict[str, Any]] | None = None
    files: dict[str, str] | None = None  # other YAML files next to it
    workflows: Callable[[], list[Workflow]] | None = None


def _policies(_: Path) -> Workflow:
    return Workflow(
        "policies",
        [
            Step(
                "fetch",
                fetch,
                timeout="5s",
                retry=ExponentialBackoff(
                    3,
                    initial_delay="10ms",
                    backoff=1.5,
                    max_delay="50ms",
                    jitter=0,
                    retry_on=(ConnectionError,),
                    give_up_on=(ValueError,),
                ),
                fallback=[
                    Fallback.cached(max_age="1h"),
                    Fallback.call(backup),
                    Fallback.value({"id": "?", "source": "default"}, flag="human_review"),
                ],
                cache="1h",
                max_concurrency=2,
                isolation="inline",
                min_budget="250ms",
            ),
            Step(
                "summarise",
                summarise,
                timeout=Timeout(attempt="1s", total="5s"),
                retry=FixedRetry(2, delay="10ms"),
                fallback=Fallback.skip(flag="incomplete"),
                threshold=0.7,
            ),
            Step("finish", finish, retry=1, cache=60),
        ],
    )


POLICIES = Case(
    "policies",
    f"""
    name: policies
    steps:
      - step: fetch
        call: {M}:fetch
        timeout: 5s
        retry:
          max_attempts: 3
          initial_delay: 10ms
          backoff: 1.5
          max_delay: 50ms
          jitter: 0
          retry_on: [ConnectionError]
          give_up_on: [ValueError]
        fallback:
          - cached: true
            max_age: 1h
          - call: {M}:backup
          - value: {{id: "?", source: default}}
            flag: human_review
        cache: 1h
        max_concurrency: 2
        isolation: inline
        min_budget: 250ms
      - step: summarise
        call: {M}:summarise
        timeout: {{attempt: 1s, total: 5s}}
        retry: {{strategy: fixed, max_attempts: 2, delay: 10ms}}
        fallback: {{skip: true, flag: incomplete}}
        options: {{threshold: 0.7}}
      - step: finish
        call: {M}:finish
        retry: 1
        cache: 60
    """,
    _policies,
    [{"id": "A-1"}, {"id": "A-2", "down": True}, {"id": "lost", "bad": True}, {"id": "slow"}],
)


def _routing(_: Path) -> Workflow:
    return Workflow(
        "routing",
        [
            Step("classify", classify),
            Branch(
                "classify.intent",
                {"refund": Step("refund", tag_refund), "order_status": [Step("track", tag_track)], "spam": "finish"},
                default=Step("escalate", tag_escalate),
                name="by_intent",
            ),
            Branch(
                None,
                [
                    (Expression('score > 0.95 and intent != "spam"'), Step("auto", tag_auto)),
                    (Expression('"refund" in lower(message)'), Step("careful", tag_careful)),
                ],
                default=Step("plain", tag_plain),
                name="by_rules",
            ),
            Branch.tiers(
                "classify.score",
                [(0.9, Step("high", tag_high)), (0.5, Step("mid", tag_mid))],
                otherwise=Step("low", tag_low),
                name="by_tier",
            ),
            Step("finish", finish),
        ],
    )


ROUTING = Case(
    "routing",
    f"""
    name: routing
    steps:
      - step: classify
        call: {M}:classify
      - branch: by_intent
        on: classify.intent
        routes:
          refund: {{step: refund, call: {M}:tag_refund}}
          order_status:
            - {{step: track, call: {M}:tag_track}}
          spam: finish
        default: {{step: escalate, call: {M}:tag_escalate}}
      - branch: by_rules
        rules:
          - when: score > 0.95 and intent != "spam"
            then: {{step: auto, call: {M}:tag_auto}}
          - when: '"refund" in lower(message)'
            then: {{step: careful, call: {M}:tag_careful}}
        default: {{step: plain, call: {M}:tag_plain}}
      - branch: by_tier
        on: classify.score
        tiers:
          - {{at_least: 0.9, then: {{step: high, call: {M}:tag_high}}}}
          - {{at_least: 0.5, then: {{step: mid, call: {M}:tag_mid}}}}
        default: {{step: low, call: {M}:tag_low}}
      - step: finish
        call: {M}:finish
    """,
    _routing,
    ["Refund please!", "Where is my order?", "You win a prize!", "hello", "refund my order?"],
)


def _fanout(_: Path) -> Workflow:
    return Workflow(
        "fanout",
        [
            Parallel([Step("length", length), Step("words", words)], max_workers=2, merge="dict", name="checks"),
            Step("split", split),
            Map(Step("size", size), over=Expression("chunks"), max_workers=2, reduce="list", name="sizes"),
            Map(Step("measure", size), name="measured", reduce=longest, over=Expression("[value, [0]]")),
            Loop([Step("improve", improve)], until=Expression("quality >= 0.9"), max_iterations=5, name="refine"),
            Loop(
                [Step("improve_more", improve)],
                until=Expression("quality >= 5"),
                max_iterations=2,
                on_exhausted="continue",
                name="capped",
            ),
        ],
    )


FANOUT = Case(
    "fanout",
    f"""
    name: fanout
    steps:
      - parallel: checks
        max_workers: 2
        merge: dict
        steps:
          - {{step: length, call: {M}:length}}
          - {{step: words, call: {M}:words}}
      - step: split
        call: {M}:split
      - map: sizes
        over: chunks
        max_workers: 2
        reduce: list
        each: {{step: size, call: {M}:size}}
      - map: measured
        over: "[value, [0]]"
        reduce: {M}:longest
        each: {{step: measure, call: {M}:size}}
      - loop: refine
        until: quality >= 0.9
        max_iterations: 5
        steps:
          - {{step: improve, call: {M}:improve}}
      - loop: capped
        until: quality >= 5
        max_iterations: 2
        on_exhausted: continue
        steps:
          - {{step: improve_more, call: {M}:improve}}
    """,
    _fanout,
    ["a b c", "one two three four five"],
)

_ENRICH_YAML = f"""
name: enrich_flow
steps:
  - step: enrich
    call: {M}:enrich
"""


def _stamp_flow() -> Workflow:
    return Workflow("stamp_flow", [Step("stamp", stamp)])


def _subworkflows(_: Path) -> Workflow:
    return Workflow(
        "nesting",
        [
            SubWorkflow(Workflow("enrich_flow", [Step("enrich", enrich)])),
            SubWorkflow(_stamp_flow(), name="stamping"),
            Step("finish", finish),
        ],
    )


SUBWORKFLOWS = Case(
    "subworkflows",
    f"""
    name: nesting
    steps:
      - subworkflow:
        file: enrich.yaml
      - subworkflow: stamping
        workflow: stamp_flow
      - step: finish
        call: {M}:finish
    """,
    _subworkflows,
    ["x", {"deep": [1, 2]}],
    files={"enrich.yaml": _ENRICH_YAML},
    workflows=lambda: [_stamp_flow()],
)


def _gates(_: Path) -> Workflow:
    return Workflow(
        "gates",
        [
            Step(
                "draft",
                draft,
                gate=HumanReviewGate(
                    roles=["editor"],
                    required_approvals=["editor", "legal"],
                    timeout="2h",
                    warn_before="10m",
                    priority="high",
                    on_timeout=Escalate("chief", timeout="30m", on_timeout="reject"),
                    on_reject="rejected",
                    queue="drafts",
                    notify=[notify, "https://hooks.example/reviews"],
                ),
            ),
            Step(
                "publish",
                publish,
                gate=HumanReviewGate(
                    at="before",
                    roles=["publisher"],
                    required_approvals=2,
                    timeout="1d",
                    on_timeout=Default({"published": False}),
                ),
            ),
            Step(
                "score",
                publish,
                gate=TieredGate(
                    "confidence",
                    [
                        Tier(0.8),
                        Tier(0.5, HumanReviewGate(priority="normal", timeout="2h")),
                        Tier(
                            0.0,
                            HumanReviewGate(roles=["senior_agent"], priority="urgent", timeout="30m"),
                            when=Expression("sensitive == true"),
                            name="emergency",
                        ),
                    ],
                    otherwise=HumanReviewGate(priority="low", timeout="6h"),
                ),
            ),
            Step("rejected", rejected),
        ],
    )


GATES = Case(
    "gates",
    f"""
    name: gates
    steps:
      - step: draft
        call: {M}:draft
        gate:
          roles: [editor]
          required_approvals: [editor, legal]
          timeout: 2h
          warn_before: 10m
          priority: high
          on_timeout: {{escalate: {{to: chief, timeout: 30m, on_timeout: reject}}}}
          on_reject: rejected
          queue: drafts
          notify: [{M}:notify, "https://hooks.example/reviews"]
      - step: publish
        call: {M}:publish
        gate:
          at: before
          roles: [publisher]
          required_approvals: 2
          timeout: 1d
          on_timeout: {{default: {{published: false}}}}
      - step: score
        call: {M}:publish
        gate:
          on: confidence
          tiers:
            - at_least: 0.8
            - at_least: 0.5
              review: {{priority: normal, timeout: 2h}}
            - at_least: 0.0
              when: sensitive == true
              review: {{roles: [senior_agent], priority: urgent, timeout: 30m}}
              name: emergency
          otherwise: {{priority: low, timeout: 6h}}
      - step: rejected
        call: {M}:rejected
    """,
    _gates,
    ["news", "maybe news"],
)


def _settings(_: Path) -> Workflow:
    return Workflow(
        "settings",
        [Step("explode", explode)],
        error_handler=Step("error_logging", log_failure),
        timeout="1m",
        max_concurrency=3,
        description="fails on purpose",
    )


SETTINGS = Case(
    "settings",
    f"""
    name: settings
    description: fails on purpose
    timeout: 1m
    max_concurrency: 3
    steps:
      - step: explode
        call: {M}:explode
    error_handler:
      step: error_logging
      call: {M}:log_failure
    """,
    _settings,
    ["boom"],
)

_MODEL = FunctionModel(ask, model_id="large")
_SMALL = FunctionModel(ask_small, model_id="small")


def _model_components() -> dict[str, Any]:
    return {"large": _MODEL, "small": _SMALL}


def _models(_: Path) -> Workflow:
    guarded = CircuitBreakerModel(
        RateLimitedModel(_MODEL, RateLimiter(requests_per_second=50, burst=5)),
        CircuitBreaker(failure_threshold=2, window=60, recovery_timeout=30, failure_codes=[500, 503, "timeout"]),
        fallback=_SMALL,
    )
    return Workflow(
        "models",
        [
            Step("prompt", prompt),
            Step("answer", model="writer", timeout="10s", failover_model="small"),
            Step("text", text_of),
        ],
        components={"writer": model_step(guarded), "small": model_step(_SMALL), "large": model_step(_MODEL)},
    )


MODELS = Case(
    "models",
    f"""
    name: models
    components:
      writer:
        use: large
        rate_limit: {{requests_per_second: 50, burst: 5}}
        circuit_breaker:
          failure_threshold: 2
          window: 1m
          recovery_timeout: 30s
          failure_codes: [500, 503, timeout]
          fallback: small
    steps:
      - step: prompt
        call: {M}:prompt
      - step: answer
        model: writer
        timeout: 10s
        failover_model: small
      - step: text
        call: {M}:text_of
    """,
    _models,
    ["retries", "breakers"],
    components=_model_components,
)

CASES = [POLICIES, ROUTING, FANOUT, SUBWORKFLOWS, GATES, SETTINGS, MODELS]


def _yaml_twin(case: Case, tmp_path: Path) -> Workflow:
    for name, text in (case.files or {}).items():
        (tmp_path / name).write_text(textwrap.dedent(text))
    path = tmp_path / f"{case.id}.yaml"
    path.write_text(textwrap.dedent(case.yaml))
    return load(
        path,
        components=case.components() if case.components else None,
        workflows=case.workflows() if case.workflows else None,
    )


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_a_yaml_workflow_and_its_python_twin_have_the_same_version(case: Case, tmp_path: Path):
    from_yaml = _yaml_twin(case, tmp_path)
    from_python = case.python(tmp_path)
    assert from_yaml.name == from_python.name
    assert from_yaml.version == from_python.version


def test_the_version_follows_the_definition(tmp_path: Path):
    first = loads(ROUTING.yaml.replace("score > 0.95", "score > 0.9"))
    again = loads(ROUTING.yaml.replace("score > 0.95", "score   >   0.9"))  # the canonical text counts
    assert first.version == again.version != _yaml_twin(ROUTING, tmp_path).version
    assert loads(POLICIES.yaml.replace("timeout: 5s", "timeout: 6s")).version != _yaml_twin(POLICIES, tmp_path).version


# behaviour ------------------------------------------------------------------------------------


async def _drive(client: Client, wf: Workflow, value: Any) -> dict[str, Any]:
    """Run to the end, deciding every review on the way; what a user would see of it."""
    record = await client.run(wf, value)
    seen: list[dict[str, Any]] = []
    for _ in range(10):
        if record.status is not RunStatus.WAITING:
            break
        for item in await client.list_reviews(run_id=record.run_id):
            seen.append(
                {
                    "step": item.step_key,
                    "queue": item.queue,
                    "roles": item.roles,
                    "required": item.required_roles,
                    "min_approvals": item.min_approvals,
                    "priority": item.priority,
                    "sla": item.sla_seconds,
                    "payload": item.payload,
                }
            )
            if item.step_key == "draft" and value == "maybe news":
                await client.reject(item.review_id, by="editor-1", role="editor", reason="not yet")
            elif item.required_roles:
                for role in item.required_roles:
                    await client.approve(item.review_id, by=f"{role}-1", role=role)
            else:
                role = item.roles[0] if item.roles else None
                for n in range(item.min_approvals):
                    await client.approve(item.review_id, by=f"reviewer-{n}", role=role)
        record = await client.resume(record.run_id)
    detail = await client.detail(record.run_id)
    return {
        "status": record.status,
        "output": record.output,
        "error": (record.error or {}).get("message"),
        "steps": [(s.step_key, s.status.value, s.fallback) for s in detail.steps],
        "reviews": seen,
    }


async def _outcomes(wf: Workflow, inputs: list[Any], url: str) -> list[dict[str, Any]]:
    async with Client(url, workflows=[wf]) as client:
        return [await _drive(client, wf, value) for value in inputs]


@pytest.mark.parametrize("store", ["memory", "sqlite"])
@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_a_yaml_workflow_behaves_as_its_python_twin(case: Case, store: str, tmp_path: Path):
    from_yaml = _yaml_twin(case, tmp_path)
    from_python = case.python(tmp_path)

    def url(name: str) -> str:
        return "memory://" if store == "memory" else f"sqlite:///{tmp_path / name}.db"

    got = asyncio.run(_outcomes(from_yaml, case.inputs, url("yaml")))
    expected = asyncio.run(_outcomes(from_python, case.inputs, url("python")))
    assert got == expected
    assert any(o["status"] is RunStatus.SUCCEEDED for o in got) or case.id == "settings"


def test_the_twins_take_the_paths_their_stories_say(tmp_path: Path):
    outcomes = asyncio.run(_outcomes(_yaml_twin(ROUTING, tmp_path), ROUTING.inputs, "memory://"))
    paths = [o["output"]["value"].get("path") if isinstance(o["output"]["value"], dict) else None for o in outcomes]
    assert paths == [
        ["refund", "auto", "high"],
        ["track", "plain", "mid"],
        None,  # spam jumps to finish
        ["escalate", "plain", "low"],
        ["refund", "careful", "mid"],
    ]
    policies = asyncio.run(_outcomes(_yaml_twin(POLICIES, tmp_path), POLICIES.inputs, "memory://"))
    assert [o["output"]["value"].get("source") if o["output"]["value"] else None for o in policies] == [
        "carrier",
        "backup",
        "default",
        None,
    ]
    assert policies[3]["output"]["missing"] == ["summarise"]
    settings = asyncio.run(_outcomes(_yaml_twin(SETTINGS, tmp_path), SETTINGS.inputs, "memory://"))
    assert settings[0]["status"] is RunStatus.DEAD
    assert ("error_handler", "succeeded", None) in settings[0]["steps"]
    gates = asyncio.run(_outcomes(_yaml_twin(GATES, tmp_path), GATES.inputs, "memory://"))
    first = gates[0]["reviews"]
    assert [(r["step"], r["queue"], r["priority"], r["sla"]) for r in first] == [
        ("draft", "drafts", "high", 7200.0),
        ("publish", "review", "normal", 86400.0),
    ]
    assert first[0]["required"] == ["editor", "legal"] and first[1]["min_approvals"] == 2
    assert gates[0]["output"]["post"]["published"] is True  # confidence 0.9: the tiered gate approved it
    assert [r["step"] for r in gates[1]["reviews"]] == ["draft"]  # rejected: on to the rejected step
    assert gates[1]["output"] == {
        "post": {"topic": "maybe news", "text": "About maybe news", "confidence": 0.6},
        "after_review": True,
    }
    models = asyncio.run(
        _outcomes(
            _yaml_twin(
                MODELS,
                tmp_path,
            ),
            MODELS.inputs,
            "memory://",
        )
    )
    assert models[0]["output"] == {"text": "answer to: explain retries", "model": "large"}


def test_the_json_schema_accepts_every_twin():
    jsonschema = pytest.importorskip("jsonschema")
    from orchestrate.yaml import json_schema
    from orchestrate.yaml._source import parse  # YAML 1.2 scalars: `on:` stays a key named "on"

    validator = jsonschema.Draft202012Validator(json_schema())
    for case in CASES:
        for text in [case.yaml, *(case.files or {}).values()]:
            errors = [e.message for e in validator.iter_errors(parse(textwrap.dedent(text), case.id).data)]
            assert errors == [], (case.id, errors)
