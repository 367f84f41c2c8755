"""Native tool calling through three wire formats: OpenAI chat completions, Anthropic messages, Ollama.

Each provider talks to a real HTTP server on loopback speaking its format. The scripted
model makes two tool calls at once in its first turn (parallel calls), then answers
from the results it was sent back; the test checks what went over the wire both ways.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from enum import Enum
from typing import Annotated, Any

import pydantic
import pytest

from orchestrate import Engine, RunContext, workflow
from orchestrate.agents import Agent, tool
from orchestrate.models.anthropic import AnthropicModel
from orchestrate.models.ollama import OllamaModel
from orchestrate.models.openai_compat import OpenAICompatModel
from orchestrate.store import open_store

from .wire_servers import AnthropicWire, OllamaWire, OpenAIWire, Said, WireServer


class Speed(Enum):
    standard = "standard"
    express = "express"


class Address(pydantic.BaseModel):
    street: str
    city: str
    postcode: Annotated[str, pydantic.StringConstraints(pattern=r"^\d{5}$")]


SHIPPED: list[tuple[str, Address, Speed, int]] = []


@tool
def lookup_order(order_id: str) -> dict:
    """Look up an order."""
    return {"order_id": order_id, "status": "packed"}


@tool
def ship(
    order_id: str, to: Address, speed: Speed = Speed.standard, boxes: Annotated[int, pydantic.Field(ge=1)] = 1
) -> str:
    """Ship an order to an address."""
    SHIPPED.append((order_id, to, speed, boxes))
    return f"{order_id} leaves today by {speed.value} post to {to.city}"


ADDRESS = {"street": "1 Rue de la Paix", "city": "Paris", "postcode": "75002"}


def results_seen(body: dict[str, Any], kind: str) -> list[str]:
    """The tool results the client sent back, whatever the wire format."""
    if kind == "anthropic":
        return [
            block["content"]
            for m in body["messages"]
            if isinstance(m["content"], list)
            for block in m["content"]
            if block.get("type") == "tool_result"
        ]
    return [m["content"] for m in body["messages"] if m["role"] == "tool"]


def brain(kind: str) -> Callable[[dict[str, Any]], Said]:
    def think(body: dict[str, Any]) -> Said:
        seen = results_seen(body, kind)
        if not seen:
            return Said(
                calls=[
                    ("lookup_order", {"order_id": "A-17"}),
                    ("ship", {"order_id": "A-17", "to": ADDRESS, "speed": "express", "boxes": 2}),
                ]
            )
        return Said(text=f"Done: {' / '.join(seen)}")

    return think


SERVERS: dict[str, type[WireServer]] = {"openai": OpenAIWire, "anthropic": AnthropicWire, "ollama": OllamaWire}


def model_for(kind: str, server: WireServer) -> Any:
    if kind == "openai":
        return OpenAICompatModel("wire", base_url=server.url, timeout=10)
    if kind == "anthropic":
        return AnthropicModel("wire", api_key="sk-ant-test-0000", base_url=server.url, timeout=10)
    return OllamaModel("wire", host=server.url, timeout=10)


@pytest.fixture(params=sorted(SERVERS))
def wire(request):
    kind = request.param
    server = SERVERS[kind](brain(kind)).start()
    yield kind, server
    server.stop()


def shipper(model: Any) -> Agent:
    return Agent("shipper", role="You ship orders.", model=model, tools=[lookup_order, ship])


async def test_parallel_native_tool_calls_over_each_wire_format(wire) -> None:
    kind, server = wire
    SHIPPED.clear()
    model = model_for(kind, server)
    try:
        result = await shipper(model).run("Ship A-17 to Paris, express, two boxes")
    finally:
        await model.aclose()

    assert result.output == (
        'Done: {"order_id": "A-17", "status": "packed"} / A-17 leaves today by express post to Paris'
    )
    assert [(s.index, s.kind, s.tool, s.call) for s in result.steps] == [
        (1, "tool", "lookup_order", 0),
        (1, "tool", "ship", 1),
        (2, "final", None, 0),
    ]
    assert [("A-17", Address(**ADDRESS), Speed.express, 2)] == SHIPPED  # nested model and enum built
    first, second = (r["body"] for r in server.requests)
    offered = {t["function"]["name"] if "function" in t else t["name"]: t for t in first["tools"]}
    assert set(offered) == {"lookup_order", "ship"}
    ship_schema = offered["ship"]["input_schema" if kind == "anthropic" else "function"]
    ship_schema = ship_schema if kind == "anthropic" else ship_schema["parameters"]
    assert ship_schema["required"] == ["order_id", "to"]
    assert ship_schema["$defs"]["Speed"]["enum"] == ["standard", "express"]
    if kind != "ollama":
        # The ollama SDK keeps a property's type, items, enum and description, and drops
        # the rest (minimum, pattern) on its way to the wire; the agent still checks them.
        assert ship_schema["$defs"]["Address"]["properties"]["postcode"]["pattern"] == r"^\d{5}$"
        assert ship_schema["properties"]["boxes"]["minimum"] == 1
    # The second request carries both calls and both results, in the provider's own shape.
    assert len(results_seen(second, kind)) == 2
    if kind == "openai":
        assistant = next(m for m in second["messages"] if m["role"] == "assistant")
        ids = [c["id"] for c in assistant["tool_calls"]]
        assert [m["tool_call_id"] for m in second["messages"] if m["role"] == "tool"] == ids
    elif kind == "anthropic":
        assistant = next(m for m in second["messages"] if m["role"] == "assistant")
        ids = [b["id"] for b in assistant["content"] if b["type"] == "tool_use"]
        (results,) = [m for m in second["messages"] if m["role"] == "user" and isinstance(m["content"], list)]
        assert [b["tool_use_id"] for b in results["content"]] == ids  # one user turn holds both results
        assert second["system"].startswith("You are shipper.")
    else:
        assert [m["tool_name"] for m in second["messages"] if m["role"] == "tool"] == ["lookup_order", "ship"]
        assistant = next(m for m in second["messages"] if m["role"] == "assistant")
        assert assistant["tool_calls"][1]["function"]["arguments"]["to"] == ADDRESS


async def test_bad_native_arguments_are_fed_back_and_nothing_runs(wire) -> None:
    kind, server = wire
    SHIPPED.clear()

    def think(body: dict[str, Any]) -> Said:
        seen = results_seen(body, kind)
        if not seen:
            bad = {**ADDRESS, "postcode": "7500"}
            return Said(calls=[("ship", {"order_id": "A-17", "to": bad, "boxes": 0})])
        return Said(text=seen[0])

    server.brain = think
    model = model_for(kind, server)
    try:
        result = await shipper(model).run("Ship A-17")
    finally:
        await model.aclose()
    assert SHIPPED == []
    assert result.steps[0].kind == "invalid"
    assert "ship.to.postcode: String should match pattern" in result.output
    assert "ship.boxes: Input should be greater than or equal to 1" in result.output


@workflow(name="native_durable", version="1")
async def native_durable(ctx: RunContext, base_url: str) -> str:
    model = OpenAICompatModel("wire", base_url=base_url, timeout=10)
    try:
        return str((await shipper(model).run("Ship A-17", ctx=ctx)).output)
    finally:
        await model.aclose()


async def test_a_durable_run_records_each_native_call_as_a_step(tmp_path) -> None:
    SHIPPED.clear()
    server = OpenAIWire(brain("openai")).start()
    try:
        async with Engine(open_store(f"sqlite:///{tmp_path}/runs.db"), workflows=[native_durable]) as engine:
            record = await engine.run_record(native_durable, server.url)
            steps = await engine.store.get_steps(record.run_id)
    finally:
        server.stop()
    assert [s.step_key for s in steps] == [
        "agent:shipper:turn:1",
        "agent:shipper:tool:1:0",
        "agent:shipper:tool:1:1",
        "agent:shipper:turn:2",
    ]
    turn = steps[0].output
    assert [c["name"] for c in turn["tool_calls"]] == ["lookup_order", "ship"] and turn["usage"] == [20, 5]
    assert json.loads(json.dumps(steps[2].output)) == {
        "result": "A-17 leaves today by express post to Paris",
        "error": None,
    }
    assert record.output.startswith("Done:") and len(SHIPPED) == 1
