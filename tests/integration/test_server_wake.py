"""A decision made through the API reaches the run's open event stream without waiting for a poll.

The server polls every hour here: only the in-process wake (the decision, the embedded
worker's steps) can bring the resumed run's events to the stream before the test's bound.
A real uvicorn server, since the stream must stay open while the decision is made.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from pathlib import Path
from typing import Any

import httpx
import uvicorn

from orchestrate import Client, Step, Workflow
from orchestrate.review import HumanReviewGate
from orchestrate.server import ServerSettings, create_app, create_token


def draft(text: Any) -> dict[str, Any]:
    return {"text": f"draft for {text}"}


def send(reply: dict[str, Any]) -> dict[str, Any]:
    return {"sent": reply["text"]}


REPLY = Workflow("reply", [Step("draft", draft, gate=HumanReviewGate(roles=["editor"])), Step("send", send)])


def _port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_an_approval_wakes_the_stream_of_its_run(tmp_path: Path) -> None:
    client = Client(f"sqlite:///{tmp_path / 'wake.db'}", workflows=[REPLY])
    await client.engine.open()
    ops_token, _ = await create_token(client.store, name="ada", roles=["operator"])
    eve_token, _ = await create_token(client.store, name="eve", roles=["editor"])
    ops, eve = {"Authorization": f"Bearer {ops_token}"}, {"Authorization": f"Bearer {eve_token}"}
    app = create_app(client, settings=ServerSettings(poll_seconds=3600, stream_seconds=3600), worker=True)
    port = _port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    serving = asyncio.create_task(server.serve())
    try:
        while not server.started:
            await asyncio.sleep(0.01)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:
            started = await http.post("/api/v1/runs", json={"workflow": "reply", "input": "hi"}, headers=ops)
            run_id = started.json()["run_id"]
            items: list[dict[str, Any]] = []
            while not items:
                items = (await http.get("/api/v1/reviews", params={"run_id": run_id}, headers=ops)).json()["items"]
                await asyncio.sleep(0.02)
            seen: list[str] = []
            listening = asyncio.Event()

            async def listen() -> None:
                async with http.stream("GET", f"/api/v1/events/runs/{run_id}", headers=ops) as stream:
                    listening.set()
                    async for line in stream.aiter_lines():
                        if line.startswith("event: "):
                            seen.append(line.removeprefix("event: "))
                            if seen[-1] == "run_succeeded":
                                return

            reader = asyncio.create_task(listen())
            await listening.wait()
            approved = await http.post(f"/api/v1/reviews/{items[0]['review_id']}/approve", headers=eve)
            assert approved.status_code == 200, approved.text
            # Polling alone would deliver nothing for an hour: the bound fails the test instead.
            await asyncio.wait_for(reader, 20)
        assert seen[-1] == "run_succeeded"
        assert "review_decided" in seen
    finally:
        server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await serving
        await client.engine.close()
