"""Every kind of event orchestrate writes is an EventKind, and the timeline describes each by it."""

from __future__ import annotations

import ast
from pathlib import Path

import orchestrate
from orchestrate.cli.timeline import _DESCRIPTIONS
from orchestrate.store._limits import PAYLOAD_LARGE_EVENT
from orchestrate.store.base import REPLAYED_EVENT, EventKind

SRC = Path(orchestrate.__file__).parent


def _written_kinds() -> dict[str, str]:
    """The literal kinds of the ``Event(...)`` built in the package (test doubles aside), with a place."""
    kinds: dict[str, str] = {}
    for path in SRC.rglob("*.py"):
        if "testing" in path.parts:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if not (isinstance(node, ast.Call) and getattr(node.func, "id", None) == "Event"):
                continue
            kind = (
                node.args[1] if len(node.args) > 1 else next((k.value for k in node.keywords if k.arg == "kind"), None)
            )
            if isinstance(kind, ast.Constant) and isinstance(kind.value, str):
                kinds[kind.value] = f"{path.relative_to(SRC)}:{node.lineno}"
            elif isinstance(kind, ast.JoinedStr):  # f"run_{status.value}": the statuses a run ends in
                kinds.update(dict.fromkeys(("run_succeeded", "run_failed", "run_cancelled", "run_dead"), str(path)))
    return kinds


def test_every_kind_written_is_an_event_kind() -> None:
    known = {k.value for k in EventKind}
    written = _written_kinds()
    assert len(written) > 15  # the scan found the engine's events
    assert {k: where for k, where in written.items() if k not in known} == {}
    assert REPLAYED_EVENT == EventKind.REPLAYED and PAYLOAD_LARGE_EVENT == EventKind.PAYLOAD_LARGE


def test_the_timeline_keys_its_descriptions_by_event_kind() -> None:
    assert all(isinstance(kind, EventKind) for kind in _DESCRIPTIONS)
    # Every run and step event has its own words; reviews and payload warnings show their data.
    described = {k for k in EventKind if k.value.startswith(("run_", "step_"))}
    assert described <= set(_DESCRIPTIONS)


def test_event_kinds_are_the_strings_stored() -> None:
    assert EventKind("run_created") is EventKind.RUN_CREATED
    assert f"{EventKind.STEP_RETRY}" == "step_retry" and EventKind.STEP_RETRY == "step_retry"
