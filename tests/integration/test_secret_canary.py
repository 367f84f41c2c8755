"""A canary key, echoed back by a real OpenAI-compatible endpoint, appears nowhere.

The endpoint (a stdlib HTTP server on 127.0.0.1) answers every request with 401 and a
body that echoes the ``Authorization`` header it received, as some gateways do. A
workflow calls it through ``OpenAICompatModel`` with the key wrapped in ``Secret``; the
runs are driven by the command line on a SQLite file with logs at ``debug``. The key must
then occur zero times in the logs, in any row of any table of the database, in the
review webhook's bodies and hook calls, and in the output of every command that shows
runs, dead runs or review items.

A second test plants a key in clear in the database, as an older version stored it, and
reads it through the same commands and ``Client``: no ``Secret`` of this process holds
it, so only its format gives it away.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import sqlite3
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from orchestrate import Client, RunStatus, StepStatus
from orchestrate.cli import cli
from orchestrate.cli._common import setup_logging
from orchestrate.store.base import Event, ReviewRecord, RunRecord, StepRecord

APP = """
import json
import os

from orchestrate import Fallback, Step, Workflow
from orchestrate.models import Secret
from orchestrate.models.openai_compat import OpenAICompatModel
from orchestrate.review import HumanReviewGate

model = OpenAICompatModel(
    "canary-model",
    base_url=os.environ["CANARY_BASE_URL"],
    api_key=Secret(os.environ["CANARY_KEY"], name="openai_api_key"),
)


def heard(*, event, review):
    with open(os.environ["CANARY_HOOK_FILE"], "a") as out:
        out.write(json.dumps({"event": event, "review": review.to_dict()}) + "\\n")


async def ask(question):
    result = await model.chat(question)
    return result.text


gate = HumanReviewGate(at="before", notify=[os.environ["CANARY_WEBHOOK"], heard], timeout=3600)
canary = Workflow("canary", [Step("ask", ask, gate=gate)], version="1")
flagged = Workflow(
    "flagged", [Step("ask", ask, fallback=Fallback.value("no answer", flag="human_review"))], version="1"
)
"""


class _Handler(BaseHTTPRequestHandler):
    """Answers every POST with 401, echoing the credentials it was sent; keeps the request bodies."""

    received: list[dict[str, Any]]

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        auth = self.headers.get("Authorization", "")
        self.received.append({"path": self.path, "authorization": auth, "body": body.decode()})
        if self.path.endswith("/hook"):
            self.send_response(204)
            self.end_headers()
            return
        error = {
            "message": f"Incorrect API key provided: {auth.removeprefix('Bearer ')} (you sent Authorization: {auth})",
            "type": "invalid_request_error",
            "code": "invalid_api_key",
        }
        payload = json.dumps({"error": error}).encode()
        self.send_response(401)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def endpoint() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """``(root URL, requests received)`` of the 401 server, which also takes webhook POSTs on /hook."""
    received: list[dict[str, Any]] = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), type("Handler", (_Handler,), {"received": received}))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", received
    server.shutdown()
    server.server_close()
    thread.join(5)


@pytest.fixture(autouse=True)
def _quiet_logs() -> Iterator[None]:
    yield
    setup_logging("warning")


def invoke(env: dict[str, str], *args: str) -> Result:
    return CliRunner().invoke(cli, list(args), env={"COLUMNS": "200", **env}, catch_exceptions=False)


def dump_database(path: Path) -> str:
    """Every row of every table of the SQLite file, as text."""
    with sqlite3.connect(path) as conn:
        tables = [row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        assert "orchestrate_runs" in tables and "orchestrate_events" in tables
        return "\n".join(f"{table}: {row!r}" for table in tables for row in conn.execute(f'SELECT * FROM "{table}"'))


SHOW_COMMANDS = [
    ["runs", "list"],
    ["runs", "list", "--json"],
    ["runs", "show", "canary"],
    ["runs", "show", "canary", "--json"],
    ["runs", "show", "flagged"],
    ["runs", "show", "flagged", "--json"],
    ["dlq", "list"],
    ["dlq", "list", "--json"],
    ["dlq", "show", "canary"],
    ["dlq", "show", "canary", "--json"],
    ["reviews", "list", "--status", "all"],
    ["reviews", "list", "--status", "all", "--json"],
    ["reviews", "stats", "--json"],
]


def test_the_canary_key_appears_nowhere(endpoint: tuple[str, list[dict[str, Any]]], tmp_path: Path) -> None:
    root, received = endpoint
    key = f"canary-{secrets.token_hex(16)}"  # no known key format: only its Secret gives it away
    app = tmp_path / "canary_app.py"
    app.write_text(APP)
    db = tmp_path / "canary.db"
    hook_file = tmp_path / "hook.jsonl"
    env = {
        "ORCHESTRATE_STORE": f"sqlite:///{db}",
        "ORCHESTRATE_APP": "",
        "CANARY_KEY": key,
        "CANARY_BASE_URL": f"{root}/v1",
        "CANARY_WEBHOOK": f"{root}/hook",
        "CANARY_HOOK_FILE": str(hook_file),
    }
    outputs: dict[str, str] = {}

    def run(*args: str) -> Result:
        result = invoke(env, *args, "--log-level", "debug")
        outputs[" ".join(args)] = result.stdout + result.stderr
        return result

    parked = run("run", f"{app}:canary", "--input", '"What is my balance?"', "--run-id", "canary")
    assert parked.exit_code == 3, parked.output
    (item,) = json.loads(invoke(env, "reviews", "list", "--json").stdout)
    died = run("reviews", "approve", item["review_id"], "--resume", "--app", f"{app}:canary")
    assert died.exit_code == 1, died.output  # the model refused the key: the run is dead
    assert run("run", f"{app}:flagged", "--input", '"And now?"', "--run-id", "flagged").exit_code == 0
    replayed = run("dlq", "replay", "canary", "--app", f"{app}:canary")
    assert replayed.exit_code == 3, replayed.output  # the replay waits at the gate again
    flag = next(i for i in json.loads(invoke(env, "reviews", "list", "--json").stdout) if i["queue"] == "human_review")
    for command in [*SHOW_COMMANDS, ["reviews", "show", item["review_id"]], ["reviews", "show", flag["review_id"]]]:
        result = run(*command)
        assert result.exit_code == 0, (command, result.output)

    # The canary is live: the key went out, came back in the 401's body, and the error says so.
    calls = [r for r in received if r["path"].endswith("/chat/completions")]
    assert len(calls) == 2 and all(r["authorization"] == f"Bearer {key}" for r in calls)
    assert "HTTP 401: Incorrect API key provided: [REDACTED:openai_api_key]" in outputs["runs show canary --json"]
    assert "dead" in outputs["runs list"] and "human_review" in outputs["reviews list --status all"]

    assert {command: text.count(key) for command, text in outputs.items()} == dict.fromkeys(outputs, 0)
    assert any('"event": "run_dead"' in text for text in outputs.values())  # the logs are in there
    assert dump_database(db).count(key) == 0
    bodies = [r["body"] for r in received if r["path"].endswith("/hook")]
    assert len(bodies) == 2 and all(json.loads(body)["event"] == "review_created" for body in bodies)
    assert "".join(bodies).count(key) == 0
    assert hook_file.read_text().count(key) == 0 and "review_created" in hook_file.read_text()


OLD_KEY = "sk-proj-0ldV3rs1onSt0redTh1sInClear"


async def _store_in_clear(url: str) -> None:
    """What an older version wrote: a dead run whose error, step, history and flag echo a key."""
    error = {
        "type": "orchestrate.errors.BadRequestError",
        "name": "BadRequestError",
        "message": f"canary-model: HTTP 401: Incorrect API key provided: {OLD_KEY}",
        "step": "ask",
        "traceback": f"Traceback (most recent call last):\nBadRequestError: Authorization: Bearer {OLD_KEY}\n",
    }
    async with Client(url) as client:
        store = client.store
        await store.create_run(
            RunRecord(run_id="old", workflow="canary", version="1", status=RunStatus.DEAD, input="q", error=error)
        )
        step = StepRecord(
            run_id="old",
            step_key="ask",
            name="ask",
            status=StepStatus.FAILED,
            error=error,
            meta={"attempt_log": [error]},
        )
        await store.record_step(step, fence=None, now=1.0)
        await store.append_event(Event(run_id="old", kind="run_dead", at=2.0, step_key="ask", data={"error": error}))
        await store.create_review(
            ReviewRecord(
                review_id="rv-old",
                run_id="old",
                workflow="canary",
                step_key="ask",
                gate_key="flag:ask",
                payload={"flag": "x"},
                meta={"error": error},
            )
        )


def test_a_key_an_older_version_stored_in_clear_is_masked_on_the_way_out(tmp_path: Path) -> None:
    db = tmp_path / "old.db"
    url = f"sqlite:///{db}"
    asyncio.run(_store_in_clear(url))
    assert OLD_KEY in dump_database(db)
    env = {"ORCHESTRATE_STORE": url}

    shown = {}
    for command in [
        *[[word if word != "canary" else "old" for word in c] for c in SHOW_COMMANDS if "flagged" not in c],
        ["reviews", "show", "rv-old"],
        ["reviews", "show", "rv-old", "--json"],
    ]:
        result = invoke(env, *command)
        assert result.exit_code == 0, (command, result.output)
        shown[" ".join(command)] = result.stdout + result.stderr

    assert {command: text.count(OLD_KEY) for command, text in shown.items()} == dict.fromkeys(shown, 0)
    assert "Incorrect API key provided: [REDACTED]" in shown["runs show old"]
    assert json.loads(shown["runs show old --json"])["steps"][0]["error"]["traceback"].endswith(
        "Authorization: Bearer [REDACTED]\n"
    )
