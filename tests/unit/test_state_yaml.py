"""StepSchema and compress_after written in YAML: the Python twin's version, and the errors."""

from __future__ import annotations

from typing import Any

import pytest

from orchestrate import Engine, Step, StepSchema, Workflow, compress_after
from orchestrate.state import compression_in
from orchestrate.store import InMemoryStore
from orchestrate.yaml import YamlDefinitionError, loads


def extract(form_id: str) -> dict[str, Any]:
    return {"patient_id": form_id, "extracted_fields": {"name": "J. Doe"}, "raw_ocr": "scan", "tokens": [1, 2]}


def summary(data: dict[str, Any]) -> str:
    return f"{data['patient_id']} {sorted(data)}"


COMPONENTS = {"extract": extract, "summary": summary}
FLOW = """
name: intake
version: "1"
compress_after: {step: 5, strategy: zstd}
steps:
  - step: extract
    call: extract
    schema: {keep: [patient_id, extracted_fields], discard: [raw_ocr, tokens]}
    compress: {step: 5, strategy: zstd}
  - step: summary
    call: summary
"""


def test_the_yaml_workflow_and_its_python_twin_have_the_same_version_and_settings() -> None:
    wf = loads(FLOW.replace('version: "1"\n', ""), components=COMPONENTS)
    twin = Workflow(
        "intake",
        [
            Step(
                "extract",
                extract,
                schema=StepSchema(keep=["patient_id", "extracted_fields"], discard=["raw_ocr", "tokens"]),
                compress=compress_after(step=5, strategy="zstd"),
            ),
            Step("summary", summary),
        ],
    )
    assert wf.version == twin.version
    other = loads(FLOW.replace('version: "1"\n', "").replace("keep: [patient_id, ", "keep: ["), components=COMPONENTS)
    assert other.version != twin.version
    assert compression_in(wf) == compress_after(step=5, strategy="zstd")


async def test_the_yaml_schema_trims_what_the_next_step_receives() -> None:
    wf = loads(FLOW, components=COMPONENTS)
    async with Engine(InMemoryStore()) as engine:
        assert await engine.run(wf, "F-1") == "F-1 ['extracted_fields', 'patient_id']"


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (("keep: [", "kept: ["), "steps[0].schema.kept: unknown key 'kept'; did you mean 'keep'?"),
        (("strategy: zstd}\n  - step", "strategy: lz4}\n  - step"), "steps[0].compress.strategy"),
        (("{step: 5, strategy: zstd}\n  - step", "{step: -1}\n  - step"), "steps[0].compress.step"),
        (("keep: [patient_id, extracted_fields]", "keep: [patient_id, raw_ocr]"), "'raw_ocr' is in both"),
    ],
)
def test_a_bad_schema_or_compression_is_reported_at_its_line(change: tuple[str, str], expected: str) -> None:
    with pytest.raises(YamlDefinitionError) as caught:
        loads(FLOW.replace(*change), components=COMPONENTS, source="intake.yaml")
    text = str(caught.value)
    assert "intake.yaml:" in text and expected in text, text
