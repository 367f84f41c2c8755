"""A small MCP server for the tests: ``python mcp_server.py stdio`` or ``python mcp_server.py http PORT``.

Every call that runs appends a JSON line to ``$MCP_CALLS`` (when set), so a test can count
what really executed on the server side.
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Annotated

from mcp.server.mcpserver import MCPServer
from pydantic import Field

server = MCPServer("orders")


def _log(tool: str, **args: object) -> None:
    path = os.environ.get("MCP_CALLS")
    if path:
        with open(path, "a", encoding="utf-8") as out:
            out.write(json.dumps({"tool": tool, "args": args}) + "\n")


@server.tool()
def lookup_order(order_id: Annotated[str, Field(pattern=r"^[A-Z]-\d+$")]) -> dict:
    """Look up an order by its id."""
    _log("lookup_order", order_id=order_id)
    return {"order_id": order_id, "status": "packed"}


@server.tool()
def delete_order(order_id: str, idempotency_key: str) -> str:
    """Delete an order for good."""
    _log("delete_order", order_id=order_id, idempotency_key=idempotency_key)
    return f"deleted {order_id}"


@server.tool()
def crm_search(query: str, api_key: str) -> str:
    """Search the CRM (needs the CRM key)."""
    _log("crm_search", query=query)
    if api_key != os.environ.get("CRM_KEY"):
        raise ValueError("wrong CRM key")
    return f"1 customer matches {query!r} (searched with key {api_key})"


@server.tool()
def slow(seconds: float) -> str:
    """Take a while."""
    _log("slow", seconds=seconds)
    time.sleep(seconds)
    return "finally"


if __name__ == "__main__":
    if sys.argv[1] == "stdio":
        server.run()
    else:
        server.run("streamable-http", host="127.0.0.1", port=int(sys.argv[2]))
