"""The model protocol's records: messages, settings, requests, results."""

from __future__ import annotations

import json

import pytest

from orchestrate import _serde
from orchestrate.errors import BadRequestError, ModelError, NonRetryableError, RateLimitedError
from orchestrate.models import Message, Model, ModelRequest, ModelResult, ModelSettings, Usage
from orchestrate.policies import Retry
from orchestrate.testing.models import FakeEmbedder, FakeModel, FunctionModel


def test_messages_normalise_from_strings_dicts_and_messages() -> None:
    request = ModelRequest.chat(["hi", {"role": "assistant", "content": "hello"}, Message.system("be brief")])
    assert [m.role for m in request.messages] == ["user", "assistant", "system"]
    assert ModelRequest.chat("one").messages == (Message.user("one"),)


@pytest.mark.parametrize("bad", [[], [{"role": "wizard", "content": "x"}], [{"role": "user"}], [42]])
def test_malformed_messages_are_bad_requests(bad) -> None:
    with pytest.raises(BadRequestError):
        ModelRequest.chat(bad)


def test_settings_merge_keeps_defaults_and_takes_overrides() -> None:
    base = ModelSettings(max_tokens=100, temperature=0.0)
    merged = base.merged(ModelSettings(temperature=0.7, stop=("\n",)))
    assert merged == ModelSettings(max_tokens=100, temperature=0.7, stop=("\n",))
    assert base.merged(None) is base


def test_with_messages_continues_chats_and_prompts() -> None:
    chat = ModelRequest.chat("q").with_messages([Message.assistant("a"), Message.user("again")])
    assert [m.content for m in chat.messages] == ["q", "a", "again"]
    prompt = ModelRequest.generate("Intent:").with_messages([Message.user("try again")])
    assert prompt.prompt == "Intent:\n\ntry again"


def test_result_is_json_for_the_step_record() -> None:
    result = ModelResult("hi", "m", Usage(3, 1), 0.2, meta={"route": "small"})
    stored = json.loads(_serde.dumps(result))
    assert stored["usage"] == {"input_tokens": 3, "output_tokens": 1}
    assert stored["meta"] == {"route": "small"} and stored["text"] == "hi"
    assert (Usage(1, 2) + Usage(3, 4)).total_tokens == 10


def test_fakes_satisfy_the_protocol() -> None:
    assert isinstance(FakeModel(), Model)
    assert isinstance(FunctionModel(lambda r: "x"), Model)
    assert isinstance(FakeEmbedder(), Model)


def test_error_tree_drives_the_engine_retry_policy() -> None:
    retry = Retry(max_attempts=5, initial_delay=0.1, jitter=0.0)
    assert retry.next_delay(1, RateLimitedError("429", retry_after=7.0)) == 7.0
    assert retry.next_delay(1, BadRequestError("400")) is None  # never retried
    assert isinstance(BadRequestError("x"), NonRetryableError) and isinstance(BadRequestError("x"), ModelError)


async def test_embedding_is_unsupported_on_generative_fakes_by_default() -> None:
    with pytest.raises(BadRequestError):
        await FakeEmbedder().chat("hello")
