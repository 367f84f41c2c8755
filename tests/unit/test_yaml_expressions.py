"""The expression language of rules: what it evaluates, what it refuses, and that it never runs code."""

from __future__ import annotations

import asyncio
import dataclasses
import pickle

import pytest
from pydantic import BaseModel

from orchestrate import Branch, DefinitionError, Loop, Map, Step, Workflow
from orchestrate.yaml import FUNCTIONS, EvaluationError, Expression, ExpressionError

TICKET = {
    "score": 0.97,
    "intent": "refund",
    "urgent": False,
    "message": "I want a REFUND now",
    "items": [3, 1, 2],
    "confidence": 0.6,
    "customer": {"tier": "gold", "orders": [{"total": 120}]},
    "note": None,
}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("score > 0.95", True),
        ("score >= 0.98", False),
        ('intent == "refund"', True),
        ("intent == 'refund' and not urgent", True),
        ('intent != "refund" or urgent', False),
        ('"refund" in lower(message)', True),
        ('"x" not in intent', True),
        ("len(items) >= 3", True),
        ("0.5 <= confidence < 0.8", True),
        ("0.7 <= confidence < 0.8", False),
        ('customer.tier == "gold"', True),
        ("customer.orders[0].total > 100", True),
        ("customer.orders[5].total == null", True),
        ("missing == null and note == null", True),
        ("max(items) - min(items) == 2", True),
        ("max(1, 5, 3)", 5),
        ("abs(-2) + round(2.46, 1)", 4.5),
        ("items[-1] * 10 % 7", 6),
        ("-(1 + 2) * 2", -6),
        ("[1, 2] == [1, 2]", True),
        ("intent in ['refund', 'return']", True),
        ('startswith(message, "I want") and endswith(message, "now")', True),
        ('upper(intent) == "REFUND"', True),
        ("true and not false", True),
        ("True and None == null", True),
        ("len(customer)", 2),
        ("'tier' in customer", True),
        ("items", [3, 1, 2]),
    ],
)
def test_expressions_evaluate_on_the_fields_of_the_value(text, expected):
    assert Expression(text)(TICKET) == expected


def test_value_is_the_value_itself():
    assert Expression("value > 0.9")(0.95) is True
    assert Expression('value == "refund"')("refund") is True
    assert Expression("len(value)")([1, 2]) == 2


def test_fields_of_dataclasses_and_pydantic_models_are_readable():
    @dataclasses.dataclass
    class Result:
        score: float

    class Reply(BaseModel):
        confidence: float

    assert Expression("score > 0.5")(Result(0.9)) is True
    assert Expression("confidence < 0.5")(Reply(confidence=0.2)) is True
    assert Expression("other == null")(Result(0.9)) is True


@pytest.mark.parametrize(
    ("text", "value", "message"),
    [
        ("score > 1", {"score": "high"}, "score > 1: cannot order a string ('high') and a number (1)"),
        ("score > 1", {}, "score > 1: cannot order null and a number (1)"),
        ("x == 1", 3, "the value is a number (3), which has no field 'x'; compare the value itself with 'value'"),
        ("a.b", {"a": "text"}, "a is a string ('text'), which has no field 'b'"),
        ("a / b", {"a": 1, "b": 0}, "a / b: division by zero"),
        ("a + 1", {"a": "1"}, "a + 1: arithmetic needs numbers, got a string '1' and a number 1"),
        ("len(a)", {"a": 3}, "len(a): len() cannot take a number 3"),
        ("1 in a", {"a": "abc"}, "1 in a: 'in' a string needs a string on the left"),
        ("a in 3", {"a": 1}, "a in 3: 'in' needs a string, a list or a mapping on the right, got a number"),
        ("-a", {"a": "x"}, "-a: cannot negate a string 'x'"),
    ],
)
def test_values_an_expression_cannot_work_on_raise_evaluation_errors(text, value, message):
    with pytest.raises(EvaluationError) as exc:
        Expression(text)(value)
    assert str(exc.value).startswith(message), str(exc.value)


@pytest.mark.parametrize(
    ("text", "column", "reason"),
    [
        ("", 1, "the expression is empty"),
        ("score >", 8, "expected a value after '>', found the end"),
        ("(a", 3, "expected ')' to close the parenthesis, found the end"),
        ("a[1", 4, "expected ']' to close the index, found the end"),
        ("'open", 1, "a string that is never closed"),
        ("a ! b", 3, "unexpected character '!'; use 'not' (or '!=')"),
        ("a || b", 3, "unexpected character '|'; use 'or'"),
        ("eval('1')", 1, "unknown function 'eval'"),
        ("__import__('os')", 1, "names starting with '_' are not reachable: '__import__'"),
        ("value.__class__", 7, "fields starting with '_' are not reachable: '__class__'"),
        ("a.and", 3, "expected a field name after '.', found 'and'"),
        ("round()", 1, "round() takes 1 to 2 argument(s), got 0"),
        ("and", 1, "expected a value, found 'and'"),
        ("(" * 60 + "1" + ")" * 60, 51, "the expression is nested more than 50 levels deep"),
    ],
)
def test_bad_expressions_are_refused_when_built(text, column, reason):
    with pytest.raises(ExpressionError) as exc:
        Expression(text)
    assert isinstance(exc.value, DefinitionError)
    assert (exc.value.column, exc.value.reason) == (column, reason) or reason in exc.value.reason


def test_long_chains_do_not_exhaust_the_stack():
    assert Expression(" + ".join(["1"] * 50))({}) == 50
    assert Expression(" and ".join(["a"] * 300))({"a": 1}) is True
    assert Expression(" < ".join(map(str, range(300))))({}) is True
    with pytest.raises(ExpressionError, match="more than 50 operators in a row; split the expression"):
        Expression("+".join(["1"] * 999))
    with pytest.raises(ExpressionError, match="longer than 2000 characters"):
        Expression("a" * 2001)


def test_the_canonical_text_ignores_spacing_and_keeps_meaning():
    assert Expression("score>0.9 and(a or b)").text == "score > 0.9 and (a or b)"
    assert Expression("not (a and b)").text == "not (a and b)"
    assert Expression("a - (b - c)").text == "a - (b - c)"
    assert Expression("'it''s'" if False else '"say \\"hi\\""').text == '"say \\"hi\\""'
    for text in ["a - b - c", "-(a + b) * 2", "x not in [1, 2]", "a.b[0].c", "0.5 <= c < 0.8"]:
        assert Expression(Expression(text).text).text == Expression(text).text
    assert Expression("score > 0.9") == Expression("score>0.9")
    assert hash(Expression("score > 0.9")) == hash(Expression("score>0.9"))
    assert repr(Expression("a>1")) == "Expression('a > 1')"


def test_paths():
    assert Expression("customer.tier").path == ("customer", "tier")
    assert Expression("score").path == ("score",)
    assert Expression("score > 1").path is None


def test_expressions_pickle_for_process_isolation():
    expression = pickle.loads(pickle.dumps(Expression("score > 0.9")))
    assert expression({"score": 1}) is True


def test_only_the_listed_functions_exist():
    assert sorted(FUNCTIONS) == ["abs", "endswith", "len", "lower", "max", "min", "round", "startswith", "upper"]


def test_expressions_are_predicates_of_the_python_api():
    def double(x: int) -> int:
        return x * 2

    def add_one(x: int) -> int:
        return x + 1

    wf = Workflow(
        "expressions",
        [
            Map(Step("double", double), over=Expression("numbers"), reduce="sum", name="doubled"),
            Loop([Step("add_one", add_one)], until=Expression("value >= 15"), max_iterations=10),
            Branch(None, [(Expression("value > 100"), Step("big", double))], default=Step("small", add_one)),
        ],
        state_store="memory",
    )
    assert asyncio.run(wf.run({"numbers": [1, 2, 3]})) == 16
