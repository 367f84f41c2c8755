"""Payload limits and depth limits, in memory: what a test on memory proves for SQLite.

The limits (:class:`~orchestrate.store.PayloadLimits`) come from the store's constructor,
its URL, the environment, or the defaults (2 MiB refused, 512 KiB reported). Values that
nest too deep are refused with a named ``SerializationError`` wherever they enter (run
input, signal values, review payloads and edits), never a bare ``RecursionError``.
"""

from __future__ import annotations

import json
import random
from typing import Any

import pytest

from orchestrate import Client, Fallback, RunContext, RunStatus, Step, Workflow, workflow
from orchestrate.errors import InvalidInputError, PayloadTooLargeError, SerializationError
from orchestrate.review import HumanReviewGate
from orchestrate.store import InMemoryStore, PayloadLimits, open_store
from orchestrate.store.base import RunRecord, StepRecord
from orchestrate.store.postgres import PostgresStore
from orchestrate.store.retrying import RetryingStore
from orchestrate.store.sqlite import SQLiteStore
from orchestrate.types import RunStatus as Status
from orchestrate.types import StepStatus

KiB, MiB = 1024, 1024 * 1024


def _nested(depth: int) -> Any:
    value: Any = "bottom"
    for _ in range(depth):
        value = {"down": value}
    return value


# the limits ------------------------------------------------------------------------------------


def test_the_defaults_are_2_mib_refused_and_512_kib_reported() -> None:
    limits = PayloadLimits()
    assert (limits.max_bytes, limits.warn_bytes) == (2 * MiB, 512 * KiB)
    assert PayloadLimits(8 * MiB).warn_bytes == 2 * MiB  # a quarter of the limit
    assert PayloadLimits(1000, 5000).warn_bytes == 1000  # never above the limit
    assert PayloadLimits(1000, 10) == PayloadLimits(max_bytes=1000, warn_bytes=10)


@pytest.mark.parametrize("bad", [0, -1, 1.5, "2MiB", True])
def test_limits_that_are_not_positive_numbers_of_bytes_are_refused(bad: Any) -> None:
    with pytest.raises(InvalidInputError, match="must be a positive number of bytes"):
        PayloadLimits(bad)
    with pytest.raises(InvalidInputError, match="warn_bytes"):
        PayloadLimits(1000, bad)


def test_limits_come_from_the_store_then_its_url_then_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORCHESTRATE_MAX_PAYLOAD_BYTES", "4_000_000")
    monkeypatch.setenv("ORCHESTRATE_WARN_PAYLOAD_BYTES", "100000")
    assert open_store("memory://").payload_limits == PayloadLimits(4_000_000, 100_000)  # type: ignore[attr-defined]
    url = "sqlite:///x.db?max_payload_bytes=5000&synchronous=normal"
    assert SQLiteStore(url).payload_limits == PayloadLimits(5000, 100_000)
    pg = PostgresStore("postgresql://h/db?warn_payload_bytes=2000&max_payload_bytes=9000")
    assert pg.payload_limits == PayloadLimits(9000, 2000)
    assert "max_payload_bytes" not in pg.conninfo  # not passed on to libpq
    given = PayloadLimits(10 * MiB)
    assert InMemoryStore("memory://?max_payload_bytes=5", payload_limits=given).payload_limits is given
    monkeypatch.setenv("ORCHESTRATE_MAX_PAYLOAD_BYTES", "lots")
    with pytest.raises(InvalidInputError, match=r"\$ORCHESTRATE_MAX_PAYLOAD_BYTES must be a number of bytes"):
        InMemoryStore()
    with pytest.raises(InvalidInputError, match="sqlite URL .*max_payload_bytes must be a number of bytes"):
        SQLiteStore("sqlite:///x.db?max_payload_bytes=2MB")


# through the engine -------------------------------------------------------------------------


async def test_a_limit_in_the_url_ends_a_run_dead_over_it_without_retrying() -> None:
    calls: list[str] = []

    def summarise(text: str) -> str:
        calls.append(text)
        return text * 100

    wf = Workflow("notes", [Step("summarise", summarise, retry=3)])
    async with Client("memory://?max_payload_bytes=1000", workflows=[wf]) as client:
        assert (await client.run(wf, "short")).status is RunStatus.SUCCEEDED
        dead = await client.run(wf, "a longer text")
    assert dead.status is RunStatus.DEAD and calls == ["short", "a longer text"]
    assert dead.error is not None and dead.error["name"] == "PayloadTooLargeError"
    assert "its output is 1.3 KiB (1,302 bytes) of JSON, over the store's limit of 1,000 bytes" in dead.error["message"]


async def test_a_fallback_stands_in_for_an_output_over_the_limit() -> None:
    wf = Workflow(
        "notes",
        [Step("fetch", lambda _: "x" * 2000, fallback=Fallback.value("see the archive")), Step("show", str.upper)],
    )
    async with Client("memory://?max_payload_bytes=1000", workflows=[wf]) as client:
        done = await client.run(wf, None)
        (fetch, _) = await client.store.get_steps(done.run_id)
    assert (done.status, done.output) == (RunStatus.SUCCEEDED, "SEE THE ARCHIVE")
    assert fetch.fallback == "value" and fetch.error is not None and fetch.error["name"] == "PayloadTooLargeError"


async def test_a_flag_around_an_output_near_the_limit_opens_its_item_without_the_output() -> None:
    def fails(_: Any) -> str:
        raise ConnectionError("down")

    wf = Workflow("notes", [Step("fetch", fails, fallback=Fallback.value("x" * 990, flag="human_review"))])
    async with Client("memory://?max_payload_bytes=1000", workflows=[wf]) as client:
        done = await client.run(wf, None)
        (item,) = await client.list_reviews(run_id=done.run_id)
    assert done.status is RunStatus.SUCCEEDED and done.output == "x" * 990
    assert item.payload["output"] is None and item.payload["output_omitted"].endswith("bytes of JSON")


async def test_a_durable_function_step_over_the_limit_ends_the_run_dead() -> None:
    @workflow(version="1")
    async def export(ctx: RunContext, n: int) -> int:
        rows = await ctx.step(lambda k: ["row"] * k, n, name="rows")
        return len(rows)

    async with Client("memory://?max_payload_bytes=1000", workflows=[export]) as client:
        assert (await client.run(export, 10)).output == 10
        dead = await client.run(export, 1000)
    assert dead.status is RunStatus.DEAD and dead.error is not None
    assert (dead.error["name"], dead.error["step"]) == ("PayloadTooLargeError", "rows")


async def test_the_store_is_never_asked_twice_for_a_value_it_refused() -> None:
    class Refusing(InMemoryStore):
        calls = 0

        async def record_step(self, step: StepRecord, **kwargs: Any) -> StepRecord:
            Refusing.calls += 1
            raise PayloadTooLargeError("too large", size=3, limit=2)

    store = RetryingStore(Refusing(), total_seconds=5.0, initial_delay=0.001)
    with pytest.raises(PayloadTooLargeError):
        await store.record_step(
            StepRecord(run_id="r1", step_key="s", name="s", status=StepStatus.SUCCEEDED, output="x"), fence=1, now=0.0
        )
    assert (Refusing.calls, store.retries) == (1, 0)


async def test_the_in_memory_store_measures_the_json_a_sql_store_writes() -> None:
    # Random JSON values: each fits a limit of its exact size and is refused one byte under it.
    rng = random.Random(7)
    alphabet = 'aZ0 "\\\n\t\x01é東🚀'

    def value(depth: int) -> Any:
        kind = rng.randrange(8 if depth < 4 else 5)
        if kind == 0:
            return "".join(rng.choice(alphabet) for _ in range(rng.randrange(40)))
        if kind == 1:
            return rng.choice([0, -7, 2**62, -(10**25), 10**40])
        if kind == 2:
            return rng.choice([0.1, -2.5e-300, 1e300, 3.141592653589793])
        if kind in (3, 4):
            return rng.choice([True, False, None])
        if kind in (5, 6):
            return {"".join(rng.choice(alphabet) for _ in range(3)): value(depth + 1) for _ in range(rng.randrange(5))}
        return [value(depth + 1) for _ in range(rng.randrange(5))]

    store = InMemoryStore()
    await store.create_run(RunRecord(run_id="r1", workflow="wf", version="1"))
    for i in range(200):
        item = value(0)
        size = len(json.dumps(item, separators=(",", ":")))
        if item is None or size == 1:
            continue  # no output (nothing is written), or no smaller limit to refuse it
        store.payload_limits = PayloadLimits(size - 1, size - 1)
        with pytest.raises(PayloadTooLargeError) as caught:
            await store.record_step(
                StepRecord(run_id="r1", step_key=f"s{i}", name="s", status=StepStatus.SUCCEEDED, output=item),
                fence=None,
                now=0.0,
            )
        assert caught.value.size == size
        store.payload_limits = PayloadLimits(size, size)
        await store.record_step(
            StepRecord(run_id="r1", step_key=f"s{i}", name="s", status=StepStatus.SUCCEEDED, output=item),
            fence=None,
            now=0.0,
        )


# depth ------------------------------------------------------------------------------------------


async def test_values_nested_too_deep_are_refused_by_name_wherever_they_enter() -> None:
    @workflow(version="1")
    async def intake(ctx: RunContext, case: Any) -> str:
        approved = await ctx.wait("approval")
        await ctx.review(_nested(5000) if approved == "deep" else {"case": case}, roles=["editor"])
        return "done"

    async with Client("memory://", workflows=[intake]) as client:
        with pytest.raises(SerializationError, match="workflow 'intake': its input nests deeper than 256 levels"):
            await client.start(intake, _nested(5000))
        parked = await client.run(intake, "P-1")
        with pytest.raises(SerializationError, match="signal 'approval' of run .*: its value nests deeper than 256"):
            await client.signal(parked.run_id, "approval", _nested(5000))
        await client.signal(parked.run_id, "approval", "shallow")
        waiting = await client.resume(parked.run_id)
        (item,) = await client.list_reviews(run_id=parked.run_id)
        with pytest.raises(SerializationError, match="the edited payload .* nests too deeply"):
            await client.edit(item.review_id, _nested(5000), by="ed", role="editor")
        with pytest.raises(SerializationError, match=rf"review {item.review_id} .*: its payload nests deeper than 256"):
            await client.edit(item.review_id, _nested(300), by="ed", role="editor")
        assert waiting.status is Status.WAITING and (await client.get_review(item.review_id)) == item

        again = await client.run(intake, "P-2")
        await client.signal(again.run_id, "approval", "deep")
        failed = await client.resume(again.run_id)
    assert failed.status is RunStatus.FAILED and failed.error is not None
    assert failed.error["name"] == "SerializationError"
    assert "the review at step" in failed.error["message"] and "nests deeper than 256" in failed.error["message"]


async def test_a_step_argument_too_deep_to_hash_still_runs() -> None:
    @workflow(version="1")
    async def walk(ctx: RunContext, _: Any) -> int:
        return int(await ctx.step(lambda tree: len(tree), _nested(5000), name="walk"))

    async with Client("memory://", workflows=[walk]) as client:
        done = await client.run(walk, None)
    assert (done.status, done.output) == (RunStatus.SUCCEEDED, 1)


async def test_a_gate_shows_reviewers_an_output_up_to_the_limit() -> None:
    wf = Workflow("letters", [Step("draft", lambda n: "w" * n, gate=HumanReviewGate(roles=["editor"]))])
    async with Client("memory://?max_payload_bytes=1000", workflows=[wf]) as client:
        parked = await client.run(wf, 998)
        (item,) = await client.list_reviews(run_id=parked.run_id)
        assert parked.status is RunStatus.WAITING and item.payload == "w" * 998
