"""Tool calls on the wire: the shapes the providers share (no SDK imported here)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from orchestrate.models.base import ToolSpec


def openai_tool(spec: ToolSpec) -> dict[str, Any]:
    """A tool in the chat-completions ``tools`` format (also Ollama's)."""
    return {
        "type": "function",
        "function": {"name": spec.name, "description": spec.description, "parameters": dict(spec.parameters)},
    }


def parse_arguments(raw: Any) -> Mapping[str, Any] | str:
    """Tool-call arguments as a dict; the raw text when they are not a JSON object."""
    if isinstance(raw, Mapping):
        return dict(raw)
    if not isinstance(raw, str):
        return str(raw)
    try:
        value = json.loads(raw) if raw.strip() else {}
    except ValueError:
        return raw
    return value if isinstance(value, dict) else raw
