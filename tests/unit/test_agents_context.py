"""The sliding-window summariser keeps a 10-step pipeline under 4K tokens; the agent's budget counts
the next request from the provider's recorded usage; the shared context buffer expires entries."""

from __future__ import annotations

import json

import pytest

from orchestrate.agents import Agent, AgentBudget
from orchestrate.agents.context import SUMMARY_PREFIX, ContextWindow, SharedContext
from orchestrate.errors import BudgetExceededError, DefinitionError
from orchestrate.models.base import Message, Usage
from orchestrate.models.tokens import message_tokens, tokens_of
from orchestrate.store.memory import InMemoryStore
from orchestrate.testing.models import FakeModel, Reply


def report(step: int) -> str:
    """A step's output of about 850 tokens (3,400 characters)."""
    return f"Step {step} findings: " + " ".join(f"fact-{step}-{i} holds" for i in range(200))


async def pipeline(window: ContextWindow | None, steps: int = 10) -> tuple[list[int], FakeModel]:
    """Each step asks the model with everything so far; returns the prompt tokens of each call."""
    worker = FakeModel([report(i) for i in range(1, steps + 1)])
    summariser = FakeModel(["Facts so far: steps done, all facts hold."], repeat_last=True)
    messages = [Message.system("You analyse a data set step by step."), Message.user("Start.")]
    sent: list[int] = []
    for step in range(1, steps + 1):
        if window is not None:
            messages = list((await window.fit(messages, summariser=summariser)).messages)
        sent.append(message_tokens(None, messages))
        result = await worker.chat(messages)
        messages += [Message.assistant(result.text), Message.user(f"Now step {step + 1}.")]
    return sent, summariser


async def test_a_ten_step_pipeline_stays_under_4k_tokens_with_the_window() -> None:
    unbounded, _ = await pipeline(None)
    bounded, summariser = await pipeline(ContextWindow(max_tokens=4_000, keep_last=4))
    assert max(unbounded) > 5_000  # without it the context grows with every step
    assert max(bounded) <= 4_000 and bounded[:3] == unbounded[:3]  # it only acts once the window is full
    assert sum(bounded) < sum(unbounded) * 0.6
    assert len(summariser.calls) >= 2
    # Each summary folds in the previous one: the context never holds two.
    later = summariser.calls[-1].messages[-1].content
    assert SUMMARY_PREFIX in later and "Step 10 findings" not in later


async def test_fit_keeps_system_messages_and_recent_turns_verbatim() -> None:
    messages = [Message.system("rules"), *[Message.user(report(i)) for i in range(1, 8)]]
    summariser = FakeModel(["short summary"])
    fitted = await ContextWindow(max_tokens=2_400, keep_last=2).fit(messages, summariser=summariser)
    assert fitted.messages[0] == Message.system("rules")
    assert fitted.messages[1] == Message.user(SUMMARY_PREFIX + "short summary")
    assert fitted.messages[2:] == tuple(messages[-2:])
    assert fitted.summarised == 5 and fitted.tokens_after <= 2_400 < fitted.tokens_before
    sent = summariser.calls[0].messages[-1].content
    assert "Step 1 findings" in sent and "Step 5 findings" in sent and "Step 6 findings" not in sent


async def test_a_tool_result_is_never_separated_from_the_call_it_answers() -> None:
    messages = [
        Message.system("rules"),
        Message.user(report(1)),
        Message.assistant(report(2)),
        Message.tool(report(3), name="lookup", tool_call_id="c1"),
        Message.user("and now?"),
    ]
    fitted = await ContextWindow(max_tokens=1_300, keep_last=2).fit(messages, summariser=FakeModel(["s"]))
    assert [m.role for m in fitted.messages] == ["system", "user", "assistant", "tool", "user"]
    assert fitted.messages[2].content == report(2)  # the cut moved before the call


def test_window_settings_are_checked() -> None:
    with pytest.raises(DefinitionError, match="max_tokens must be an int >= 1"):
        ContextWindow(max_tokens=0)
    with pytest.raises(DefinitionError, match="summary_tokens .* must be under max_tokens"):
        ContextWindow(max_tokens=300, summary_tokens=300)


async def test_an_agent_summarises_its_older_turns_before_they_overflow() -> None:
    calls = [Reply(json.dumps({"tool": "read", "args": {"page": i}})) for i in range(1, 5)]
    model = FakeModel([*calls, Reply(json.dumps({"final": "read it all"}))])
    summariser = FakeModel(["pages 1-3 read"], repeat_last=True)

    def read(page: int) -> str:
        """Read a page."""
        return report(page)

    agent = Agent(
        "reader",
        role="You read.",
        model=model,
        tools=[read],
        max_steps=6,
        context_window=ContextWindow(max_tokens=2_000, keep_last=2, summary_tokens=200),
        summariser=summariser,
    )
    result = await agent.run("Read every page")
    assert result.output == "read it all" and summariser.calls
    assert all(message_tokens(None, call.messages) <= 2_000 for call in model.calls)
    assert any(m.content.startswith(SUMMARY_PREFIX) for m in model.calls[-1].messages)


async def test_the_budget_starts_from_the_providers_count_of_the_last_prompt() -> None:
    # The provider said turn 1's prompt and answer took 900 tokens (the estimate would
    # say far fewer): the next request is counted from there, and crosses 1,000.
    model = FakeModel([Reply(json.dumps({"tool": "ping", "args": {}}), usage=Usage(880, 20)), {"final": "x"}])

    def ping() -> str:
        """Ping."""
        return "pong"

    agent = Agent("p", role="x", model=model, tools=[ping], budget=AgentBudget(max_tokens=1_800))
    with pytest.raises(BudgetExceededError, match="900 tokens spent and the next request needs about 91[0-9]"):
        await agent.run("go")
    assert len(model.calls) == 1


def test_without_a_tokenizer_tokens_are_estimated() -> None:
    assert tokens_of(FakeModel([]), "x" * 400) == 100


async def test_shared_context_entries_expire_after_their_ttl() -> None:
    buffer = SharedContext(InMemoryStore(), "case-42", ttl_seconds=60)
    await buffer.put("customer", {"name": "Ada", "tier": "gold"}, now=1_000.0)
    assert await buffer.get("customer", now=1_059.0) == {"name": "Ada", "tier": "gold"}
    assert await buffer.gather(["customer", "missing"], now=1_030.0) == 'customer: {"name": "Ada", "tier": "gold"}'
    assert await buffer.get("customer", now=1_061.0) is None  # expired
    await buffer.put("customer", "Ada (refreshed)", now=1_100.0)
    assert await buffer.get("customer", now=1_150.0) == "Ada (refreshed)"
    with pytest.raises(DefinitionError, match="over max_chars=4000"):
        await buffer.put("big", "x" * 5_000, now=1_100.0)
