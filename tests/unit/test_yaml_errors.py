"""A bad YAML definition gets every problem at once, each with its file, line, column and what was expected."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from orchestrate import DefinitionError
from orchestrate.yaml import Problem, YamlDefinitionError, load, loads

M = __name__


def ok(value: object) -> object:
    return value


NOT_A_FUNCTION = 42


def problems(text: str, **kwargs: object) -> list[str]:
    with pytest.raises(YamlDefinitionError) as exc:
        loads(textwrap.dedent(text).lstrip("\n"), source="flow.yaml", **kwargs)  # type: ignore[arg-type]
    assert isinstance(exc.value, DefinitionError)
    assert str(exc.value) == "\n".join(str(p) for p in exc.value.problems)
    return [str(p) for p in exc.value.problems]


def one(text: str, **kwargs: object) -> str:
    found = problems(text, **kwargs)
    assert len(found) == 1, found
    return found[0]


def test_every_schema_problem_is_listed_with_its_line_and_column():
    found = problems(
        f"""
        name: support
        version: 1.10
        timeout: soon
        steps:
          - step: classify
            call: {M}:ok
            retires: 3
            retry: {{max_attempts: 0}}
          - loop: again
            steps: [{{step: inner, call: {M}:ok}}]
          - 7
        """
    )
    assert found == [
        "flow.yaml:2:10: version: expected a string, got the number 1.1; quote it so that YAML keeps it as written: "
        'version: "1.1"',
        "flow.yaml:3:10: timeout: expected a duration such as 30s, 5m, 1h30m, 250ms or 2d (or a number of seconds), "
        "got 'soon'",
        "flow.yaml:7:5: steps[0].retires: unknown key 'retires'; did you mean 'retry'? (expected one of: cache, call, "
        "compress, failover_model, fallback, gate, isolation, max_concurrency, min_budget, model, options, pipeline, "
        "retry, schema, step, timeout)",
        "flow.yaml:8:27: steps[0].retry.max_attempts: expected a number >= 1, got 0",
        "flow.yaml:9:5: steps[1]: missing required key 'until'",
        "flow.yaml:9:5: steps[1]: missing required key 'max_iterations'",
        "flow.yaml:11:5: steps[2]: expected a node: a mapping with one of the keys step, branch, parallel, map, loop, "
        "subworkflow",
    ]


def test_the_error_carries_the_problems_as_records():
    with pytest.raises(YamlDefinitionError) as exc:
        loads("name: w\nsteps: []\n", source="w.yaml")
    assert exc.value.problems == (Problem("w.yaml", 2, 8, "steps", "expected at least 1 item(s), got 0"),)


@pytest.mark.parametrize(
    ("snippet", "expected"),
    [
        (
            "bogus: 1",
            "flow.yaml:3:1: bogus: unknown key 'bogus' (expected one of: components, compress_after, description, ",
        ),
        ("max_concurrency: 0", "flow.yaml:3:18: max_concurrency: expected a number >= 1, got 0"),
        ("max_concurrency: '5'", "flow.yaml:3:18: max_concurrency: expected an integer, got '5'"),
        ("description: [a]", "flow.yaml:3:14: description: expected a string, got a list"),
        ("state_store: ''", "flow.yaml:3:14: state_store: expected a non-empty string, got ''"),
    ],
)
def test_workflow_keys(snippet, expected):
    found = one(f"name: w\nsteps: [{{step: a, call: {M}:ok}}]\n{snippet}\n")
    assert found.startswith(expected), found


def test_a_bad_component_name_points_at_the_key():
    assert one(f"name: w\nsteps: [{{step: a, call: {M}:ok}}]\ncomponents: {{'bad name': x:y}}\n") == (
        "flow.yaml:3:14: components['bad name']: expected a name (letters, digits, _ . : -, not starting with a "
        "digit), got 'bad name'"
    )


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("soon", "expected a duration such as 30s, 5m, 1h30m, 250ms or 2d (or a number of seconds), got 'soon'"),
        ("'30'", "got '30'; add a unit, e.g. '30s'"),
        ("-5s", "expected a duration > 0, got '-5s'"),
        ("0s", "expected a duration > 0, got '0s'"),
        ("0", "expected a duration > 0, got 0"),
        ("30m1h", "(each unit once, largest first), got '30m1h'"),
        (".inf", "expected a finite duration, got inf"),
        (".nan", "expected a finite duration, got nan"),
        ("true", "got true"),
        ("[5s]", "expected a duration (per attempt) or a mapping with attempt and total"),
    ],
)
def test_bad_durations(value, message):
    found = one(f"name: w\nsteps:\n  - step: a\n    call: {M}:ok\n    timeout: {value}\n")
    assert found.startswith("flow.yaml:5:14: steps[0].timeout: ")
    assert message in found


@pytest.mark.parametrize(
    ("expression", "column", "reason"),
    [
        ("score >", 8, "expected a value after '>', found the end"),
        ("score = 1", 7, "unexpected character '='; use '==' to compare"),
        ("a && b", 3, "unexpected character '&'; use 'and'"),
        (
            "open('x')",
            1,
            "unknown function 'open'; the functions are abs, endswith, len, lower, max, min, round, startswith, upper",
        ),
        ("len(a, b)", 1, "len() takes 1 argument(s), got 2"),
        ("__class__", 1, "names starting with '_' are not reachable: '__class__'"),
        ("a.__dict__", 3, "fields starting with '_' are not reachable: '__dict__'"),
        ("score ** 2", 7, "unexpected '**'; powers are not part of the language"),
        ("a b", 3, "unexpected 'b' after a complete expression; join conditions with 'and' / 'or'"),
    ],
)
def test_bad_expressions_point_into_the_expression(expression, column, reason):
    found = one(
        f"""
        name: w
        steps:
          - step: a
            call: {M}:ok
          - branch: b
            rules:
              - when: "{expression}"
                then: {{step: c, call: {M}:ok}}
        """
    )
    # The value starts at column 15 (its opening quote); the column is inside the text.
    assert found == (
        f"flow.yaml:7:{15 + column}: steps[1].rules[0].when: invalid expression {expression!r}: {reason}"
    ), found


def test_an_expression_that_is_not_a_string():
    found = one(
        f"name: w\nsteps:\n  - loop: l\n    until: 3\n    max_iterations: 2\n    steps: [{{step: a, call: {M}:ok}}]\n"
    )
    assert found == "flow.yaml:4:12: steps[0].until: expected an expression (a string such as score > 0.9), got 3"


def test_unknown_keys_are_errors_at_every_depth_with_a_suggestion():
    found = problems(
        f"""
        name: w
        steps:
          - step: a
            call: {M}:ok
            fallback: [skip, {{value: 1, flg: x}}]
            gate: {{roles: [a], timout: 1h, on_timeout: {{escalate: {{to: b, priorty: high}}}}}}
            cache: {{ttl: 1h, size: 3}}
        """
    )
    assert found == [
        "flow.yaml:5:33: steps[0].fallback[1].flg: unknown key 'flg'; did you mean 'flag'? (expected one of: flag, "
        "value)",
        "flow.yaml:6:24: steps[0].gate.timout: unknown key 'timout'; did you mean 'timeout'? (expected one of: at, "
        "escalate_on_timeout, escalate_to, notify, on_reject, on_timeout, priority, queue, required_approvals, roles, "
        "timeout, warn_before)",
        "flow.yaml:6:67: steps[0].gate.on_timeout.escalate.priorty: unknown key 'priorty'; did you mean 'priority'? "
        "(expected one of: on_timeout, priority, timeout, to, warn_before)",
        "flow.yaml:7:22: steps[0].cache.size: unknown key 'size' (expected one of: ttl)",
    ]


@pytest.mark.parametrize(
    ("node", "expected"),
    [
        ("{branch: b, on: a.x}", "steps[1]: a branch needs exactly one of routes, rules or tiers (got none)"),
        (
            "{branch: b, routes: {x: y}, rules: [{when: 'true', then: y}]}",
            "steps[1]: a branch needs exactly one of routes, rules or tiers (got routes, rules)",
        ),
        ("{subworkflow: s}", "steps[1]: a subworkflow needs exactly one of file or workflow"),
        ("{map: m, each: 3}", "steps[1].each: expected a node: a mapping with one of the keys step"),
        ("{parallel: p, steps: []}", "steps[1].steps: expected at least 1 item(s), got 0"),
        ("{parallel: p, merge: set, steps: [{step: c}]}", "steps[1].merge: expected 'list' or 'dict', got 'set'"),
        ("{step: c, isolation: fork}", "steps[1].isolation: expected 'thread', 'process' or 'inline', got 'fork'"),
        ("{step: c, retry: -1}", "steps[1].retry: expected a number >= 0, got -1"),
        ("{step: c, retry: 1.5}", "steps[1].retry: expected a number of retries after the first attempt, or a mapping"),
        ("{step: c, retry: {strategy: fixed, initial_delay: 1s}}", "steps[1].retry.initial_delay: unknown key"),
        ("{step: c, retry: {strategy: linear}}", "steps[1].retry.strategy: expected 'exponential', got 'linear'"),
        ("{step: c, fallback: {cached: false}}", "steps[1].fallback.cached: expected True, got false"),
        ("{step: c, fallback: later}", "steps[1].fallback: expected 'skip' or 'cached', got 'later'"),
        ("{step: c, gate: {priority: asap}}", "steps[1].gate.priority: expected 'urgent', 'high', 'normal' or 'low'"),
        ("{step: c, gate: {on_timeout: wait}}", "steps[1].gate.on_timeout: expected 'fail', 'approve', 'reject' or"),
        ("{step: c, gate: {required_approvals: 0}}", "steps[1].gate.required_approvals: expected a number >= 1, got 0"),
        ("{step: c, gate: {at: during}}", "steps[1].gate.at: expected 'before' or 'after', got 'during'"),
        ("{step: '1st'}", "steps[1].step: expected a name (letters, digits, _ . : -, not starting with a digit)"),
        ("{step: c, options: {timeout: 3}}", "steps[1].options.timeout: 'timeout' is a step setting, not a free-form"),
        ("{step: c, options: {on_fail: block}}", "option on_fail='block' is not a step setting and would be ignored"),
    ],
)
def test_node_problems(node, expected):
    found = one(f"name: w\ncomponents: {{c: {M}:ok, y: {M}:ok}}\nsteps:\n  - {{step: a, call: {M}:ok}}\n  - {node}\n")
    assert f": {expected}" in found, found
    assert found.startswith("flow.yaml:5:"), found


def test_missing_functions_are_named_with_the_fix(tmp_path: Path):
    (tmp_path / "helpers.py").write_text("def classify(text):\n    return text\n")
    (tmp_path / "flow.yaml").write_text(
        textwrap.dedent(
            f"""\
            name: w
            steps:
              - step: a
                call: helpers:clasify
              - step: b
                call: no_such_module:f
              - step: c
                call: unknown
              - step: d
              - step: e
                model: gpt-5
              - step: f
                call: {M}:NOT_A_FUNCTION
              - step: g
                call: {M}:ok
                failover_model: cheap
                fallback: {{call: {M}:nope}}
            """
        )
    )
    with pytest.raises(YamlDefinitionError) as exc:
        load(tmp_path / "flow.yaml")
    where = str(tmp_path / "flow.yaml")
    assert [str(p).replace(where, "flow.yaml") for p in exc.value.problems] == [
        "flow.yaml:4:11: steps[0].call: cannot import function 'helpers:clasify': 'helpers' has no attribute "
        "'clasify'; did you mean 'classify'?",
        "flow.yaml:6:11: steps[1].call: cannot import function 'no_such_module:f': no module named 'no_such_module' "
        "(looked next to flow.yaml and on sys.path); install it, put no_such_module.py next to the YAML file, or pass "
        "the function to load(components=...)",
        "flow.yaml:8:11: steps[2].call: no component named 'unknown'; define it under components: (unknown: "
        "package.module:function), pass it to load(components={'unknown': ...}), or give an import path "
        "package.module:unknown",
        "flow.yaml:9:11: steps[3].step: step 'd' has no function: add call: package.module:function, or define a "
        "component named 'd' (under components:, or in load(components=...))",
        "flow.yaml:10:11: steps[4].step: step 'e' has no function: add call: package.module:function, or define a "
        "component named 'e' or 'gpt-5' (under components:, or in load(components=...))",
        f"flow.yaml:13:11: steps[5].call: '{M}:NOT_A_FUNCTION' is an int, not a function",
        "flow.yaml:16:21: steps[6].failover_model: failover_model 'cheap' is not a component; define it under "
        "components: or pass it to load(components=...)",
    ]


def test_a_component_given_to_load_fills_a_step():
    wf = loads(
        "name: w\nsteps:\n  - step: classify\n  - step: b\n    model: gpt\n", components={"classify": ok, "gpt": ok}
    )
    assert [n.fn for n in wf.nodes] == [ok, ok]  # type: ignore[attr-defined]


def test_what_the_python_api_refuses_is_reported_at_the_node():
    found = one(
        f"""
        name: w
        steps:
          - step: a
            call: {M}:ok
            retry: {{initial_delay: 5s, max_delay: 1s}}
          - branch: b
            routes: {{x: a}}
        """
    )
    assert found.startswith("flow.yaml:5:12: steps[0].retry: Retry.max_delay (1) is below initial_delay (5)"), found


def test_workflow_checks_are_reported_at_the_steps_key():
    found = one(
        f"""
        name: w
        steps:
          - step: a
            call: {M}:ok
          - step: a
            call: {M}:ok
        """
    )
    assert found == (
        "flow.yaml:2:1: steps: workflow 'w': steps[1] step 'a': duplicate name 'a' (also at steps[0] step 'a'); "
        "names are step keys and must be unique"
    )
    backwards = one(f"name: w\nsteps:\n  - {{step: a, call: {M}:ok}}\n  - branch: b\n    routes: {{x: a}}\n")
    assert "routes back to 'a'; jumps may only go forward" in backwards


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("name: w\nsteps: [\n", "flow.yaml:3:1: malformed YAML: while parsing a flow node expected the node content"),
        ("name: w\n  bad: indent\n", "flow.yaml:2:6: malformed YAML: mapping values are not allowed here"),
        ("", "flow.yaml:1:1: the file is empty: expected a workflow mapping"),
        ("- a\n- b\n", "flow.yaml:1:1: expected a mapping, got a list"),
        (
            "name: w\nname: v\nsteps: []\n",
            "flow.yaml:2:1: duplicate key 'name' (first at line 1); a key may appear once",
        ),
        ("a: 1\n---\nb: 2\n", "flow.yaml:2:1: malformed YAML: expected a single document in the stream"),
        ("name: !!python/object:os.system x\n", "could not determine a constructor for the tag"),
        ("? [a]\n: 1\n", "flow.yaml:1:3: keys must be plain scalars"),
    ],
)
def test_malformed_yaml(text, expected):
    found = problems(text)
    assert any(expected in p for p in found), found


def test_an_alias_bomb_is_refused():
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 8)]
    found = problems("\n".join(lines) + "\n")
    assert any("the document expands to more than 100000 nodes" in p for p in found)


def test_yaml_1_1_surprises_are_plain_strings():
    # `on:` must stay a key named "on" (YAML 1.1 makes it True), `no` a route key, 010 not octal.
    wf = loads(
        f"""
name: w
steps:
  - step: a
    call: {M}:ok
  - branch: b
    on: a.answer
    routes:
      no: {{step: n, call: {M}:ok}}
      yes: {{step: y, call: {M}:ok}}
      010: {{step: z, call: {M}:ok}}
      true: {{step: t, call: {M}:ok}}
"""
    )
    branch = wf.nodes[1]
    assert branch.on == "a.answer"  # type: ignore[attr-defined]
    assert list(branch.by_key) == ["no", "yes", "010", True]  # type: ignore[attr-defined]


def test_a_missing_file():
    with pytest.raises(YamlDefinitionError, match=r"nowhere.yaml:1:1: no such file"):
        load("nowhere.yaml")


def test_sub_workflow_problems_name_their_own_file(tmp_path: Path):
    (tmp_path / "inner.yaml").write_text("name: inner\nsteps:\n  - step: a\n    timeout: never\n")
    (tmp_path / "outer.yaml").write_text("name: outer\nsteps:\n  - subworkflow: x\n    file: inner.yaml\n")
    with pytest.raises(YamlDefinitionError) as exc:
        load(tmp_path / "outer.yaml")
    (problem,) = exc.value.problems
    assert problem.file.endswith("inner.yaml") and (problem.line, problem.column) == (4, 14)


def test_sub_workflow_files_that_include_each_other(tmp_path: Path):
    (tmp_path / "a.yaml").write_text("name: a\nsteps:\n  - subworkflow: b\n    file: b.yaml\n")
    (tmp_path / "b.yaml").write_text("name: b\nsteps:\n  - subworkflow: a\n    file: a.yaml\n")
    with pytest.raises(YamlDefinitionError, match=r"sub-workflow files include each other: a.yaml -> b.yaml -> a.yaml"):
        load(tmp_path / "a.yaml")


def test_components_that_use_each_other_in_a_circle():
    found = one(f"name: w\ncomponents:\n  x: y\n  y: x\nsteps: [{{step: a, call: {M}:ok}}]\n")
    assert found == "flow.yaml:3:6: components.x.use: components use each other in a circle: x -> y -> x"


def test_a_breaker_on_a_function_is_refused():
    found = one(
        f"name: w\ncomponents:\n  f:\n    use: {M}:ok\n    circuit_breaker: {{failure_threshold: 2}}\n"
        f"steps: [{{step: a, call: f}}]\n"
    )
    assert found.startswith("flow.yaml:5:5: components.f.circuit_breaker: circuit_breaker wraps a model, but")


def test_unknown_exception_types_are_named():
    found = one(f"name: w\nsteps:\n  - step: a\n    call: {M}:ok\n    retry: {{retry_on: [Flaky]}}\n")
    assert found.startswith("flow.yaml:5:24: steps[0].retry.retry_on[0]: unknown exception type 'Flaky'")
