"""Live streams on PostgreSQL miss no event committed out of id order.

PostgreSQL hands out event ids before commit: a transaction holding id 10 may commit
after one holding id 11. These tests hold such transactions open on a second
connection, and run many writers committing in random order (some rolling back) while
a feed reads, then check that every committed event was delivered exactly once.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import random
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit, urlunsplit

import httpx
import psycopg
import pytest
from psycopg import sql

from orchestrate import Client, Step, Workflow
from orchestrate.review import HumanReviewGate
from orchestrate.server import ServerSettings, create_app, create_token
from orchestrate.store._feed import SCAN_ROWS, FeedCursor, events_after, read_feed
from tests.postgres import in_schema


def draft(text: Any) -> dict[str, Any]:
    return {"text": str(text)}


PARKED = Workflow("parked", [Step("draft", draft, gate=HumanReviewGate(roles=["editor"]))])


@pytest.fixture
def pg_url() -> Iterator[str]:
    yield from in_schema()


@pytest.fixture
async def client(pg_url: str) -> AsyncIterator[Client]:
    made = Client(pg_url, workflows=[PARKED])
    await made.engine.open()
    try:
        yield made
    finally:
        await made.engine.close()


async def connect(url: str) -> psycopg.AsyncConnection[Any]:
    """A second connection to the store's schema, outside the store (a writer of another process)."""
    parts = urlsplit(url)
    schema = parse_qs(parts.query)["schema"][0]
    plain = urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))
    conn = await psycopg.AsyncConnection.connect(plain)
    await conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(schema)))
    await conn.commit()
    return conn


async def insert(conn: psycopg.AsyncConnection[Any], run_id: str, kind: str, n: int) -> int:
    cur = await conn.execute(
        "INSERT INTO orchestrate_events (run_id, kind, at, step_key, data) VALUES (%s, %s, %s, NULL, %s) RETURNING id",
        (run_id, kind, time.time(), json.dumps({"n": n})),
    )
    row = await cur.fetchone()
    assert row is not None
    return int(row[0])


async def test_an_event_committed_after_a_newer_one_is_still_delivered(client: Client, pg_url: str) -> None:
    run = await client.run(PARKED, "x")
    late, early = await connect(pg_url), await connect(pg_url)
    try:
        cursor = FeedCursor(0, {}, 30.0)
        before = [e for e, _ in await read_feed(client.store, cursor, now=time.time(), run_id=run.run_id)]
        held = await insert(late, run.run_id, "step_ok", 1)  # id taken, not committed
        newer = await insert(early, run.run_id, "step_ok", 2)
        await early.commit()
        assert newer > held
        first = await read_feed(client.store, cursor, now=time.time(), run_id=run.run_id)
        assert [e.id for e, _ in first] == [newer]
        resumed_text = first[-1][1]
        assert resumed_text == f"{newer}~{held}"
        # A plain "after this id" reader has lost the held event for good:
        plain_after = newer
        await late.commit()
        assert [e.id for e in await events_after(client.store, plain_after, run_id=run.run_id)] == []
        # The cursor finds it, once:
        second = await read_feed(client.store, cursor, now=time.time(), run_id=run.run_id)
        assert [e.id for e, _ in second] == [held]
        assert second[0][1] == str(newer)
        assert await read_feed(client.store, cursor, now=time.time(), run_id=run.run_id) == []
        # A stream resumed from the id sent with the newer event gets the held one too.
        again = FeedCursor.parse(resumed_text, lag_seconds=30.0, now=time.time())
        assert again is not None
        assert [e.id for e, _ in await read_feed(client.store, again, now=time.time(), run_id=run.run_id)] == [held]
        assert before  # the run's own events came first
    finally:
        await late.close()
        await early.close()


async def test_a_resumed_sse_stream_gets_the_event_committed_late(client: Client, pg_url: str) -> None:
    run = await client.run(PARKED, "x")
    app = create_app(client, settings=ServerSettings(stream_seconds=0.3))
    token, _ = await create_token(client.store, name="viewer", roles=["viewer"])
    headers = {"Authorization": f"Bearer {token}"}
    late, early = await connect(pg_url), await connect(pg_url)
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1") as http:
            whole = _parse((await http.get(f"/api/v1/events/runs/{run.run_id}", headers=headers)).text)
            held = await insert(late, run.run_id, "step_ok", 1)
            newer = await insert(early, run.run_id, "step_ok", 2)
            await early.commit()
            after = {**headers, "Last-Event-ID": whole[-1]["id"]}
            first = _parse((await http.get(f"/api/v1/events/runs/{run.run_id}", headers=after)).text)
            assert [json.loads(e["data"])["id"] for e in first] == [newer]
            await late.commit()
            resumed = {**headers, "Last-Event-ID": first[-1]["id"]}
            second = _parse((await http.get(f"/api/v1/events/runs/{run.run_id}", headers=resumed)).text)
            assert [json.loads(e["data"])["id"] for e in second] == [held]
            assert second[-1]["id"] == str(newer)
    finally:
        await late.close()
        await early.close()


async def test_concurrent_writers_committing_out_of_order_lose_and_repeat_nothing(client: Client, pg_url: str) -> None:
    run = await client.run(PARKED, "x")
    rng = random.Random(16)
    committed: set[int] = set()
    rolled_back: set[int] = set()
    writing = True

    async def writer(seed: int) -> None:
        conn = await connect(pg_url)
        mine = random.Random(seed)
        try:
            for n in range(25):
                event_id = await insert(conn, run.run_id, "step_ok", n)
                await asyncio.sleep(mine.uniform(0, 0.03))  # commit late, after others' newer ids
                if mine.random() < 0.1:
                    await conn.rollback()
                    rolled_back.add(event_id)
                else:
                    await conn.commit()
                    committed.add(event_id)
        finally:
            await conn.close()

    delivered: list[int] = []
    cursor = FeedCursor(0, {}, 30.0)
    baseline = {e.id for e in await client.store.list_events(run.run_id)}

    async def reader() -> None:
        while writing:
            for event, _ in await read_feed(client.store, cursor, now=time.time(), run_id=run.run_id, limit=50):
                delivered.append(event.id)
            await asyncio.sleep(rng.uniform(0, 0.01))

    reading = asyncio.create_task(reader())
    await asyncio.gather(*(writer(seed) for seed in range(8)))
    writing = False
    await reading
    for event, _ in await read_feed(client.store, cursor, now=time.time(), run_id=run.run_id, limit=1000):
        delivered.append(event.id)
    mine = [i for i in delivered if i not in baseline]
    assert len(mine) == len(set(mine)), "an event was delivered twice"
    assert set(mine) == committed
    assert not set(mine) & rolled_back
    # The race this guards against happened: some ids committed after a newer one was read.
    assert any(b < a for a, b in itertools.pairwise(mine))


def _parse(body: str) -> list[dict[str, str]]:
    events = []
    for block in body.replace("\r\n", "\n").split("\n\n"):
        fields: dict[str, str] = {}
        for line in block.splitlines():
            if line.startswith(":") or ":" not in line:
                continue
            name, _, value = line.partition(":")
            fields[name] = value.lstrip(" ")
        if "data" in fields:
            events.append(fields)
    return events


async def test_one_read_passes_any_number_of_other_runs_events(client: Client, pg_url: str) -> None:
    mine, other = await client.run(PARKED, "mine"), await client.run(PARKED, "other")
    cursor = FeedCursor(0, {}, 30.0)
    await read_feed(client.store, cursor, now=time.time(), run_id=mine.run_id)
    conn = await connect(pg_url)
    try:
        for n in range(SCAN_ROWS + 500):
            await insert(conn, other.run_id, "step_ok", n)
        wanted = await insert(conn, mine.run_id, "step_ok", 0)
        await conn.commit()
    finally:
        await conn.close()
    found = await read_feed(client.store, cursor, now=time.time(), run_id=mine.run_id)
    assert [e.id for e, _ in found] == [wanted]
    assert cursor.after == wanted and not cursor.gaps


async def test_a_new_stream_of_an_old_run_reads_its_events_once_among_many_others(client: Client, pg_url: str) -> None:
    mine, other = await client.run(PARKED, "mine"), await client.run(PARKED, "other")
    conn = await connect(pg_url)
    held = await connect(pg_url)
    try:
        expected = [e.id for e in await client.store.list_events(mine.run_id)]
        for n in range(3):
            expected.append(await insert(conn, mine.run_id, "step_ok", n))
            for m in range(SCAN_ROWS + 300):
                await insert(conn, other.run_id, "step_ok", m)
        await conn.commit()
        late = await insert(held, mine.run_id, "step_ok", 99)  # in flight among the newest ids
        newer = await insert(conn, mine.run_id, "step_ok", 100)
        await conn.commit()
        cursor = FeedCursor(0, {}, 30.0)
        first = [e.id for e, _ in await read_feed(client.store, cursor, now=time.time(), run_id=mine.run_id)]
        assert first == [*expected, newer]
        await held.commit()
        second = [e.id for e, _ in await read_feed(client.store, cursor, now=time.time(), run_id=mine.run_id)]
        assert second == [late]
    finally:
        await conn.close()
        await held.close()
