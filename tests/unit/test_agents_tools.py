"""Tool schemas and argument checks come from pydantic: exact for nested models, lists, enums,
constraints and optional fields; hidden parameters never reach the model."""

from __future__ import annotations

from enum import Enum
from typing import Annotated, Literal

import pydantic
import pytest

from orchestrate.agents import Secret, ToolArgumentError, tool
from orchestrate.errors import DefinitionError


class Color(Enum):
    red = "red"
    blue = "blue"


class Item(pydantic.BaseModel):
    sku: str
    qty: Annotated[int, pydantic.Field(ge=1, le=10)]


@tool(credentials=["token"])
def order(
    items: list[Item],
    tags: list[str],
    color: Color,
    note: str | None = None,
    mode: Literal["fast", "slow"] = "slow",
    *,
    token: Secret,
    idempotency_key: str,
) -> str:
    """Place an order."""
    return "ok"


def test_the_schema_is_exact_and_hides_credentials_and_the_idempotency_key() -> None:
    schema = order.parameters
    assert set(schema["properties"]) == {"items", "tags", "color", "note", "mode"}
    assert schema["required"] == ["items", "tags", "color"] and schema["additionalProperties"] is False
    assert schema["properties"]["tags"] == {"type": "array", "items": {"type": "string"}}
    assert schema["properties"]["items"] == {"type": "array", "items": {"$ref": "#/$defs/Item"}}
    assert schema["$defs"]["Item"]["properties"]["qty"] == {"type": "integer", "minimum": 1, "maximum": 10}
    assert schema["$defs"]["Color"] == {"type": "string", "enum": ["red", "blue"]}
    assert schema["properties"]["note"] == {"anyOf": [{"type": "string"}, {"type": "null"}], "default": None}
    assert schema["properties"]["mode"] == {"type": "string", "enum": ["fast", "slow"], "default": "slow"}
    assert "title" not in str(schema)
    assert order.wants_idempotency_key and order.credentials == ("token",)
    assert order.signature_line() == (
        "order(items: array of object, tags: array of string, color: one of 'red', 'blue', "
        "note: string (optional), mode: one of 'fast', 'slow' (optional))"
    )


def test_arguments_are_validated_and_built_by_pydantic() -> None:
    checked = order.check_args({"items": [{"sku": "A", "qty": 2}], "tags": ["x"], "color": "red"})
    assert checked == {"items": [Item(sku="A", qty=2)], "tags": ["x"], "color": Color.red}
    with pytest.raises(ToolArgumentError, match=r"order\.items\.0\.qty: Input should be less than or equal to 10"):
        order.check_args({"items": [{"sku": "A", "qty": 11}], "tags": [], "color": "red"})
    with pytest.raises(ToolArgumentError, match=r"order\.color: Input should be 'red' or 'blue'"):
        order.check_args({"items": [], "tags": [], "color": "green"})
    with pytest.raises(ToolArgumentError, match=r"order\.mode: Input should be 'fast' or 'slow'"):
        order.check_args({"items": [], "tags": [], "color": "red", "mode": "now"})
    with pytest.raises(ToolArgumentError, match=r"order\.items\.0\.sku: Field required"):
        order.check_args({"items": [{"qty": 1}], "tags": [], "color": "red"})
    # The model cannot pass what the agent fills in itself.
    with pytest.raises(ToolArgumentError, match=r"has no argument\(s\) \['idempotency_key', 'token'\]"):
        order.check_args({"items": [], "tags": [], "color": "red", "token": "x", "idempotency_key": "k"})
    with pytest.raises(ToolArgumentError, match="must be a JSON object"):
        order.check_args('{"items": []}')


class Opaque:
    """Not a type pydantic can describe."""


def test_types_that_cannot_be_described_are_refused_when_the_tool_is_made() -> None:
    def bad(thing: Opaque) -> None:
        """No schema for this."""

    with pytest.raises(DefinitionError, match="cannot be described as JSON"):
        tool(bad)
