"""``orchestrate validate``, ``graph``, ``schema``, and ``run``/``worker`` with a YAML file, through click's runner."""

from __future__ import annotations

import json
import textwrap
import uuid
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from orchestrate.cli import cli
from orchestrate.yaml import json_schema

STEPS = """
def classify(message):
    intent = "refund" if "refund" in message else "other"
    return {"intent": intent, "message": message, "score": 0.97 if "!" in message else 0.4}


def refund(ticket):
    return {**ticket, "answer": "refund issued"}


def escalate(ticket):
    return {**ticket, "answer": "a person will answer"}


def reply(ticket):
    return f"{ticket['answer']} ({ticket['intent']})"
"""

FLOW = """
name: support
version: "2"
timeout: 1m
steps:
  - step: classify
    call: {module}:classify
    timeout: 5s
    retry: 2
  - branch: route
    on: classify.intent
    routes:
      refund: {{step: refund, call: {module}:refund}}
    default:
      step: escalate
      call: {module}:escalate
      gate: {{roles: [support_lead], timeout: 4h}}
  - step: reply
    call: {module}:reply
"""


def invoke(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), env={"COLUMNS": "200"}, catch_exceptions=False)


@pytest.fixture
def flow(tmp_path: Path) -> Path:
    """A YAML workflow and the module of its functions, next to each other (a fresh module name each time)."""
    module = f"yaml_cli_steps_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{module}.py").write_text(STEPS)
    path = tmp_path / "support.yaml"
    path.write_text(FLOW.format(module=module))
    return path


@pytest.fixture
def store(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'runs.db'}"


def test_validate_prints_the_workflow_it_found(flow: Path):
    result = invoke("validate", str(flow))
    assert result.exit_code == 0, result.output
    assert result.output == "ok: workflow support version 2, 4 steps\n"


def test_validate_prints_one_line_per_problem_and_exits_2(tmp_path: Path, flow: Path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: support\ntimeout: soon\nsteps:\n  - step: a\n    retires: 3\n")
    result = invoke("validate", str(flow), str(bad))
    assert result.exit_code == 2
    assert result.output.splitlines() == [
        "ok: workflow support version 2, 4 steps",
        f"{bad}:2:10: timeout: expected a duration such as 30s, 5m, 1h30m, 250ms or 2d (or a number of seconds), "
        "got 'soon'",
        f"{bad}:5:5: steps[0].retires: unknown key 'retires'; did you mean 'retry'? (expected one of: cache, call, "
        "compress, failover_model, fallback, gate, isolation, max_concurrency, min_budget, model, options, pipeline, "
        "retry, schema, step, timeout)",
    ]


def test_validate_takes_python_targets_too(tmp_path: Path):
    app = tmp_path / "app_for_validate.py"
    app.write_text(
        "from orchestrate import Step, Workflow, workflow\n"
        "w = Workflow('w', [Step('a', lambda x: x)], version='7')\n"
        "@workflow(version='1')\nasync def durable(ctx, value):\n    return value\n"
    )
    result = invoke("validate", f"{app}:w", f"{app}:durable", f"{app}:missing")
    assert result.exit_code == 2
    lines = result.output.splitlines()
    assert lines[:2] == ["ok: workflow w version 7, 1 step", "ok: workflow durable version 1 (a durable function)"]
    assert lines[2].startswith(f"{app}:missing: ")


def test_validate_needs_a_file():
    result = invoke("validate")
    assert result.exit_code == 2
    assert "Missing argument 'FILE.yaml...'" in result.output


def test_graph_draws_a_tree(flow: Path):
    result = invoke("graph", str(flow))
    assert result.exit_code == 0, result.output
    module = flow.read_text().split("call: ")[1].split(":")[0]
    assert result.output.splitlines() == [
        "workflow support (version 2)",
        "├── step classify (calls classify, timeout 5s, 3 attempts)",
        "├── branch route on classify.intent",
        "│   ├── refund →",
        "│   │   └── step refund (calls refund)",
        "│   └── otherwise →",
        "│       └── step escalate (calls escalate, review after)",
        "└── step reply (calls reply)",
    ]
    assert module.startswith("yaml_cli_steps_")


def test_graph_as_mermaid_and_dot(flow: Path):
    mermaid = invoke("graph", str(flow), "--format", "mermaid")
    assert mermaid.exit_code == 0
    lines = mermaid.output.splitlines()
    assert lines[0] == "flowchart TD"
    assert '    n2{"branch route on classify.intent"}' in lines
    assert "    n2 -->|refund| n3" in lines and "    n2 -->|otherwise| n4" in lines
    assert "    n3 --> n5" in lines and "    n4 --> n5" in lines  # both routes join at reply
    dot = invoke("graph", str(flow), "--format", "dot")
    assert dot.exit_code == 0
    assert dot.output.startswith("digraph workflow {\n")
    assert '    n2 [label="branch route on classify.intent", shape=diamond];' in dot.output
    assert '    n2 -> n3 [label="refund"];' in dot.output


def test_graph_draws_loops_maps_parallels_and_jumps(tmp_path: Path):
    path = tmp_path / "shapes.yaml"
    path.write_text(
        textwrap.dedent(
            """\
            name: shapes
            components: {f: "builtins:len"}
            steps:
              - parallel: checks
                steps: [{step: a, call: f}, {step: b, call: f}]
              - map: each
                over: items
                reduce: sum
                each: {step: c, call: f}
              - loop: refine
                until: quality >= 0.9
                max_iterations: 3
                steps: [{step: d, call: f}]
              - branch: jump
                rules: [{when: value > 1, then: end}]
                default: {step: e, call: f}
              - step: end
                call: f
            """
        )
    )
    text = invoke("graph", str(path)).output.splitlines()
    assert "├── loop refine until quality >= 0.9 (at most 3)" in text
    assert "├── map each over items (reduce sum)" in text
    assert "│   ├── when value > 1 → go to end" in text
    mermaid = invoke("graph", str(path), "--format", "mermaid").output
    assert "-.->|again|" in mermaid  # the loop's way back
    assert "|when value > 1| n" in mermaid


def test_graph_of_a_durable_function_is_refused(tmp_path: Path):
    app = tmp_path / "durable_for_graph.py"
    app.write_text("from orchestrate import workflow\n@workflow(version='1')\nasync def d(ctx, v):\n    return v\n")
    result = invoke("graph", f"{app}:d")
    assert result.exit_code == 2
    assert (
        "'d' is a durable function: its steps are decided by its code as it runs, so it has no graph" in result.output
    )


def test_schema_prints_the_json_schema():
    result = invoke("schema")
    assert result.exit_code == 0
    schema = json.loads(result.output)
    assert schema == json.loads(json.dumps(json_schema()))
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["additionalProperties"] is False
    assert {"name", "steps", "components", "timeout", "version"} <= set(schema["properties"])


def test_run_a_yaml_file(flow: Path, store: str):
    result = invoke("run", str(flow), "--input", '"refund please!"', "--store", store)
    assert result.exit_code == 0, result.output
    assert "succeeded" in result.output
    assert "refund issued (refund)" in result.output


def test_a_yaml_run_waits_for_its_review(flow: Path, store: str):
    waiting = invoke("run", str(flow), "--input", '"hello"', "--store", store)
    assert waiting.exit_code == 3, waiting.output
    assert "waiting" in waiting.output


def test_a_worker_serves_yaml_files(flow: Path, store: str):
    detached = invoke("run", str(flow), "--input", '"refund"', "--store", store, "--detach")
    assert detached.exit_code == 0
    worked = invoke("worker", "--app", str(flow), "--until-idle", "--store", store, "--log-level", "error")
    assert worked.exit_code == 0, worked.output
    shown = invoke("runs", "show", detached.output.strip(), "--store", store)
    assert "succeeded" in shown.output


def test_run_an_invalid_yaml_file_says_where_in_one_line(tmp_path: Path, store: str):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: w\ntimeout: soon\nsteps:\n  - step: a\n    bogus: 1\n")
    result = invoke("run", str(bad), "--store", store)
    assert result.exit_code == 2
    (line,) = result.output.splitlines()
    assert line.startswith(f"error: {bad}:2:10: timeout: expected a duration such as 30s")
    assert line.endswith(f"(1 more: `orchestrate validate {bad}` lists them all)")


def test_run_a_missing_yaml_file(tmp_path: Path, store: str):
    result = invoke("run", str(tmp_path / "nowhere.yaml"), "--store", store)
    assert result.exit_code == 2
    assert "error: no such file:" in result.output
