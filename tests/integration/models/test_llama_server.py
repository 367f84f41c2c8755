"""Gemma 3 270M served by llama-cpp-python's OpenAI-compatible server, reached through our provider."""

from __future__ import annotations

import pydantic
import pytest

from orchestrate.agents import Agent, tool
from orchestrate.errors import AgentError
from orchestrate.models import ModelRequest, ModelSettings, ValidatedModel, Validator
from orchestrate.models.local import FewShotClassifier, FewShotPrompt, LlamaCppModel, support_intents
from orchestrate.models.openai_compat import OpenAICompatModel
from orchestrate.models.streaming import stream

from .servers import LlamaServer

LABELS = ["order_status", "refund", "technical", "account", "cancellation", "other"]


async def test_completion_reports_text_usage_latency_and_version(gemma_http) -> None:
    result = await gemma_http.generate("The capital of France is", settings=ModelSettings(max_tokens=6, temperature=0))
    assert "Paris" in result.text or "France" in result.text
    assert result.usage.input_tokens > 0 and 0 < result.usage.output_tokens <= 6
    assert result.finish_reason in ("stop", "length") and result.latency_s > 0
    assert result.model == "gemma-3-270m" and result.version


async def test_a_few_shot_prompt_continues_in_the_shown_format(gemma_http) -> None:
    prompt = FewShotPrompt(
        "Write the plural of each English noun.",
        [("cat", "cats"), ("box", "boxes"), ("city", "cities"), ("dog", "dogs")],
        input_label="Noun",
        output_label="Plural",
    )
    result = await gemma_http.generate(
        prompt.render("house"), settings=ModelSettings(max_tokens=5, temperature=0, stop=prompt.stop)
    )
    assert result.text.strip() == "houses"


async def test_json_constrained_output_passes_the_validation_gate(gemma_http) -> None:
    class City(pydantic.BaseModel):
        city: str
        country: str

    model = ValidatedModel(gemma_http, Validator(City), max_repairs=1)
    result = await model.chat(
        "Name one city and its country as JSON.", settings=ModelSettings(max_tokens=40, temperature=0)
    )
    assert isinstance(result.data, City) and result.data.city
    assert result.meta["validation_attempts"] in (1, 2)


async def test_the_few_shot_classifier_copies_labels_of_shown_examples(gemma_http) -> None:
    train = support_intents("train")[::4]  # two examples per intent
    classifier = FewShotClassifier(gemma_http, LABELS, [(r["text"], r["intent"]) for r in train])
    # A message shown in the prompt is classified as shown: the model can at least copy
    # (docs/models.md has its accuracy on unseen messages: far lower).
    shown = train[::2]
    verdicts = [await classifier.classify(r["text"]) for r in shown]
    assert all(v.label in LABELS for v in verdicts)
    assert sum(v.label == r["intent"] for v, r in zip(verdicts, shown, strict=True)) >= len(shown) - 2


async def test_the_same_gguf_runs_in_process(gemma_path) -> None:
    model = LlamaCppModel(gemma_path, n_ctx=512)
    result = await model.generate("One, two, three, four,", settings=ModelSettings(max_tokens=4, temperature=0))
    assert "five" in result.text.lower()
    assert result.provider == "llama_cpp" and result.version == gemma_path.name and result.usage.output_tokens > 0


async def test_completions_stream_from_the_llama_cpp_server(gemma_http) -> None:
    request = ModelRequest.generate("One, two, three, four,", ModelSettings(max_tokens=8, temperature=0))
    pieces = [chunk async for chunk in stream(gemma_http, request, first_token_timeout=60, idle_timeout=30)]
    result = pieces[-1].result
    assert result is not None and len(pieces) > 2  # token by token, then the result
    assert "".join(c.text for c in pieces[:-1]) == result.text and "five" in result.text.lower()
    assert result.finish_reason in ("stop", "length") and result.model == "gemma-3-270m"


@pytest.fixture(scope="module")
def function_calling_server(gemma_path):
    server = LlamaServer(gemma_path, alias="gemma-fc", chat_format="chatml-function-calling").start()
    yield server
    server.stop()


async def test_native_tool_calls_from_llama_cpp_servers_function_calling_format(function_calling_server) -> None:
    # Gemma 270M does not choose tools on its own; naming the tool makes the server
    # constrain its output to the tool's schema, so the call comes back as a native one.
    forced = ModelSettings(
        max_tokens=60, temperature=0, extra={"tool_choice": {"type": "function", "function": {"name": "lookup_order"}}}
    )
    model = OpenAICompatModel(
        "gemma-fc", base_url=function_calling_server.url, timeout=120, null_tool_call_content=False
    )
    looked_up: list[str] = []

    @tool
    def lookup_order(order_id: str) -> str:
        """Look up an order by its id."""
        looked_up.append(order_id)
        return "shipped"

    agent = Agent("clerk", role="You look orders up.", model=model, tools=[lookup_order], settings=forced, max_steps=2)
    try:
        with pytest.raises(AgentError, match="step limit of 2"):  # forced to call a tool each turn
            await agent.run("Where is order A-17?")
    finally:
        await model.aclose()
    assert agent.native and len(looked_up) == 2 and all(isinstance(i, str) for i in looked_up)
