"""Agents: a model with a role, typed tools, scoped credentials and a step limit; supervisors;
tools from MCP servers; streaming steps."""

from __future__ import annotations

from orchestrate.agents.agent import Agent, AgentBudget, AgentResult, AgentStep, Approver, ToolCall, args_hash
from orchestrate.agents.approval import review_approver
from orchestrate.agents.context import ContextWindow, SharedContext
from orchestrate.agents.mcp import MCPToolError, MCPToolset
from orchestrate.agents.streaming import StreamEvents, stream_step
from orchestrate.agents.supervisor import Delegated, Delegation, SubTaskOutcome, Supervisor
from orchestrate.agents.tools import Tool, ToolArgumentError, tool
from orchestrate.models.secrets import Redactor, Secret

__all__ = [
    "Agent",
    "AgentBudget",
    "AgentResult",
    "AgentStep",
    "Approver",
    "ContextWindow",
    "Delegated",
    "Delegation",
    "MCPToolError",
    "MCPToolset",
    "Redactor",
    "Secret",
    "SharedContext",
    "StreamEvents",
    "SubTaskOutcome",
    "Supervisor",
    "Tool",
    "ToolArgumentError",
    "ToolCall",
    "args_hash",
    "review_approver",
    "stream_step",
    "tool",
]
