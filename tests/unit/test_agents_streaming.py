"""Streamed text is redacted piece by piece exactly as the whole text would be; stream events coalesce."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from orchestrate.agents import StreamEvents
from orchestrate.errors import DefinitionError
from orchestrate.models.secrets import Redactor, Secret

SECRETS = [Secret("sk-live-7f3a9c2e11", name="api"), Secret("hunter2hunter2", name="pw"), Secret("abcd", name="short")]
REDACTOR = Redactor(SECRETS)

words = st.sampled_from(["sk-live-7f3a9c2e11", "hunter2hunter2", "abcd", "sk-live", "hunter", "ab", " ", "x", "é"])


@given(parts=st.lists(words, max_size=30), cuts=st.lists(st.integers(min_value=0, max_value=400), max_size=12))
def test_streamed_text_is_redacted_as_the_whole_text_is(parts: list[str], cuts: list[int]) -> None:
    text = "".join(parts)
    bounds = sorted({0, len(text), *(c % (len(text) + 1) for c in cuts)})
    pieces = [text[a:b] for a, b in itertools.pairwise(bounds)]
    stream = REDACTOR.streaming()
    shown = "".join(stream.feed(p) for p in pieces) + stream.end()
    assert shown == REDACTOR.text(text)
    for secret in SECRETS:
        assert secret.reveal() not in shown


def test_text_without_a_secret_prefix_is_not_held_back_longer_than_needed() -> None:
    stream = REDACTOR.streaming()
    # The longest secret has 18 characters: the last 17 wait, in case they start one.
    assert stream.feed("hello there, all is well") == "hello t"
    assert stream.feed(" indeed") == "here, a" and stream.end() == "ll is well indeed"


def test_a_redactor_without_secrets_holds_nothing_back() -> None:
    stream = Redactor().streaming()
    assert stream.feed("abc") == "abc" and stream.end() == ""


def test_events_are_due_by_characters_or_by_age() -> None:
    policy = StreamEvents(min_chars=10, min_seconds=0.5)
    assert not policy.due(9, 0.1) and policy.due(10, 0.0) and policy.due(1, 0.5) and not policy.due(0, 9.0)
    with pytest.raises(DefinitionError, match="min_chars must be an int >= 1"):
        StreamEvents(min_chars=0)
    with pytest.raises(DefinitionError, match="min_seconds must be >= 0"):
        StreamEvents(min_seconds=-1)
