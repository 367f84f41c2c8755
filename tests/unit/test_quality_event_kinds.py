"""The quality layer's events are EventKinds, and the timeline describes them in words."""

from __future__ import annotations

from orchestrate._engine import diversion
from orchestrate.cli.timeline import _Axis, _describe
from orchestrate.observe import alerts
from orchestrate.store._quality import FEEDBACK_EVENT
from orchestrate.store.base import Event, EventKind


def test_the_quality_events_are_event_kinds() -> None:
    assert FEEDBACK_EVENT is EventKind.FEEDBACK_RECORDED and FEEDBACK_EVENT == "feedback_recorded"
    assert diversion.DIVERTED_EVENT is EventKind.STEP_DIVERTED is alerts.DIVERTED_EVENT
    assert EventKind("step_diverted") is EventKind.STEP_DIVERTED


def test_the_timeline_describes_a_diversion_and_feedback() -> None:
    axis = _Axis(0.0, 10.0)
    data = {"alert_id": "al-1", "monitor": "fraud-drift", "action": "review"}
    diverted = Event(run_id="r", kind=EventKind.STEP_DIVERTED, at=1.0, step_key="fraud", data=data)
    label, _, text, state = _describe(diverted, "running", axis)
    assert (label, state) == ("diverted", "running")
    assert text == "to human review by alert al-1 (fraud-drift)"
    data = {"feedback_id": "f1", "by": "ops", "outcome": "defaulted", "score": 0.0, "label": None, "step": "fraud"}
    feedback = Event(run_id="r", kind=EventKind.FEEDBACK_RECORDED, at=2.0, data=data)
    label, _, text, _ = _describe(feedback, "succeeded", axis)
    assert label == "feedback"
    assert text == "outcome defaulted, score 0.0, step fraud by ops"
