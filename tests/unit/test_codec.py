"""The one codec: what a step hands on is what a durable store hands back after a restart.

Refusals happen on the first drive, when the value is recorded, naming the step, the place
inside the value and the fix; the run fails with that error and no record is written.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from orchestrate import Branch, Client, Engine, RunStatus, Step, Workflow, workflow
from orchestrate.errors import SerializationError
from orchestrate.models import ModelResult, Usage
from orchestrate.store import InMemoryStore, open_store


class Tone(enum.Enum):
    CALM = "calm"


@dataclasses.dataclass
class Doc:
    ref: str
    confidence: float


@dataclasses.dataclass
class Report:
    docs: list[Doc]
    tags: tuple[str, ...]
    when: dt.datetime


async def _run(wf: Any, value: Any, store: Any = None) -> Any:
    async with Engine(store or InMemoryStore(), workflows=[wf]) as engine:
        record = await engine.run_record(wf, value)
        steps = {s.step_key: s for s in await engine.store.get_steps(record.run_id)}
        return record, steps


@pytest.mark.parametrize(
    ("output", "says"),
    [
        ((1, 2), "holds a tuple at output, which would come back as a list"),
        ({"pair": (1, 2)}, "holds a tuple at output['pair']"),
        ({"by_id": {7: "x"}}, "has the int key 7 at output['by_id']"),
        ([dt.datetime(2026, 1, 1)], "holds a datetime at output[0]"),
        ({"tags": {"a"}}, "holds a set at output['tags']"),
        ({"tone": Tone.CALM}, "holds a Tone at output['tone'], which would come back as something else"),
        ({"score": float("nan")}, "holds nan at output['score']"),
        (Decimal("1.5"), "holds a Decimal at output"),
    ],
)
async def test_an_unannotated_value_that_would_change_is_refused_on_the_first_drive(output: Any, says: str) -> None:
    def produce(_: Any):  # no return annotation
        return output

    record, steps = await _run(Workflow("refused", [Step("produce", produce)]), "x")
    assert record.status is RunStatus.FAILED
    assert record.error["name"] == "SerializationError"
    assert record.error["message"].startswith("step 'produce': ")
    assert says in record.error["message"]
    assert "annotate" in record.error["message"] or "finite" in record.error["message"]
    assert "produce" not in steps  # nothing recorded that a restart would read differently


async def test_an_annotated_value_revives_deeply_on_the_first_drive_and_after_a_restart(tmp_path: Path) -> None:
    seen: list[Any] = []

    def build(_: Any) -> Report:
        return Report([Doc("a", 0.9)], ("x", "y"), dt.datetime(2026, 1, 1, tzinfo=dt.UTC))

    def use(report: Report) -> str:
        seen.append(report)
        return report.docs[0].ref

    wf = Workflow("deep", [Step("build", build), Step("use", use)], version="1")
    url = f"sqlite:///{tmp_path / 'deep.db'}"
    record, steps = await _run(wf, None, open_store(url))
    assert record.status is RunStatus.SUCCEEDED
    assert steps["build"].output == {
        "docs": [{"ref": "a", "confidence": 0.9}],
        "tags": ["x", "y"],
        "when": "2026-01-01T00:00:00Z",
    }
    # What a resumed run reads back revives to the very same value.
    async with Client(url, workflows=[wf]) as client:
        replayed = await client.replay(record.run_id, from_step="use")
    assert replayed.status is RunStatus.SUCCEEDED
    assert seen[0] == seen[1]
    assert type(seen[1].docs[0]) is Doc and type(seen[1].tags) is tuple and type(seen[1].when) is dt.datetime


async def test_a_dataclass_of_the_step_module_and_a_model_result_come_back_without_annotations() -> None:
    got: list[Any] = []

    def draft(_):
        return Doc("d-1", 0.72)

    def ask(doc):
        got.append(doc)
        return ModelResult(text=f"ok {doc.ref}", model="fake", usage=Usage(3, 4))

    def read(result):
        got.append(result)
        return result.text

    record, steps = await _run(Workflow("bare", [Step("draft", draft), Step("ask", ask), Step("read", read)]), None)
    assert record.status is RunStatus.SUCCEEDED and record.output == "ok d-1"
    assert got[0] == Doc("d-1", 0.72) and isinstance(got[1], ModelResult) and got[1].usage.output_tokens == 4
    assert steps["draft"].output == {"ref": "d-1", "confidence": 0.72}  # readable JSON in the store
    assert steps["draft"].meta["type"] == "Doc" and steps["ask"].meta["type"] == "orchestrate.ModelResult"


async def test_a_branch_routes_the_same_on_a_revived_value() -> None:
    def draft(_):
        return Doc("d-1", 0.72)

    wf = Workflow(
        "route",
        [
            Step("draft", draft),
            Branch(
                lambda d: isinstance(d, Doc) and d.confidence < 0.85,
                {True: Step("review", lambda d: "review")},
                default=Step("send", lambda d: "send"),
            ),
        ],
    )
    record, _ = await _run(wf, None)
    assert record.output == "review"


async def test_int_keys_and_tuples_survive_when_declared() -> None:
    def count(_: Any) -> dict[int, tuple[str, int]]:
        return {1: ("a", 2)}

    def read(counts: dict[int, tuple[str, int]]) -> str:
        return f"{type(next(iter(counts))).__name__} {type(counts[1]).__name__}"

    record, steps = await _run(Workflow("declared", [Step("count", count), Step("read", read)]), None)
    assert record.output == "int tuple"
    assert steps["count"].output == {"1": ["a", 2]}


async def test_a_value_that_does_not_fit_its_annotation_is_refused() -> None:
    def wrong(_: Any) -> Doc:
        return {"nope": 1}  # type: ignore[return-value]

    record, _ = await _run(Workflow("misfit", [Step("wrong", wrong)]), None)
    assert record.status is RunStatus.FAILED
    assert "step 'wrong': its output does not fit its declared type Doc" in record.error["message"]


async def test_a_durable_function_input_revives_into_its_declared_type(tmp_path: Path) -> None:
    seen: list[Any] = []

    @workflow(version="1")
    async def flow(ctx: Any, doc: Doc) -> str:
        seen.append(doc)
        return await ctx.step(lambda d: d["ref"], {"ref": doc.ref})

    record, _ = await _run(flow, Doc("in", 0.5), open_store(f"sqlite:///{tmp_path / 'in.db'}"))
    assert record.status is RunStatus.SUCCEEDED and record.output == "in"
    assert record.input == {"ref": "in", "confidence": 0.5} and seen == [Doc("in", 0.5)]


async def test_an_unannotated_class_from_another_module_is_refused_with_the_fix() -> None:
    def ask(_):
        return dt.timedelta(seconds=3)

    record, _ = await _run(Workflow("elsewhere", [Step("ask", ask)]), None)
    assert "holds a timedelta at output" in record.error["message"] and "-> timedelta" in record.error["message"]


async def test_nesting_past_the_limit_is_refused_naming_the_step() -> None:
    def deep(_):
        value: Any = 1
        for _ in range(300):
            value = [value]
        return value

    record, _ = await _run(Workflow("deep_nest", [Step("deep", deep)]), None)
    assert record.status is RunStatus.FAILED
    assert record.error["message"].startswith("step 'deep': its output nests deeper than 256 levels")


def test_the_codec_never_imports_what_a_stored_name_says() -> None:
    from orchestrate._codec import Plan

    plan = Plan(None, __name__)
    with pytest.raises(SerializationError, match="neither a registered type nor a class of module"):
        plan.revive({}, "os.system", "step 'x'")
    with pytest.raises(SerializationError):
        plan.revive({}, "subprocess.Popen", "step 'x'")


async def test_a_step_that_mutates_its_input_does_not_change_the_memory_stores_record() -> None:
    def produce(_: Any) -> dict[str, Any]:
        return {"items": [1, 2], "meta": {"n": 2}}

    def consume(value: dict[str, Any]) -> int:
        value["items"].append(3)  # mutates what it received
        value["meta"]["n"] = 3
        return len(value["items"])

    record, steps = await _run(Workflow("mutate", [Step("produce", produce), Step("consume", consume)]), None)
    assert record.output == 3
    # What a resumed run would read, as from SQLite: the value as it was recorded.
    assert steps["produce"].output == {"items": [1, 2], "meta": {"n": 2}}


async def test_a_durable_functions_output_that_cannot_be_stored_fails_the_run_instead_of_leaving_it_running() -> None:
    @workflow(version="1")
    async def returns_big(ctx: Any, _: Any) -> str:
        return "x" * (3 * 1024 * 1024)

    @workflow(version="1")
    async def returns_odd(ctx: Any, _: Any) -> Any:
        return object()

    big, _ = await _run(returns_big, None)
    assert big.status is RunStatus.DEAD and big.error["name"] == "PayloadTooLargeError"
    odd, _ = await _run(returns_odd, None)
    assert odd.status is RunStatus.FAILED and odd.error["name"] == "SerializationError"
