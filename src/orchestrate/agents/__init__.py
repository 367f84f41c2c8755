"""Agents: a model with a role, typed tools, scoped credentials and a step limit; supervisors."""

from __future__ import annotations

from orchestrate.agents.agent import Agent, AgentBudget, AgentResult, AgentStep, Approver, ToolCall, args_hash
from orchestrate.agents.approval import review_approver
from orchestrate.agents.supervisor import Delegation, Supervisor
from orchestrate.agents.tools import Tool, ToolArgumentError, tool
from orchestrate.models.secrets import Redactor, Secret

__all__ = [
    "Agent",
    "AgentBudget",
    "AgentResult",
    "AgentStep",
    "Approver",
    "Delegation",
    "Redactor",
    "Secret",
    "Supervisor",
    "Tool",
    "ToolArgumentError",
    "ToolCall",
    "args_hash",
    "review_approver",
    "tool",
]
