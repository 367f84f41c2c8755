"""Graph workflows on the engine with the in-memory store."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from orchestrate import (
    ApprovalRequired,
    Branch,
    Client,
    Engine,
    Fallback,
    HumanReviewGate,
    Loop,
    Map,
    NonRetryableError,
    Parallel,
    Retry,
    RunFailedError,
    RunStatus,
    Step,
    StepStatus,
    SubWorkflow,
    Timeout,
    Workflow,
)
from orchestrate.store import InMemoryStore

FAST = Retry(max_attempts=3, initial_delay=0.001, jitter=0.0)


@pytest.fixture
async def engine():
    async with Engine(InMemoryStore()) as eng:
        yield eng


async def steps_of(engine: Engine, run_id: str):
    return {s.step_key: s for s in await engine.store.get_steps(run_id)}


async def test_sequential_output_flows_and_kwargs_spread(engine):
    def extract(form_id: str) -> dict:
        return {"extracted": form_id.lower()}

    async def validate(data: dict) -> dict:
        return {**data, "ok": True}

    wf = Workflow("seq", [Step("extract", extract), Step("validate", validate)])
    assert await engine.run(wf, {"form_id": "F-1"}) == {"extracted": "f-1", "ok": True}


async def test_every_step_recorded_with_metadata(engine):
    wf = Workflow("meta", [Step("a", lambda x: x + 1), Step("b", lambda x: x * 2)])
    record = await engine.run_record(wf, 1)
    assert record.status is RunStatus.SUCCEEDED and record.output == 4
    steps = await steps_of(engine, record.run_id)
    assert list(steps) == ["a", "b"]
    assert steps["a"].attempts == 1 and steps["a"].input_hash and steps["a"].output == 2
    assert steps["b"].meta["latency_ms"] >= 0
    kinds = [e.kind for e in await engine.store.list_events(record.run_id)]
    assert kinds[0] == "run_created" and kinds[-1] == "run_succeeded"


async def test_retry_then_success_records_attempts(engine):
    calls = []

    def flaky(x):
        calls.append(x)
        if len(calls) < 3:
            raise ConnectionError("reset")
        return "ok"

    record = await engine.run_record(Workflow("r", [Step("flaky", flaky, retry=FAST)]), 1)
    assert record.output == "ok" and len(calls) == 3
    step = (await steps_of(engine, record.run_id))["flaky"]
    assert step.attempts == 3
    assert [a["error"] for a in step.meta["attempt_log"]] == ["ConnectionError", "ConnectionError"]
    retries = [e for e in await engine.store.list_events(record.run_id) if e.kind == "step_retry"]
    assert [e.data["attempt"] for e in retries] == [1, 2]


async def test_non_retryable_error_goes_to_dead_letter_at_once(engine):
    calls = []

    def poison(x):
        calls.append(x)
        raise NonRetryableError("corrupted PDF")

    record = await engine.run_record(Workflow("p", [Step("parse", poison, retry=FAST)]), "doc")
    assert len(calls) == 1
    assert record.status is RunStatus.DEAD
    assert record.error and record.error["step"] == "parse" and "corrupted PDF" in record.error["message"]
    step = (await steps_of(engine, record.run_id))["parse"]
    assert step.status is StepStatus.FAILED


async def test_exhausted_retries_raise_for_callers(engine):
    def broken(x):
        raise RuntimeError("down")

    with pytest.raises(RunFailedError, match=r"dead at step 'b'.*down") as info:
        await engine.run(Workflow("x", [Step("a", lambda x: x), Step("b", broken, retry=FAST)]), 1)
    assert info.value.run.status is RunStatus.DEAD


async def test_async_attempt_timeout(engine):
    attempts = []

    async def slow(x):
        attempts.append(x)
        if len(attempts) == 1:
            await asyncio.sleep(10)
        return "second"

    record = await engine.run_record(Workflow("t", [Step("slow", slow, timeout=0.05, retry=FAST)]), 1)
    assert record.output == "second"
    step = (await steps_of(engine, record.run_id))["slow"]
    assert step.meta["attempt_log"][0]["error"] == "StepTimeoutError"


async def test_sync_step_timeout_leaves_thread_running_but_moves_on(engine):
    finished = threading.Event()

    def blocking(x):
        time.sleep(0.3)
        finished.set()
        return "late"

    wf = Workflow("st", [Step("blocking", blocking, timeout=0.05, fallback=Fallback.value("fallback"))])
    record = await engine.run_record(wf, 1)
    assert record.output == "fallback"
    assert not finished.is_set()  # the thread is still running: threads cannot be killed
    await asyncio.to_thread(finished.wait, 5)
    assert finished.is_set()


def sleepy(x):
    time.sleep(30)
    return x


async def test_process_isolated_step_is_killed_on_timeout(engine):
    started = time.monotonic()
    wf = Workflow("iso", [Step("sleepy", sleepy, timeout=1.0, isolation="process", fallback=Fallback.value(0))])
    record = await engine.run_record(wf, 5)
    assert record.output == 0
    assert time.monotonic() - started < 25  # the 30 s sleep did not run to its end


def double(x):
    return x * 2


async def test_process_isolated_step_returns_its_result(engine):
    wf = Workflow("iso_ok", [Step("double", double, isolation="process")])
    assert await engine.run(wf, 21) == 42


async def test_total_timeout_across_attempts(engine):
    async def always_slow(x):
        await asyncio.sleep(1)

    step = Step(
        "s",
        always_slow,
        timeout=Timeout(attempt=0.05, total=0.12),
        retry=Retry(max_attempts=50, initial_delay=0.01, jitter=0),
    )
    record = await engine.run_record(Workflow("tt", [step]), 1)
    assert record.status is RunStatus.DEAD
    assert (await steps_of(engine, record.run_id))["s"].attempts < 10


async def test_fallback_chain_order(engine):
    def primary(x):
        raise RuntimeError("primary down")

    def secondary(x):
        raise RuntimeError("secondary down")

    chain = [Fallback.cached(), Fallback.call(secondary), Fallback.value("default")]
    record = await engine.run_record(Workflow("fb", [Step("gen", primary, fallback=chain)]), "q")
    assert record.output == "default"
    step = (await steps_of(engine, record.run_id))["gen"]
    assert step.fallback == "value"
    assert [f["fallback"] for f in step.meta["fallbacks_failed"]] == [
        "cached",
        "call:test_fallback_chain_order.<locals>.secondary",
    ]
    assert step.meta["error_class"] == "RuntimeError"


async def test_cached_fallback_uses_last_good_output(engine):
    state = {"up": True}

    def track(number):
        if not state["up"]:
            raise TimeoutError("carrier API")
        return {"location": "Memphis, TN"}

    wf = Workflow("track", [Step("track", track, cache=3600, fallback=Fallback.cached())])
    assert await engine.run(wf, "1Z999") == {"location": "Memphis, TN"}
    state["up"] = False
    wf2 = Workflow("track", [Step("track", track, fallback=Fallback.cached())])
    record = await engine.run_record(wf2, "1Z999")
    assert record.output == {"location": "Memphis, TN"}
    assert (await steps_of(engine, record.run_id))["track"].fallback == "cached"


async def test_fresh_cache_hit_skips_the_call(engine):
    calls = []

    def lookup(x):
        calls.append(x)
        return x.upper()

    wf = Workflow("c", [Step("lookup", lookup, cache=60)])
    await engine.run(wf, "a")
    record = await engine.run_record(wf, "a")
    assert calls == ["a"]
    assert (await steps_of(engine, record.run_id))["lookup"].meta["cached"] is True


async def test_skip_gives_partial_result_and_downstream_sees_missing(engine):
    def allergies(x):
        raise ValueError("OCR failed on allergies section")

    def summary(value, ctx):
        return {"allergies": value, "missing": sorted(ctx.missing)}

    wf = Workflow("partial", [Step("allergies", allergies, fallback=Fallback.skip()), Step("summary", summary)])
    record = await engine.run_record(wf, "form")
    assert record.status is RunStatus.SUCCEEDED
    # A skipped output passed on is stored as null: every store hands on what SQLite would.
    assert record.output == {"allergies": None, "missing": ["allergies"]}
    assert (await steps_of(engine, record.run_id))["allergies"].status is StepStatus.SKIPPED


async def test_branch_on_path_value_and_default(engine):
    wf = Workflow(
        "support",
        [
            Step("classify", lambda m: {"result": "refund" if "money" in m else "other"}),
            Branch(
                "classify.result",
                {"refund": Step("refund", lambda m: "refunded")},
                default=Step("human", lambda m: "escalated"),
            ),
            Step("reply", lambda v: f"reply:{v}"),
        ],
    )
    assert await engine.run(wf, "my money back") == "reply:refunded"
    assert await engine.run(wf, "hello") == "reply:escalated"


async def test_branch_without_match_fails_naming_the_value(engine):
    wf = Workflow("b", [Branch(lambda v: v, {"a": Step("a", lambda v: 1)}, name="pick")])
    record = await engine.run_record(wf, "zzz")
    assert record.status is RunStatus.FAILED
    assert "value 'zzz' matches no route" in record.error["message"]


async def test_confidence_tiers(engine):
    wf = Workflow(
        "tiers",
        [
            Branch.tiers(
                lambda r: r["confidence"],
                [(0.8, Step("send", lambda r: "auto")), (0.5, Step("review", lambda r: "normal-review"))],
                otherwise=Step("senior", lambda r: "senior"),
            )
        ],
    )
    assert await engine.run(wf, {"confidence": 0.93}) == "auto"
    assert await engine.run(wf, {"confidence": 0.6}) == "normal-review"
    assert await engine.run(wf, {"confidence": 0.2}) == "senior"


async def test_forward_jump_skips_steps(engine):
    wf = Workflow(
        "jump",
        [
            Branch(lambda v: v > 10, {True: "finish", False: [Step("small", lambda v: v + 1)]}, name="big"),
            Step("middle", lambda v: v * 100),
            Step("finish", lambda v: v - 1),
        ],
    )
    assert await engine.run(wf, 50) == 49
    assert await engine.run(wf, 1) == 199


async def test_parallel_fan_out_fan_in(engine):
    running = 0
    peak = 0

    async def check(name):
        async def fn(x):
            nonlocal running, peak
            running += 1
            peak = max(peak, running)
            await asyncio.sleep(0.01)
            running -= 1
            return f"{name}:{x}"

        return fn

    nodes = [Step(n, await check(n)) for n in ("nsfw", "ocr", "meta")]
    assert await engine.run(Workflow("par", [Parallel(nodes)]), 1) == ["nsfw:1", "ocr:1", "meta:1"]
    assert peak == 3
    peak = 0
    wf = Workflow("par2", [Parallel([Step(n, await check(n)) for n in ("a", "b", "c")], max_workers=1, merge="dict")])
    assert await engine.run(wf, 2) == {"a": "a:2", "b": "b:2", "c": "c:2"}
    assert peak == 1


async def test_map_with_max_workers_and_reduce(engine):
    running = 0
    peak = 0

    async def square(x):
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.005)
        running -= 1
        return [x * x]

    wf = Workflow("map", [Map(Step("sq", square), max_workers=4, reduce="concat")])
    record = await engine.run_record(wf, list(range(20)))
    assert record.output == [x * x for x in range(20)]
    assert peak == 4
    keys = set(await steps_of(engine, record.run_id))
    assert keys == {f"sq[{i}]" for i in range(20)}


async def test_map_over_non_list_fails_clearly(engine):
    record = await engine.run_record(Workflow("m", [Map(Step("s", lambda x: x))]), {"not": "a list"})
    assert record.status is RunStatus.FAILED
    assert "expected a list to map over, got dict" in record.error["message"]


async def test_loop_until_threshold_and_bound(engine):
    def improve(draft):
        return {"text": draft["text"] + "+", "quality": draft["quality"] + 0.3}

    wf = Workflow(
        "loop", [Loop([Step("improve", improve)], until=lambda d: d["quality"] >= 0.8, max_iterations=5, name="revise")]
    )
    record = await engine.run_record(wf, {"text": "d", "quality": 0.0})
    assert record.output["text"] == "d+++"
    assert set(await steps_of(engine, record.run_id)) == {"revise#0/improve", "revise#1/improve", "revise#2/improve"}
    bounded = Workflow(
        "loop2", [Loop([Step("improve", improve)], until=lambda d: False, max_iterations=2, on_exhausted="fail")]
    )
    failed = await engine.run_record(bounded, {"text": "", "quality": 0})
    assert failed.status is RunStatus.FAILED and "did not meet its exit condition in 2" in failed.error["message"]


async def test_sub_workflow_steps_are_namespaced(engine):
    inner = Workflow("enrich", [Step("lookup", lambda x: x + 1), Step("score", lambda x: x * 10)])
    outer = Workflow("outer", [Step("lookup", lambda x: x), SubWorkflow(inner), Step("done", lambda x: x)])
    record = await engine.run_record(outer, 1)
    assert record.output == 20
    assert list(await steps_of(engine, record.run_id)) == ["lookup", "enrich/lookup", "enrich/score", "done"]


async def test_error_handler_runs_with_a_failure_report(engine):
    reports = []

    def broken(x):
        raise KeyError("missing field")

    wf = Workflow("eh", [Step("broken", broken)], error_handler=Step("error_logging", reports.append))
    record = await engine.run_record(wf, {"id": 7})
    assert record.status is RunStatus.DEAD
    assert reports[0]["step"] == "broken" and reports[0]["error"]["name"] == "KeyError"
    assert reports[0]["input"] == {"id": 7}


async def test_run_deadline_fails_the_run(engine):
    async def slow(x):
        await asyncio.sleep(5)

    wf = Workflow("deadline", [Step("slow", slow)], timeout=0.1)
    record = await engine.run_record(wf, 1)
    assert record.status is RunStatus.FAILED
    assert record.error["name"] == "DeadlineExceededError"


async def test_short_budget_takes_the_cheaper_path(engine):
    async def slow_model(x):
        await asyncio.sleep(0.2)
        return "big model"

    async def warmup(x):
        await asyncio.sleep(0.15)
        return x

    wf = Workflow(
        "budget",
        [
            Step("warmup", warmup),
            Step("generate", slow_model, min_budget=0.5, fallback=Fallback.value("cached answer")),
        ],
        timeout=0.6,
    )
    record = await engine.run_record(wf, 1)
    assert record.output == "cached answer"
    step = (await steps_of(engine, record.run_id))["generate"]
    assert step.meta["fallback_reason"] == "budget"


async def test_step_concurrency_limit_across_runs(engine):
    running = 0
    peak = 0

    async def call_api(x):
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.01)
        running -= 1
        return x

    wf = Workflow("limited", [Step("api", call_api, max_concurrency=2)])
    outputs = await asyncio.gather(*(engine.run(wf, i) for i in range(8)))
    assert outputs == list(range(8)) and peak == 2


async def test_workflow_concurrency_limit(engine):
    running = 0
    peak = 0

    async def work(x):
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.01)
        running -= 1
        return x

    wf = Workflow("wf_limited", [Step("work", work), Step("more", work)], max_concurrency=3)
    await asyncio.gather(*(engine.run(wf, i) for i in range(9)))
    assert peak == 3


async def test_idempotency_key_is_stable_across_attempts(engine):
    keys = []

    def charge(amount, ctx):
        keys.append((ctx.attempt, ctx.idempotency_key))
        if ctx.attempt < 2:
            raise ConnectionError("lost")
        return "charged"

    record = await engine.run_record(Workflow("pay", [Step("charge", charge, retry=FAST)]), 10)
    assert [a for a, _ in keys] == [1, 2]
    assert keys[0][1] == keys[1][1] == f"{record.run_id}:charge"


async def test_returned_fallback_routes_to_a_step(engine):
    def check(doc):
        return Fallback("manual", doc) if doc["confidence"] < 0.85 else doc

    wf = Workflow(
        "route",
        [
            Step("check", check),
            Step("auto", lambda d: {"id": d["id"] * 10}),
            Step("manual", lambda d: f"manual:{d['id']}"),
        ],
    )
    assert await engine.run(wf, {"id": 1, "confidence": 0.5}) == "manual:1"
    assert await engine.run(wf, {"id": 2, "confidence": 0.9}) == "manual:20"  # no route: auto runs and flows on


async def test_returned_fallback_to_a_queue_parks_until_a_person_decides(engine):
    def review_check(doc):
        return Fallback("human_review_queue", doc) if doc["confidence"] < 0.85 else doc

    wf = Workflow("queue", [Step("review_check", review_check), Step("submit", lambda d: f"submitted {d['id']}")])
    with pytest.raises(ApprovalRequired, match="signal:queue:human_review_queue:review_check") as info:
        await engine.run(wf, {"id": 9, "confidence": 0.5})
    run_id = info.value.run.run_id
    client = Client(engine=engine)
    await client.signal(run_id, "queue:human_review_queue:review_check", {"approved": True, "payload": {"id": 10}})
    record = await client.resume(run_id)
    assert record.status is RunStatus.SUCCEEDED and record.output == "submitted 10"


async def test_gate_parks_then_edit_and_reject(engine):
    wf = Workflow(
        "gated",
        [Step("summary", lambda x: {"text": x}, gate=HumanReviewGate()), Step("update", lambda s: s["text"].upper())],
    )
    client = Client(engine=engine)
    parked = await client.run(wf, "draft")
    assert parked.status is RunStatus.WAITING and parked.wait_reason == "signal:review:summary"
    await client.decide(parked.run_id, "summary", approved=True, payload={"text": "edited"}, by="dr_a")
    assert (await client.resume(parked.run_id)).output == "EDITED"

    rejected = await client.run(wf, "bad")
    await client.decide(rejected.run_id, "summary", approved=False, reason="hallucinated dose")
    final = await client.resume(rejected.run_id)
    assert final.status is RunStatus.FAILED and "hallucinated dose" in final.error["message"]
