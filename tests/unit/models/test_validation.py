"""Validation gates: invalid output is repaired with feedback, then refused; never passed on."""

from __future__ import annotations

import json

import pydantic
import pytest

from orchestrate import Engine, Fallback, Retry, Step, StepStatus, Workflow
from orchestrate.errors import DefinitionError, InvalidOutputError
from orchestrate.models import ValidatedModel, Validator, validate_output
from orchestrate.models.base import estimate_tokens
from orchestrate.models.validation import OutputRejected
from orchestrate.store import InMemoryStore
from orchestrate.testing.models import Duplicate, FakeModel, Reply


class Refund(pydantic.BaseModel):
    order_id: str
    amount: float = pydantic.Field(gt=0, le=10_000)
    confidence: float = pydantic.Field(ge=0, le=1)


GATE = Validator(Refund, rules=[lambda r: r.amount <= 500 or "refunds above 500 need a person"], min_confidence=0.7)
GOOD = {"order_id": "A-17", "amount": 42.5, "confidence": 0.93}


@pytest.mark.parametrize(
    ("output", "says"),
    [
        ("<refund><order_id>A-17</order_id></refund>", "XML"),
        ("Sure! The refund is 42.50 for A-17.", "not valid JSON"),
        ('{"order_id": "A-17", "amount": -5, "confidence": 0.9}', "amount: Input should be greater than 0"),
        ('{"order_id": "A-17", "confidence": 0.9}', "amount: Field required"),
        ('{"order_id": "A-17", "amount": 900, "confidence": 0.9}', "refunds above 500 need a person"),
        ("", "empty"),
    ],
)
def test_validator_names_what_is_wrong(output, says) -> None:
    with pytest.raises(OutputRejected) as rejected:
        GATE.check(output)
    assert says in rejected.value.message and rejected.value.repairable


def test_validator_accepts_fenced_or_wrapped_json_and_returns_the_model() -> None:
    fenced = '```json\n{"order_id": "A-17", "amount": 42.5, "confidence": 0.93}\n```'
    assert GATE.check(fenced) == Refund(**GOOD)
    assert GATE.check('Here you go: {"order_id": "A-17", "amount": 42.5, "confidence": 0.93} Thanks!').amount == 42.5
    with pytest.raises(OutputRejected):
        Validator(Refund, lenient=False).check(fenced)


def test_low_confidence_is_not_repairable_by_default() -> None:
    with pytest.raises(OutputRejected) as rejected:
        GATE.check({"order_id": "A-17", "amount": 42.5, "confidence": 0.4})
    assert not rejected.value.repairable and "below the threshold 0.70" in rejected.value.message


def test_json_schema_dicts_are_checked_with_paths() -> None:
    schema = {
        "type": "object",
        "properties": {"intent": {"enum": ["refund", "other"]}, "score": {"type": "number", "maximum": 1}},
        "required": ["intent", "score"],
    }
    gate = Validator(schema)
    assert gate.check('{"intent": "refund", "score": 0.5}') == {"intent": "refund", "score": 0.5}
    with pytest.raises(OutputRejected) as rejected:
        gate.check('{"intent": "banana", "score": 3}')
    assert "$.intent" in rejected.value.message and "$.score" in rejected.value.message
    with pytest.raises(DefinitionError):
        Validator({"type": "no-such-type"})


async def test_invalid_output_is_retried_with_the_error_fed_back() -> None:
    model = FakeModel(["<xml>nope</xml>", '{"order_id": "A-17", "amount": -1, "confidence": 0.9}', GOOD])
    result = await ValidatedModel(model, GATE, max_repairs=2).chat("refund A-17, it cost 42.50")
    assert result.data == Refund(**GOOD)
    assert result.meta["validation_attempts"] == 3
    assert len(result.meta["validation_errors"]) == 2
    second, third = model.calls[1].messages, model.calls[2].messages
    # The model sees its own bad answer, then what was wrong with it.
    assert second[-2].role == "assistant" and second[-2].content == "<xml>nope</xml>"
    assert second[-1].role == "user" and "XML" in second[-1].content and '"amount"' in second[-1].content
    assert "greater than 0" in third[-1].content
    assert model.calls[0].settings.json_schema is not None  # JSON was asked for up front
    texts = ["<xml>nope</xml>", '{"order_id": "A-17", "amount": -1, "confidence": 0.9}', json.dumps(GOOD)]
    assert result.usage.output_tokens == sum(estimate_tokens(t) for t in texts)  # every attempt is paid for
    assert result.usage.input_tokens == sum(estimate_tokens(c.text()) for c in model.calls)


async def test_repairs_run_out_into_a_clear_error() -> None:
    model = FakeModel(["garbage", Duplicate(), Duplicate()])
    with pytest.raises(InvalidOutputError) as failed:
        await ValidatedModel(model, GATE, max_repairs=2).chat("x")
    assert len(failed.value.errors) == 3 and failed.value.output == "garbage"
    assert "after 3 attempt(s)" in str(failed.value) and len(model.calls) == 3


async def test_low_confidence_goes_straight_to_the_fallback() -> None:
    model = FakeModel([{"order_id": "A-17", "amount": 42.5, "confidence": 0.2}, GOOD])
    with pytest.raises(InvalidOutputError, match="below the threshold"):
        await ValidatedModel(model, GATE).chat("x")
    assert len(model.calls) == 1


def test_validate_output_guards_any_value() -> None:
    assert validate_output(GOOD, GATE) == Refund(**GOOD)
    with pytest.raises(InvalidOutputError):
        validate_output({"order_id": "A-17"}, GATE)


async def test_invalid_output_never_reaches_the_next_step() -> None:
    model = ValidatedModel(FakeModel([Reply("<xml/>")], repeat_last=True), GATE, max_repairs=1)
    seen = []

    async def extract(message: str) -> dict:
        result = await model.chat(message)
        return result.data.model_dump()

    def act(refund: dict) -> str:
        seen.append(refund)
        return "queued for a person" if refund.get("flag") else f"refunded {refund['amount']}"

    wf = Workflow(
        "refunds",
        [
            Step(
                "extract",
                extract,
                retry=Retry(max_attempts=2, initial_delay=0.001, jitter=0),
                fallback=Fallback.value({"flag": "human_review"}, flag="human_review"),
            ),
            Step("act", act),
        ],
    )
    async with Engine(InMemoryStore()) as engine:
        record = await engine.run_record(wf, "refund A-17")
        steps = {s.step_key: s for s in await engine.store.get_steps(record.run_id)}
    assert record.output == "queued for a person" and seen == [{"flag": "human_review"}]
    assert steps["extract"].status is StepStatus.SUCCEEDED and steps["extract"].fallback == "value"
    assert steps["extract"].meta["error_class"] == "InvalidOutputError" and steps["extract"].attempts == 2
