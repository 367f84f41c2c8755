"""StepSchema and compress_after: what later steps receive, what the record keeps, how it is stored."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from orchestrate import (
    AgentWorkflow,
    Engine,
    RunContext,
    RunStatus,
    Step,
    StepSchema,
    Workflow,
    compress_after,
    workflow,
)
from orchestrate.errors import DefinitionError, InvalidInputError, StoreError
from orchestrate.state import Compression, compression_in
from orchestrate.store import InMemoryStore, MemoryBlobStore, _blobs, use_blob_store


def extraction(form_id: str) -> dict[str, Any]:
    return {
        "patient_id": form_id,
        "extracted_fields": {"name": "J. Doe", "dob": "1961-03-02"},
        "raw_ocr": "scan " * 1000,
        "tokens": list(range(200)),
    }


SEEN: list[Any] = []


def summary(data: dict[str, Any]) -> str:
    SEEN.append(data)
    return f"{data['patient_id']}: {sorted(data)}"


KEEP = StepSchema(keep=["patient_id", "extracted_fields"], discard=["raw_ocr", "tokens"])


@pytest.fixture(autouse=True)
def _clear() -> None:
    SEEN.clear()


async def _steps(store: InMemoryStore, run_id: str) -> dict[str, Any]:
    return {s.step_key: s for s in await store.get_steps(run_id)}


# the schema itself ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({}, "give keep="),
        ({"keep": "patient_id"}, "keep must be a list of field names"),
        ({"keep": ["a", ""]}, "non-empty strings"),
        ({"keep": ["a", "a"]}, "names 'a' twice"),
        ({"keep": ["a"], "discard": ["a"]}, "'a' is in both keep and discard"),
    ],
)
def test_a_schema_that_says_nothing_or_contradicts_itself_is_refused(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(DefinitionError, match=message):
        StepSchema(**kwargs)


def test_keep_keeps_only_its_fields_and_discard_drops_only_its_own() -> None:
    value = {"a": 1, "b": 2, "c": 3}
    assert StepSchema(keep=["a", "c"]).apply(value, "step 's'") == {"a": 1, "c": 3}
    assert StepSchema(discard=["b"]).apply(value, "step 's'") == {"a": 1, "c": 3}
    assert StepSchema(keep=["a"], discard=["b"]).apply(value, "step 's'") == {"a": 1}
    assert value == {"a": 1, "b": 2, "c": 3}  # the step's own value is left alone


# every definition style -------------------------------------------------------------------------


async def test_a_graph_step_hands_on_and_records_only_the_kept_fields() -> None:
    store = InMemoryStore()
    wf = Workflow("intake", [Step("extract", extraction, schema=KEEP), Step("summary", summary)])
    async with Engine(store) as engine:
        record = await engine.run_record(wf, "F-1")
    assert record.status is RunStatus.SUCCEEDED
    assert SEEN == [{"patient_id": "F-1", "extracted_fields": {"name": "J. Doe", "dob": "1961-03-02"}}]
    steps = await _steps(store, record.run_id)
    assert steps["extract"].output == SEEN[0]


async def test_the_seed_decorator_on_the_function_works_in_an_agent_workflow() -> None:
    pipeline = AgentWorkflow("intake_orchestrator", state_store="memory")

    @pipeline.step(retry=3, timeout=30)
    @StepSchema(keep=["patient_id", "extracted_fields"], discard=["raw_ocr", "tokens"])
    @compress_after(step=5, strategy="gzip")
    def step_data_extraction(form_id: str) -> dict:  # type: ignore[type-arg]
        return extraction(form_id)

    pipeline.step(summary)
    out = await pipeline.run("F-2")
    assert out == "F-2: ['extracted_fields', 'patient_id']"
    node = pipeline.nodes[0]
    assert isinstance(node, Step) and node.schema == KEEP and node.compress == compress_after(step=5)


async def test_a_durable_function_passes_the_schema_to_ctx_step_or_reads_the_decorator() -> None:
    @StepSchema(discard=["raw_ocr", "tokens"])
    def decorated(form_id: str) -> dict[str, Any]:
        return extraction(form_id)

    @workflow(name="durable-intake", version="1")
    async def intake(ctx: RunContext, form_id: str) -> list[Any]:
        given = await ctx.step(extraction, form_id, schema=StepSchema(keep=["patient_id"]))
        read = await ctx.step(decorated, form_id)
        return [given, read]

    store = InMemoryStore()
    async with Engine(store) as engine:
        record = await engine.run_record(intake, "F-3")
    assert record.output == [
        {"patient_id": "F-3"},
        {"patient_id": "F-3", "extracted_fields": {"name": "J. Doe", "dob": "1961-03-02"}},
    ]
    steps = await _steps(store, record.run_id)
    assert steps["extraction"].output == {"patient_id": "F-3"}
    assert set(steps["decorated"].output) == {"patient_id", "extracted_fields"}


def test_a_schema_given_and_a_different_one_on_the_function_is_refused() -> None:
    decorated = StepSchema(keep=["a"])(lambda x: {"a": x})
    with pytest.raises(DefinitionError, match="step 'x': schema= differs from the StepSchema its function"):
        Step("x", decorated, schema=StepSchema(keep=["b"]))


def test_the_schema_is_part_of_the_version() -> None:
    one = Workflow("v", [Step("extract", extraction, schema=StepSchema(keep=["patient_id"])), Step("s", summary)])
    same = Workflow("v", [Step("extract", extraction, schema=StepSchema(keep=["patient_id"])), Step("s", summary)])
    other = Workflow("v", [Step("extract", extraction, schema=StepSchema(keep=["tokens"])), Step("s", summary)])
    assert one.version == same.version != other.version


# declared output types ------------------------------------------------------------------------


@dataclasses.dataclass
class Extracted:
    patient_id: str
    extracted_fields: dict[str, str]
    raw_ocr: str = ""
    tokens: list[int] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class Strict:
    patient_id: str
    raw_ocr: str


def typed(form_id: str) -> Extracted:
    return Extracted(form_id, {"name": "J. Doe"}, "scan " * 100, [1, 2, 3])


def strict(form_id: str) -> Strict:
    return Strict(form_id, "scan")


def test_an_unknown_field_of_a_declared_type_is_a_definition_error_naming_step_and_field() -> None:
    with pytest.raises(DefinitionError) as caught:
        Workflow("t", [Step("extract", typed, schema=StepSchema(keep=["patient_id", "extracted"]))])
    message = str(caught.value)
    assert "step 'extract'" in message and "'extracted'" in message and "Extracted does not have" in message


def test_dropping_a_field_without_a_default_is_a_definition_error() -> None:
    with pytest.raises(DefinitionError, match="drops field 'raw_ocr' of Strict, which has no default"):
        Step("extract", strict, schema=StepSchema(discard=["raw_ocr"]))


async def test_a_declared_type_comes_back_with_its_defaults_in_the_dropped_fields() -> None:
    got: list[Any] = []

    def after(value: Extracted) -> str:
        got.append(value)
        return value.patient_id

    wf = Workflow("typed", [Step("extract", typed, schema=StepSchema(discard=["raw_ocr", "tokens"])), Step("a", after)])
    async with Engine(InMemoryStore()) as engine:
        assert await engine.run(wf, "F-4") == "F-4"
    assert got == [Extracted("F-4", {"name": "J. Doe"})]


async def test_an_output_without_a_named_field_fails_the_run_naming_the_step_and_the_field() -> None:
    def partial(form_id: str) -> dict[str, Any]:
        return {"patient_id": form_id}

    wf = Workflow("partial", [Step("extract", partial, schema=KEEP), Step("summary", summary)])
    async with Engine(InMemoryStore()) as engine:
        record = await engine.run_record(wf, "F-5")
    assert record.status in (RunStatus.FAILED, RunStatus.DEAD)
    message = (record.error or {}).get("message", "")
    assert "step 'extract'" in message and "'extracted_fields'" in message and "its output lacks" in message
    assert SEEN == []


async def test_an_output_that_is_not_an_object_fails_with_the_fix() -> None:
    wf = Workflow("listy", [Step("extract", lambda _: [1, 2], schema=StepSchema(keep=["a"]))])
    async with Engine(InMemoryStore()) as engine:
        record = await engine.run_record(wf, None)
    assert "returned a list; return a dict" in (record.error or {}).get("message", "")


# compression ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"step": -1}, "0 or more"),
        ({"step": True}, "a step number"),
        ({"step": 5, "strategy": "lz4"}, "'gzip' or 'zstd'"),
        ({"step": ""}, "name a step"),
    ],
)
def test_compress_after_refuses_what_it_cannot_do(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(DefinitionError, match=message):
        compress_after(**kwargs)


def test_compression_applies_after_the_nth_step_or_the_named_one() -> None:
    by_number = compress_after(step=2)
    assert [by_number.applies(n, []) for n in (1, 2, 3)] == [False, False, True]
    by_name = compress_after(step="validate")
    assert not by_name.applies(9, ["extract"])
    assert by_name.applies(2, ["extract", "validate"]) and by_name.applies(2, ["loop#1/validate"])


def test_two_steps_with_different_compression_are_refused() -> None:
    wf = Workflow(
        "two",
        [
            Step("a", summary, compress=compress_after(step=1)),
            Step("b", summary, compress=compress_after(step=2, strategy="zstd")),
        ],
    )
    with pytest.raises(DefinitionError, match="two compress_after settings"):
        compression_in(wf)


@pytest.mark.parametrize("strategy", ["gzip", "zstd"])
async def test_values_after_the_step_are_stored_compressed_and_read_back_the_same(strategy: str) -> None:
    def grow(data: dict[str, Any]) -> dict[str, Any]:
        return {**data, f"note{len(data)}": "the same words again " * 50}

    store = InMemoryStore()
    wf = compress_after(step=2, strategy=strategy)(  # type: ignore[arg-type]
        Workflow("grow", [Step(f"s{i}", grow) for i in range(5)])
    )
    assert compression_in(wf) == Compression(2, strategy)  # type: ignore[arg-type]
    async with Engine(store) as engine:
        record = await engine.run_record(wf, {})
    assert record.status is RunStatus.SUCCEEDED and len(record.output) == 5
    steps = await _steps(store, record.run_id)
    packed = {key: (s.meta or {}).get(_blobs.PACKED) for key, s in steps.items()}
    assert packed["s0"] is None and packed["s1"] is None
    assert all(packed[k] == {"encoding": strategy, "size": packed[k]["size"]} for k in ("s2", "s3", "s4"))
    for key in ("s2", "s3"):
        stored = steps[key]
        assert isinstance(stored.output, str) and len(stored.output) < packed[key]["size"] / 3
        plain = await _blobs.unpack(stored, _blobs.storage_of(store))
        assert len(plain.output) == int(key[1]) + 1 and _blobs.PACKED not in plain.meta


# offload -------------------------------------------------------------------------------------


async def test_a_named_blob_store_takes_large_values_and_a_changed_blob_is_refused() -> None:
    store = InMemoryStore()
    blobs = MemoryBlobStore()
    use_blob_store(store, blobs, offload_bytes=1024)

    def big(_: Any) -> dict[str, Any]:
        return {"text": "".join(f"{i:x}" for i in range(2000))}

    wf = Workflow("big", [Step("big", big), Step("size", lambda r: len(r["text"]))])
    async with Engine(store) as engine:
        record = await engine.run_record(wf, None)
    assert record.output == len(big(None)["text"])
    stored = (await _steps(store, record.run_id))["big"]
    info = stored.meta[_blobs.PACKED]
    assert stored.output is None and info["encoding"] == "json" and info["size"] > 1024
    assert (await _blobs.unpack(stored, _blobs.storage_of(store))).output == big(None)
    blobs._blobs[record.run_id][info["blob"]] = b'{"text": "forged"}'
    with pytest.raises(StoreError, match=f"blob {info['blob']} in .* was altered"):
        await _blobs.unpack(stored, _blobs.storage_of(store))


def test_an_offload_size_that_is_not_a_positive_number_is_refused() -> None:
    with pytest.raises(InvalidInputError, match="offload_bytes must be a positive number of bytes"):
        use_blob_store(InMemoryStore(), None, offload_bytes=0)
    with pytest.raises(InvalidInputError, match="offload_bytes must be a number of bytes, got 'lots'"):
        _blobs.storage_of(InMemoryStore("memory://?offload_bytes=lots"))


def _note(i: int) -> str:
    return "the same words again and again " * 100


@compress_after(step=1, strategy="zstd")
@workflow(name="notes", version="1")
async def _notes(ctx: RunContext, n: int) -> int:
    return sum([len(await ctx.step(_note, i)) for i in range(n)])


async def test_a_durable_function_decorated_with_compress_after_compresses_after_its_first_step() -> None:
    store = InMemoryStore()
    async with Engine(store) as engine:
        record = await engine.run_record(_notes, 3)
    assert record.output == 3 * len(_note(0))
    packed = [(s.meta or {}).get(_blobs.PACKED) for s in await store.get_steps(record.run_id)]
    assert packed == [None, {"encoding": "zstd", "size": 3102}, {"encoding": "zstd", "size": 3102}]
