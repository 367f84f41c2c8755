"""The YAML examples validate, run through the CLI and ``load()``, and do what their stories say."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from click.testing import CliRunner

from orchestrate import Client, RunStatus, Workflow
from orchestrate.cli import cli
from orchestrate.yaml import json_schema, load

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
YAML = EXAMPLES / "yaml"
FILES = sorted(YAML.glob("*.yaml"))


def invoke(*args: str) -> Any:
    return CliRunner().invoke(cli, list(args), env={"COLUMNS": "200"}, catch_exceptions=False)


def test_every_example_validates():
    assert [p.name for p in FILES] == ["image_moderation.yaml", "loans.yaml", "moderation.yaml", "support_router.yaml"]
    result = invoke("validate", *map(str, FILES))
    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == [
        "ok: workflow image_moderation version 1, 4 steps",
        "ok: workflow loans version 1, 6 steps",
        "ok: workflow content_moderation version 1, 7 steps",
        "ok: workflow support_router version 1, 7 steps",
    ]


def test_the_json_schema_accepts_the_examples_and_refuses_unknown_keys():
    jsonschema = pytest.importorskip("jsonschema")
    from orchestrate.yaml._source import parse  # YAML 1.2 scalars: `on:` stays a key named "on"

    validator = jsonschema.Draft202012Validator(json_schema())
    for path in FILES:
        assert list(validator.iter_errors(parse(path.read_text(), path.name).data)) == [], path.name
    wrong = {"name": "w", "steps": [{"step": "a", "retires": 3}]}
    assert not validator.is_valid(wrong)


def _seed_module() -> ModuleType:
    path = EXAMPLES / "seeds" / "seed003_moderation.py"
    spec = importlib.util.spec_from_file_location("_yaml_twin_seed003", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    try:
        spec.loader.exec_module(module)
    finally:
        sys.modules.pop(spec.name, None)
    return module


async def _actions(wf: Workflow, inputs: list[Any]) -> list[tuple[Any, list[str]]]:
    async with Client("memory://", workflows=[wf]) as client:
        out = []
        for value in inputs:
            record = await client.run(wf, value)
            assert record.status is RunStatus.SUCCEEDED, record.error
            steps = [s.step_key for s in (await client.detail(record.run_id)).steps]
            out.append((record.output, steps))
        return out


def test_the_moderation_file_moderates_as_the_python_seed_example():
    seed = _seed_module()
    samples = list(seed.MODERATION_SCORES)
    from_yaml = asyncio.run(_actions(load(YAML / "moderation.yaml"), samples))
    from_python = asyncio.run(_actions(seed.moderation, samples))
    assert from_yaml == from_python
    assert [output["action"] for output, _ in from_yaml] == [
        "blocked",
        "blocked",
        "queued_for_review",
        "blocked",
        "queued_for_review",
    ]
    assert from_yaml[3][1] == ["keyword_filter", "ai_moderator", "second_opinion", "auto_block"]


def test_the_image_checks_run_in_parallel_and_decide_together():
    images = [
        {"name": "sunset.jpg", "caption": "Golden hour"},
        {"name": "beach_party.jpg", "caption": "Free crypto giveaway, DM me", "gps": True},
    ]
    results = asyncio.run(_actions(load(YAML / "image_moderation.yaml"), images))
    assert [output["action"] for output, _ in results] == ["allowed", "queued_for_review"]
    assert sorted(results[0][1]) == ["image_verdict", "metadata_check", "nsfw_detector", "text_extraction"]


TICKETS = {
    "refund": "I was charged twice for order 1182, I want a refund",
    "technical": "The installer stops with error 0x80070005",
    "vague technical": "I cannot install it",
    "other": "Do you sponsor the chess club?",
}


async def _support(wf: Workflow) -> dict[str, Any]:
    async with Client("memory://", workflows=[wf]) as client:
        outcomes: dict[str, Any] = {}
        for label, message in TICKETS.items():
            record = await client.run(wf, message)
            if record.status is RunStatus.WAITING:
                (item,) = await client.list_reviews(run_id=record.run_id)
                assert (item.step_key, item.roles, item.sla_seconds) == ("human", ["support_agent"], 4 * 3600.0)
                edited = {**item.payload, "answer": "Thanks for asking, we do not, sorry."}
                await client.edit(item.review_id, edited, by="ana", role="support_agent")
                record = await client.resume(record.run_id)
            assert record.status is RunStatus.SUCCEEDED, record.error
            outcomes[label] = record.output
        return outcomes


def test_the_support_router_sends_tickets_to_two_agents_and_a_person():
    wf = load(YAML / "support_router.yaml")
    outcomes = asyncio.run(_support(wf))
    assert outcomes["refund"]["reply"].startswith("Hello! I found a duplicate charge and refunded it")
    assert '"order_id": "1182"' in outcomes["refund"]["reply"]
    assert outcomes["technical"]["reply"].startswith("Hello! Here is the fix (run the installer as administrator)")
    assert outcomes["vague technical"]["reply"] == "Hello! Thanks for asking, we do not, sorry. Best regards, Support"
    assert outcomes["other"]["reply"] == outcomes["vague technical"]["reply"]  # a person's edited answer
    assert {o["written_by"] for o in outcomes.values()} == {"writer-large"}


def test_the_support_router_writes_with_the_backup_while_the_writer_is_down():
    wf = load(YAML / "support_router.yaml")
    agents = sys.modules["support_agents"]
    agents.writer_state["up"] = False
    try:

        async def two() -> list[Any]:
            async with Client("memory://", workflows=[wf]) as client:
                return [await client.run(wf, TICKETS["refund"]) for _ in range(2)]

        records = asyncio.run(two())
    finally:
        agents.writer_state["up"] = True
    assert [r.output["written_by"] for r in records] == ["writer-small", "writer-small"]
    assert records[0].output["reply"].startswith("I found a duplicate charge")


def test_the_examples_run_from_the_command_line(tmp_path: Path):
    store = f"sqlite:///{tmp_path / 'runs.db'}"
    moderated = invoke(
        "run", str(YAML / "moderation.yaml"), "--input", json.dumps("You people are animals"), "--store", store
    )
    assert moderated.exit_code == 0, moderated.output
    assert '"action": "blocked"' in moderated.output
    routed = invoke(
        "run", str(YAML / "support_router.yaml"), "--input", json.dumps(TICKETS["technical"]), "--store", store
    )
    assert routed.exit_code == 0, routed.output
    assert "succeeded" in routed.output
    waiting = invoke(
        "run", str(YAML / "support_router.yaml"), "--input", json.dumps(TICKETS["other"]), "--store", store
    )
    assert waiting.exit_code == 3, waiting.output
