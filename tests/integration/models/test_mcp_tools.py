"""Agent tools from a real MCP server (``mcp_server.py``, started by the test) over stdio and
streamable HTTP: the same approval, credential scoping, argument checks, timeouts and
redaction as local tools; every call the server really ran is logged by the server itself."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path

import pytest

from orchestrate import Engine, RunContext, workflow
from orchestrate.agents import Agent, Secret
from orchestrate.agents.mcp import MCPToolset
from orchestrate.errors import AgentError, DefinitionError
from orchestrate.store import open_store
from orchestrate.testing.models import FakeModel

from .servers import free_port

SERVER = str(Path(__file__).with_name("mcp_server.py"))
CRM_KEY = Secret("crm-4b1d9e77aa", name="crm_api_key")
CREDENTIALS = {"crm_search": {"api_key": "crm_api_key"}}


def calls_logged(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


@pytest.fixture(scope="module")
def http_server(tmp_path_factory) -> Iterator[tuple[str, Path]]:
    log = tmp_path_factory.mktemp("mcp") / "calls.jsonl"
    port = free_port()
    env = {"MCP_CALLS": str(log), "CRM_KEY": CRM_KEY.reveal(), "PATH": "/usr/bin:/bin"}
    process = subprocess.Popen(
        [sys.executable, SERVER, "http", str(port)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    url = f"http://127.0.0.1:{port}/mcp"
    deadline = time.monotonic() + 30
    while True:
        try:
            with urllib.request.urlopen(url, timeout=1):
                pass
        except urllib.error.HTTPError:
            break  # it answers (a GET without a session is refused): it is up
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                raise RuntimeError("the MCP test server did not start") from None
            time.sleep(0.2)
        else:
            break
    yield url, log
    process.terminate()
    process.wait(timeout=10)


@pytest.fixture(params=["stdio", "http"])
def connect(request, tmp_path) -> Callable[[], AbstractAsyncContextManager[tuple[MCPToolset, Path]]]:
    """Opens the toolset in the test's own task (an MCP session is entered and left in one task)."""
    options = {"requires_approval": {"delete_order"}, "credentials": CREDENTIALS, "timeout": 1.0}
    if request.param == "stdio":
        log = tmp_path / "calls.jsonl"
        env = {"MCP_CALLS": str(log), "CRM_KEY": CRM_KEY}
        tools = MCPToolset.stdio(sys.executable, SERVER, "stdio", env=env, **options)
    else:
        url, log = request.getfixturevalue("http_server")
        log.write_text("")
        tools = MCPToolset.http(url, **options)

    @asynccontextmanager
    async def opened() -> AsyncIterator[tuple[MCPToolset, Path]]:
        async with tools:
            yield tools, log

    return opened


def call(name: str, **args) -> dict:
    return {"tool": name, "args": args}


def clerk(tools: MCPToolset, model: FakeModel, **options) -> Agent:
    return Agent(
        "clerk",
        role="You look after orders.",
        model=model,
        tools=tools.tools(),
        credentials={"crm_api_key": CRM_KEY},
        **options,
    )


async def test_the_model_sees_the_schemas_without_secrets_and_calls_run_on_the_server(connect) -> None:
    async with connect() as (tools, log):
        model = FakeModel([call("lookup_order", order_id="A-17"), call("crm_search", query="Ada"), {"final": "done"}])
        result = await clerk(tools, model).run("Find A-17 and Ada")
        by_name = {t.name: t for t in tools.tools()}
        assert set(by_name) == {"lookup_order", "delete_order", "crm_search", "slow"}
        assert set(by_name["crm_search"].parameters["properties"]) == {"query"}  # the key is not the model's
        assert "idempotency_key" not in by_name["delete_order"].parameters["properties"]
        prompt = model.calls[0].messages[0].content
        assert "crm_search(query: string)" in prompt and "api_key" not in prompt
        assert [(s.kind, s.tool, s.result) for s in result.steps[:2]] == [
            ("tool", "lookup_order", {"order_id": "A-17", "status": "packed"}),
            ("tool", "crm_search", "1 customer matches 'Ada' (searched with key [REDACTED:crm_api_key])"),
        ]
        seen = json.dumps([m.to_dict() for m in model.calls[2].messages])
        assert CRM_KEY.reveal() not in seen and CRM_KEY.reveal() not in json.dumps(result.transcript)
        assert [c["tool"] for c in calls_logged(log)] == ["lookup_order", "crm_search"]


async def test_a_gated_mcp_tool_never_runs_without_approval_and_runs_once_with_it(connect) -> None:
    async with connect() as (tools, log):
        refused = await clerk(tools, FakeModel([call("delete_order", order_id="A-17"), {"final": "no"}])).run(
            "Delete A-17"
        )
        assert refused.steps[0].kind == "refused" and calls_logged(log) == []
        asked = []
        model = FakeModel([call("delete_order", order_id="A-17"), {"final": "deleted"}])
        approved = await clerk(tools, model, approve=lambda c: asked.append(c) or True).run("Delete A-17")
        assert approved.steps[0].kind == "tool" and approved.steps[0].result == "deleted A-17"
        (ran,) = calls_logged(log)
        assert ran["args"]["order_id"] == "A-17" and ran["args"]["idempotency_key"].endswith(":agent:clerk:tool:1:0")
        assert [c.args for c in asked] == [{"order_id": "A-17"}]


async def test_bad_arguments_are_fed_back_and_never_reach_the_server(connect) -> None:
    async with connect() as (tools, log):
        model = FakeModel([call("lookup_order", order_id="17"), call("lookup_order"), {"final": "gave up"}])
        result = await clerk(tools, model).run("Find 17")
        assert [s.kind for s in result.steps] == ["invalid", "invalid", "final"]
        assert "does not match" in (result.steps[0].error or "") and "missing" in (result.steps[1].error or "")
        assert calls_logged(log) == []


async def test_a_call_that_runs_past_its_timeout_is_reported_as_failed(connect) -> None:
    async with connect() as (tools, _log):
        model = FakeModel([call("slow", seconds=5), {"final": "too slow"}])
        result = await clerk(tools, model).run("Wait")
        assert result.steps[0].kind == "tool" and result.steps[0].error == "no result within 1s"
        assert "Tool slow failed: no result within 1s" in model.calls[1].messages[-1].content


async def test_a_server_that_cannot_start_is_one_clear_error(tmp_path) -> None:
    with pytest.raises(AgentError, match="could not connect and list its tools"):
        async with MCPToolset.stdio(sys.executable, str(tmp_path / "missing.py"), connect_timeout=20):
            pass


@workflow(name="mcp_durable", version="1")
async def mcp_durable(ctx: RunContext, log: str) -> str:
    tools = MCPToolset.stdio(sys.executable, SERVER, "stdio", env={"MCP_CALLS": log}, requires_approval=True)
    async with tools:
        model = FakeModel([call("delete_order", order_id="B-2"), {"final": "deleted"}])
        agent = Agent("clerk", role="x", model=model, tools=tools.tools(), approve=lambda c: True)
        return str((await agent.run("Delete B-2", ctx=ctx)).output)


async def test_inside_a_run_each_mcp_call_is_a_step_with_the_step_idempotency_key(tmp_path) -> None:
    log = tmp_path / "calls.jsonl"
    async with Engine(open_store(f"sqlite:///{tmp_path}/runs.db"), workflows=[mcp_durable]) as engine:
        record = await engine.run_record(mcp_durable, str(log))
        keys = [s.step_key for s in await engine.store.get_steps(record.run_id)]
    assert record.output == "deleted"
    assert keys == ["agent:clerk:turn:1", "agent:clerk:approval:1:0", "agent:clerk:tool:1:0", "agent:clerk:turn:2"]
    (ran,) = calls_logged(log)
    assert ran["args"]["idempotency_key"] == f"{record.run_id}:agent:clerk:tool:1:0"


async def test_http_headers_may_hold_secrets_and_reach_only_the_http_client(http_server) -> None:
    url, _log = http_server
    token = Secret("mcp-token-81f2aa", name="mcp_token")
    tools = MCPToolset.http(url, headers={"Authorization": token}, include={"lookup_order"})
    async with tools:
        (only,) = tools.tools()
        assert only.name == "lookup_order" and await only.fn(order_id="A-1") == {"order_id": "A-1", "status": "packed"}
    assert "mcp-token" not in repr(tools.__dict__.get("_headers"))  # kept as a Secret, shown masked


def test_toolset_options_are_checked() -> None:
    with pytest.raises(DefinitionError, match="either command= .* or url="):
        MCPToolset(command="x", url="http://127.0.0.1:1/mcp")
    with pytest.raises(DefinitionError, match="timeout must be > 0 seconds"):
        MCPToolset.stdio("x", timeout=0)


async def test_credentials_for_a_tool_the_server_lacks_are_refused() -> None:
    env = {"MCP_CALLS": ""}
    with pytest.raises(DefinitionError, match=r"has no tool\(s\) \['nope'\] named in credentials="):
        async with MCPToolset.stdio(sys.executable, SERVER, "stdio", env=env, credentials={"nope": {"a": "b"}}):
            pass


async def test_a_server_address_with_a_password_never_shows_it() -> None:
    port = free_port()  # nothing listens there
    with pytest.raises(AgentError) as caught:
        async with MCPToolset.http(f"http://ops:hunter2hunter2@127.0.0.1:{port}/mcp", connect_timeout=10):
            pass
    assert f"MCP server http://127.0.0.1:{port}/mcp: could not connect" in str(caught.value)
    assert "hunter2" not in str(caught.value) and caught.value.__cause__ is None
