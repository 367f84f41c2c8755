"""Tools from Model Context Protocol servers, through the official ``mcp`` package.

An :class:`MCPToolset` connects to one MCP server — a command it starts and talks to over
stdio, or a streamable HTTP endpoint — lists its tools and hands them to an agent as
ordinary :class:`~orchestrate.agents.tools.Tool` s. They then follow the same rules as
local tools::

    async with MCPToolset.stdio(
        "python", "files_server.py",
        requires_approval={"delete_file"},           # a person approves each call
        credentials={"search": {"api_key": "crm_api_key"}},  # filled from the agent's secrets
        timeout=20,
    ) as files:
        agent = Agent("clerk", role="...", model=model, tools=files.tools(), credentials={"crm_api_key": key})
        await agent.run("...", ctx=ctx)

* **approval**: tools named in ``requires_approval`` (or all, with ``True``) are gated:
  each call needs a recorded approval for its exact arguments;
* **credentials**: an argument mapped to one of the agent's credentials disappears from
  the schema the model sees, and the agent fills it with the secret's value at call
  time, only for that tool;
* **timeouts**: ``timeout`` bounds each call (the agent reports a call that runs out
  as failed), and the MCP request itself times out with it;
* **redaction**: results and errors pass through the agent's redactor like any tool's;
* **arguments** are checked against the tool's JSON schema (``jsonschema``) before a
  call leaves; a bad call is fed back to the model and never reaches the server;
* **durability**: inside a run, each call is a step of the run like any tool call; a
  resumed run reconnects (listing tools again) but does not repeat recorded calls. An
  MCP tool that takes an ``idempotency_key`` argument receives the step's key.

The session is opened by ``async with`` in the task that uses the tools, and closed
when the block ends (the stdio server process with it).
"""

from __future__ import annotations

import asyncio
import json
import urllib.parse
from collections.abc import Iterable, Mapping
from contextlib import AsyncExitStack
from typing import Any

from orchestrate import _redact
from orchestrate.agents.tools import IDEMPOTENCY_PARAM, Tool, ToolArgumentError
from orchestrate.errors import AgentError, DefinitionError
from orchestrate.models.secrets import Secret, reveal


class MCPToolError(Exception):
    """An MCP tool reported a failure (its result had ``isError``); the message is its text."""


class MCPToolset:
    """The tools of one MCP server, as agent tools (use it with ``async with``).

    Prefer the :meth:`stdio` and :meth:`http` constructors.

    Args:
        command: the server's executable (stdio).
        args: its arguments (stdio).
        env: extra environment variables for it (stdio); values may be secrets.
        cwd: its working directory (stdio).
        url: the streamable HTTP endpoint (``http://127.0.0.1:8000/mcp``).
        headers: HTTP headers (``Authorization``...); values may be secrets, which are
            revealed only to the HTTP client.
        requires_approval: names of the tools a person must approve, or ``True`` for all.
        credentials: ``{tool: {argument: credential name}}``: arguments the agent fills
            from its own credentials (hidden from the model).
        include: only these tools (default: all the server lists).
        prefix: put before each tool's name (to tell two servers' tools apart).
        timeout: seconds one call may take.
        connect_timeout: seconds to connect and list the tools.
    """

    def __init__(
        self,
        *,
        command: str | None = None,
        args: Iterable[str] = (),
        env: Mapping[str, str | Secret] | None = None,
        cwd: str | None = None,
        url: str | None = None,
        headers: Mapping[str, str | Secret] | None = None,
        requires_approval: Iterable[str] | bool = (),
        credentials: Mapping[str, Mapping[str, str]] | None = None,
        include: Iterable[str] | None = None,
        prefix: str = "",
        timeout: float = 60.0,
        connect_timeout: float = 30.0,
    ) -> None:
        if (command is None) == (url is None):
            raise DefinitionError("an MCPToolset needs either command= (stdio) or url= (streamable HTTP)")
        for label, seconds in (("timeout", timeout), ("connect_timeout", connect_timeout)):
            if not seconds > 0:
                raise DefinitionError(f"MCPToolset {label} must be > 0 seconds, got {seconds!r}")
        self.command = command
        self.args = list(args)
        self._env = dict(env or {})
        self.cwd = cwd
        self.url = url
        self._headers = dict(headers or {})
        self._gated: bool | frozenset[str] = (
            requires_approval if isinstance(requires_approval, bool) else frozenset(requires_approval)
        )
        self.credentials = {tool: dict(mapping) for tool, mapping in (credentials or {}).items()}
        self.include = None if include is None else frozenset(include)
        self.prefix = prefix
        self.timeout = float(timeout)
        self.connect_timeout = float(connect_timeout)
        self._stack: AsyncExitStack | None = None
        self._client: Any = None
        self._tools: list[Tool] = []

    @classmethod
    def stdio(
        cls,
        command: str,
        *args: str,
        env: Mapping[str, str | Secret] | None = None,
        cwd: str | None = None,
        **options: Any,
    ) -> MCPToolset:
        """A server started as ``command *args``, spoken to over its stdin and stdout."""
        return cls(command=command, args=args, env=env, cwd=cwd, **options)

    @classmethod
    def http(cls, url: str, *, headers: Mapping[str, str | Secret] | None = None, **options: Any) -> MCPToolset:
        """A server at a streamable HTTP endpoint."""
        return cls(url=url, headers=headers, **options)

    @property
    def label(self) -> str:
        """The server, as errors name it (never its secrets)."""
        if self.url is not None:
            parts = urllib.parse.urlsplit(self.url)
            host = parts.netloc.rpartition("@")[2]  # never a user:password in the address
            return urllib.parse.urlunsplit((parts.scheme, host, parts.path, "", ""))
        return " ".join([str(self.command), *self.args])

    async def __aenter__(self) -> MCPToolset:
        import mcp

        stack = AsyncExitStack()
        try:
            async with asyncio.timeout(self.connect_timeout):  # not an anyio scope: the session outlives it
                client = await stack.enter_async_context(
                    mcp.Client(self._target(stack), read_timeout_seconds=self.timeout)
                )
                listed = await self._list(client)
        except BaseException as exc:
            await stack.aclose()
            if isinstance(exc, Exception):
                detail = _redact.redact(str(exc).replace(self.url, self.label) if self.url else str(exc))
                raise AgentError(
                    f"MCP server {self.label}: could not connect and list its tools: {type(exc).__name__}: {detail}"
                ) from None
            raise
        self._stack, self._client = stack, client
        self._tools = [self._tool(item) for item in listed]
        missing = sorted(set(self.credentials) - {item.name for item in listed})
        if missing:
            await self.__aexit__(None, None, None)
            raise DefinitionError(f"MCP server {self.label} has no tool(s) {missing} named in credentials=")
        return self

    async def __aexit__(self, *exc: object) -> None:
        stack, self._stack, self._client = self._stack, None, None
        if stack is not None:
            await stack.aclose()

    def tools(self) -> list[Tool]:
        """The server's tools (after ``async with``)."""
        if self._client is None:
            raise AgentError(f"MCP server {self.label}: use the toolset inside 'async with' before asking its tools")
        return list(self._tools)

    # internals --------------------------------------------------------------------------
    def _target(self, stack: AsyncExitStack) -> Any:
        from mcp import StdioServerParameters

        if self.command is not None:
            env = {key: reveal(value) or "" for key, value in self._env.items()}
            return StdioServerParameters(command=self.command, args=self.args, env=env or None, cwd=self.cwd)
        assert self.url is not None
        if not self._headers:
            return self.url
        import httpx2
        from mcp.client.streamable_http import streamable_http_client

        headers = {key: reveal(value) or "" for key, value in self._headers.items()}
        http = httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(self.timeout, read=None))
        stack.push_async_callback(http.aclose)
        return streamable_http_client(self.url, http_client=http)

    async def _list(self, client: Any) -> list[Any]:
        tools: list[Any] = []
        cursor: str | None = None
        while True:
            page = await client.list_tools(cursor=cursor)
            tools += [t for t in page.tools if self.include is None or t.name in self.include]
            cursor = page.next_cursor
            if not cursor:
                return tools

    def _tool(self, listed: Any) -> Tool:
        name = f"{self.prefix}{listed.name}"
        if not name.isidentifier():
            raise DefinitionError(f"MCP server {self.label}: tool name {name!r} is not usable (not an identifier)")
        schema = dict(listed.input_schema or {"type": "object", "properties": {}})
        secret_args = self.credentials.get(listed.name, {})
        hidden = set(secret_args) | (
            {IDEMPOTENCY_PARAM} if IDEMPOTENCY_PARAM in schema.get("properties", {}) else set()
        )
        unknown = sorted(set(secret_args) - set(schema.get("properties", {})))
        if unknown:
            raise DefinitionError(f"MCP tool {listed.name!r} has no argument(s) {unknown} for its credentials")
        shown = _without(schema, hidden)
        gated = self._gated if isinstance(self._gated, bool) else listed.name in self._gated
        remote, timeout = listed.name, self.timeout
        # A server wraps a result that is not an object as {"result": ...} (its output
        # schema says so); the tool returns the value itself, as a local tool would.
        output = listed.output_schema or {}
        wrapped = set(output.get("properties", {})) == {"result"} and output.get("required") == ["result"]

        async def call(**kwargs: Any) -> Any:
            arguments = {k: v for k, v in kwargs.items() if k not in secret_args.values()}
            for argument, credential in secret_args.items():
                arguments[argument] = reveal(kwargs[credential])
            if self._client is None:
                raise AgentError(f"MCP server {self.label} is closed; call its tools inside 'async with'")
            result = await self._client.call_tool(remote, arguments, read_timeout_seconds=timeout)
            return _value(result, wrapped=wrapped)

        call.__name__ = name
        return Tool(
            name=name,
            fn=call,
            description=(listed.description or listed.title or listed.name).strip(),
            parameters=shown,
            requires_approval=gated,
            credentials=tuple(dict.fromkeys(secret_args.values())),
            wants_idempotency_key=IDEMPOTENCY_PARAM in hidden,
            timeout=timeout,
            _schema_check=_checker(name, shown),
        )


def _without(schema: Mapping[str, Any], hidden: set[str]) -> dict[str, Any]:
    """The schema without the arguments the agent fills itself."""
    out = dict(schema)
    out["properties"] = {k: v for k, v in dict(schema.get("properties", {})).items() if k not in hidden}
    if "required" in schema:
        out["required"] = [r for r in schema["required"] if r not in hidden]
    out.setdefault("type", "object")
    return out


def _checker(name: str, schema: Mapping[str, Any]) -> Any:
    import jsonschema

    validator_class = jsonschema.validators.validator_for(schema)
    validator = validator_class(schema)

    def check(arguments: Mapping[str, Any]) -> None:
        problems = sorted(validator.iter_errors(dict(arguments)), key=lambda e: list(e.absolute_path))
        if problems:
            described = [
                f"{name}.{'.'.join(str(p) for p in e.absolute_path) or '(arguments)'}: {e.message}"
                for e in problems[:5]
            ]
            raise ToolArgumentError("; ".join(described))

    return check


def _value(result: Any, *, wrapped: bool) -> Any:
    """What a tool call returned: structured content, else its text (other blocks named)."""
    parts: list[str] = []
    for block in result.content or ():
        kind = getattr(block, "type", None)
        if kind == "text":
            parts.append(block.text)
        elif kind == "resource" and hasattr(getattr(block, "resource", None), "text"):
            parts.append(block.resource.text)
        else:
            parts.append(f"[{kind} content]")
    text = "\n".join(parts)
    if result.is_error:
        raise MCPToolError(text or "the tool failed")
    structured = result.structured_content
    if structured is not None:
        return (
            structured["result"] if wrapped and isinstance(structured, dict) and "result" in structured else structured
        )
    try:
        parsed = json.loads(text)
    except ValueError:
        return text
    return parsed if isinstance(parsed, dict | list) else text
