"""Agents: the layer's cost per turn, time to first token, and what the summariser saves.

* **turn overhead**: one agent turn (a final answer, JSON protocol) against a loopback
  OpenAI-compatible HTTP server, in memory and as a durable run on SQLite, against the
  same request sent straight through the provider; reported per turn and as a ratio.
* **time to first token**: a streamed answer from the same server read through
  ``orchestrate.models.streaming.stream`` and through a durable ``stream_step`` (its
  ``on_text``), against the ``openai`` SDK's own stream; the server sends the first
  token at once, so the figures are the layers' cost, not a model's.
* **summariser**: a 10-step pipeline where each step sends everything so far (each
  step's answer ~850 tokens), with and without ``ContextWindow(max_tokens=4000)``;
  prompt tokens per step counted with Gemma 3's own tokenizer when the ``llama``
  extra is installed, estimated otherwise.

Run: ``python -m bench.agents [--quick]`` (prints a Markdown table).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from typing import Any

from tests.integration.models.wire_servers import OpenAIWire, Said

from orchestrate import Engine, RunContext, workflow
from orchestrate.agents import Agent
from orchestrate.agents.context import ContextWindow, SharedContext
from orchestrate.agents.streaming import StreamEvents, stream_step
from orchestrate.models.base import Message, Model, ModelRequest
from orchestrate.models.openai_compat import OpenAICompatModel
from orchestrate.models.streaming import stream
from orchestrate.models.tokens import message_tokens
from orchestrate.store import open_store
from orchestrate.testing.models import FakeModel

ANSWER = json.dumps({"final": "Your order A-17 ships tomorrow."})
MODEL: dict[str, OpenAICompatModel] = {}


async def _interleaved(
    subjects: dict[str, Callable[[], Awaitable[Any]]], runs: int, warmup: int = 5
) -> dict[str, float]:
    """Median seconds of each subject, called in turn each round (a loaded machine's drift hits all alike)."""
    for _ in range(warmup):
        for fn in subjects.values():
            await fn()
    samples: dict[str, list[float]] = {name: [] for name in subjects}
    for _ in range(runs):
        for name, fn in subjects.items():
            started = time.perf_counter()
            await fn()
            samples[name].append(time.perf_counter() - started)
    return {name: statistics.median(values) for name, values in samples.items()}


@workflow(name="bench_agent_turn", version="1")
async def _agent_run(ctx: RunContext, _: Any = None) -> Any:
    agent = Agent("bench", role="You answer.", model=MODEL["m"], tool_protocol="json")
    return (await agent.run("Where is A-17?", ctx=ctx)).output


@workflow(name="bench_stream_step", version="1")
async def _stream_run(ctx: RunContext, first: list[float]) -> str:
    started = first.pop()

    def seen(text: str) -> None:
        if not first:
            first.append(time.perf_counter() - started)

    result = await stream_step(ctx, MODEL["m"], "Talk", key="talk", on_text=seen, events=StreamEvents())
    return result.text


async def turn_overhead(runs: int) -> dict[str, float]:
    server = OpenAIWire(lambda body: Said(text=ANSWER)).start()
    model = MODEL["m"] = OpenAICompatModel("wire", base_url=server.url, timeout=10)
    agent = Agent("bench", role="You answer.", model=model, tool_protocol="json")
    request = ModelRequest.chat([Message.system(agent.system_prompt()), Message.user("Where is A-17?")])
    try:
        with tempfile.TemporaryDirectory() as tmp:
            async with Engine(open_store(f"sqlite:///{tmp}/runs.db"), workflows=[_agent_run]) as engine:
                return await _interleaved(
                    {
                        "bare": lambda: model.request(request),
                        "memory": lambda: agent.run("Where is A-17?"),
                        "durable": lambda: engine.run(_agent_run),
                    },
                    runs,
                )
    finally:
        await model.aclose()
        server.stop()


async def first_token(runs: int) -> dict[str, float]:
    text = " ".join(f"w{i}" for i in range(40))
    server = OpenAIWire(lambda body: Said(text=text)).start()
    model = MODEL["m"] = OpenAICompatModel("wire", base_url=server.url, timeout=10)
    request = ModelRequest.chat("Talk")

    async def ours() -> float:
        started = time.perf_counter()
        chunks = stream(model, request)
        async for chunk in chunks:
            if chunk.text:
                elapsed = time.perf_counter() - started
                async for _ in chunks:
                    pass
                return elapsed
        raise AssertionError("no text")

    async def direct() -> float:
        client = model._client()
        started = time.perf_counter()
        response = await client.chat.completions.create(
            model="wire", messages=[{"role": "user", "content": "Talk"}], stream=True
        )
        elapsed = None
        async with response:
            async for event in response:
                if elapsed is None and event.choices and event.choices[0].delta.content:
                    elapsed = time.perf_counter() - started
        assert elapsed is not None
        return elapsed

    async def in_run(engine: Engine) -> float:
        first: list[float] = [time.perf_counter()]
        await engine.run(_stream_run, first)
        return first[0]

    samples: dict[str, list[float]] = {"sdk": [], "stream": [], "stream_step": []}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            async with Engine(open_store(f"sqlite:///{tmp}/runs.db"), workflows=[_stream_run]) as engine:
                for round_ in range(runs + 5):
                    measured = {"sdk": await direct(), "stream": await ours(), "stream_step": await in_run(engine)}
                    if round_ >= 5:  # warm-up rounds are not counted
                        for name, value in measured.items():
                            samples[name].append(value)
    finally:
        await model.aclose()
        server.stop()
    return {name: statistics.median(values) for name, values in samples.items()}


def _report(step: int) -> str:
    return f"Step {step} findings: " + " ".join(f"fact-{step}-{i} holds" for i in range(200))


async def summariser(counter: Model | None) -> dict[str, Any]:
    async def pipeline(window: ContextWindow | None) -> list[int]:
        worker = FakeModel([_report(i) for i in range(1, 11)])
        writer = FakeModel(["Facts so far: every step's facts hold; nothing is open."], repeat_last=True)
        messages = [Message.system("You analyse a data set step by step."), Message.user("Start.")]
        sent = []
        for step in range(1, 11):
            if window is not None:
                messages = list((await window.fit(messages, summariser=writer, counter=counter)).messages)
            sent.append(message_tokens(counter, messages))
            answer = await worker.chat(messages)
            messages += [Message.assistant(answer.text), Message.user(f"Now step {step + 1}.")]
        return sent

    without = await pipeline(None)
    with_window = await pipeline(ContextWindow(max_tokens=4_000, keep_last=4))
    return {"without": without, "with": with_window}


def _counter() -> tuple[Model | None, str]:
    try:
        from orchestrate.models.local import LlamaCppModel

        model = LlamaCppModel(n_ctx=512)
        model.count_tokens("warm up")
        return model, "Gemma 3 270M's tokenizer"
    except Exception as exc:  # the estimate is the documented fallback
        return None, f"estimate (no llama.cpp: {type(exc).__name__})"


@workflow(name="bench_shared_context", version="1")
async def _shared_run(ctx: RunContext, _: Any = None) -> Any:
    shared = SharedContext.of(ctx, "case-7", ttl_seconds=600)
    await shared.put("order", "A-17 ships tomorrow", ctx=ctx)
    return await shared.get("order", ctx=ctx)


@workflow(name="bench_shared_floor", version="1")
async def _shared_floor(ctx: RunContext, _: Any = None) -> Any:
    async def write() -> None:
        return None

    async def read() -> str:
        return "A-17 ships tomorrow"

    await ctx.step(write, name="write")
    return await ctx.step(read, name="read")


async def shared_context(runs: int) -> dict[str, float]:
    """A run that writes an entry to a ``SharedContext`` and reads it back (two durable steps)
    against a run of two durable steps that touch nothing, both on SQLite."""
    with tempfile.TemporaryDirectory() as tmp:
        store = open_store(f"sqlite:///{tmp}/shared.db")
        async with Engine(store, workflows=[_shared_run, _shared_floor]) as engine:
            return await _interleaved(
                {"shared": lambda: engine.run(_shared_run, None), "floor": lambda: engine.run(_shared_floor, None)},
                runs,
            )


async def main_async(quick: bool) -> str:
    runs = 30 if quick else 200
    turns = await turn_overhead(runs)
    ttft = await first_token(runs)
    counter, counted_by = _counter()
    tokens = await summariser(counter)
    shared = await shared_context(runs)
    us = 1e6
    lines = [
        "| measurement | result |",
        "|---|---|",
        f"| one agent turn, in memory, vs the bare provider call (loopback HTTP, median of {runs}) | "
        f"{turns['memory'] * us:.0f} µs vs {turns['bare'] * us:.0f} µs: **{turns['memory'] / turns['bare']:.2f}x**, "
        f"+{(turns['memory'] - turns['bare']) * us:.0f} µs |",
        f"| one agent turn as a durable run on SQLite (run created, turn step recorded, run ended) | "
        f"{turns['durable'] * us:.0f} µs: **{turns['durable'] / turns['bare']:.2f}x** the bare call |",
        f"| time to first token: `openai` SDK stream / `stream()` / durable `stream_step` on SQLite | "
        f"{ttft['sdk'] * us:.0f} µs / {ttft['stream'] * us:.0f} µs / {ttft['stream_step'] * us:.0f} µs |",
        f"| 10-step pipeline, prompt tokens per step without / with `ContextWindow(4000)` ({counted_by}) | "
        f"max {max(tokens['without'])} / **{max(tokens['with'])}**, total {sum(tokens['without'])} / "
        f"**{sum(tokens['with'])}** ({1 - sum(tokens['with']) / sum(tokens['without']):.0%} fewer) |",
        f"| a run that writes a `SharedContext` entry and reads it back (two durable steps, SQLite) vs a run "
        f"of two durable steps that touch nothing | {shared['shared'] * us:.0f} µs vs {shared['floor'] * us:.0f} µs: "
        f"**{shared['shared'] / shared['floor']:.2f}x** |",
    ]
    detail = f"per step without: {tokens['without']}\nper step with:    {tokens['with']}"
    return "\n".join(lines) + "\n\n" + detail


def main(argv: list[str] | None = None) -> int:
    """Run the measurements and print them."""
    parser = argparse.ArgumentParser(prog="python -m bench.agents", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer runs (a smoke test)")
    args = parser.parse_args(argv)
    print(asyncio.run(main_async(args.quick)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
