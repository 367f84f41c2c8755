"""An agent: a model with a role, typed tools, its own credentials and a step limit.

The agent talks to its model in a small JSON protocol that any model can follow (no
provider-specific tool calling needed)::

    {"tool": "lookup_order", "args": {"order_id": "A-17"}}   # call a tool
    {"final": "Your order A-17 ships tomorrow."}              # answer

Each model turn is a step; ``max_steps`` bounds them, so an agent cannot loop forever
(:class:`~orchestrate.errors.AgentError`). Malformed turns, unknown tools, bad arguments
and tool errors are fed back to the model as messages, and count as steps.

Secrets: the agent holds only the credentials it is given, passes each tool only those
the tool declares, and scrubs every secret value from what the model sees, from the
transcript it returns (which a step records), from its logs and from its errors.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from orchestrate.agents.tools import Tool, ToolArgumentError, tool
from orchestrate.errors import AgentError, DefinitionError
from orchestrate.models.base import Message, Model, ModelSettings, Usage
from orchestrate.models.secrets import Redactor, Secret
from orchestrate.models.validation import OutputRejected, Validator
from orchestrate.observe.logging import get_logger

log = get_logger()


@dataclass(frozen=True)
class ToolCall:
    """A tool call the model asked for (arguments already redacted for display)."""

    agent: str
    tool: str
    args: Mapping[str, Any]


Approver = Callable[[ToolCall], "bool | Mapping[str, Any] | Awaitable[bool | Mapping[str, Any]]"]
"""Decides on a call of a tool that requires approval: ``True``/``{"approved": True}`` allows it."""


@dataclass(frozen=True)
class AgentStep:
    """One model turn and what came of it (JSON-friendly, secrets redacted)."""

    index: int
    kind: str  # "tool", "final", "invalid", "refused"
    tool: str | None = None
    args: Mapping[str, Any] | None = None
    result: Any = None
    error: str | None = None


@dataclass(frozen=True)
class AgentResult:
    """What an agent produced.

    Attributes:
        agent: the agent's name.
        output: the final answer.
        steps: every step, in order.
        usage: tokens over all model calls.
        transcript: the conversation as the model saw it (redacted).
    """

    agent: str
    output: Any
    steps: Sequence[AgentStep]
    usage: Usage = field(default_factory=Usage)
    transcript: Sequence[Mapping[str, str]] = ()


def _turn_rule(value: Any) -> str | None:
    if not isinstance(value, dict):
        return 'the answer must be a JSON object: {"tool": ..., "args": {...}} or {"final": ...}'
    if "final" in value:
        return None
    if not isinstance(value.get("tool"), str):
        return 'the object needs a "tool" name (with "args") or a "final" answer'
    if not isinstance(value.get("args", {}), dict):
        return '"args" must be a JSON object'
    return None


_TURN = Validator(rules=[_turn_rule])


class Agent:
    """A model with a role, tools and a step limit.

    Args:
        name: the agent's name (in logs and results).
        role: what it is for, in a sentence or two (the start of its system prompt).
        model: the model it thinks with.
        tools: its tools (functions are wrapped with :func:`~orchestrate.agents.tools.tool`).
        max_steps: most model turns per run.
        credentials: its own secrets, by name; a tool gets only those it declares.
        approve: decides on calls of tools marked ``requires_approval``; without it such
            calls are refused (and the refusal is fed back to the model).
        settings: generation settings for its model.
        max_result_chars: tool results are cut to this many characters for the model.
    """

    def __init__(
        self,
        name: str,
        *,
        role: str,
        model: Model,
        tools: Iterable[Tool | Callable[..., Any]] = (),
        max_steps: int = 8,
        credentials: Mapping[str, Secret | str] | None = None,
        approve: Approver | None = None,
        settings: ModelSettings | None = None,
        max_result_chars: int = 4_000,
    ) -> None:
        if max_steps < 1:
            raise DefinitionError(f"agent {name!r}: max_steps must be >= 1")
        self.name = name
        self.role = role
        self.model = model
        self.tools: dict[str, Tool] = {}
        for item in tools:
            built = item if isinstance(item, Tool) else tool(item)
            if built.name in self.tools:
                raise DefinitionError(f"agent {name!r}: two tools are named {built.name!r}")
            self.tools[built.name] = built
        self._credentials: dict[str, Secret] = {
            key: value if isinstance(value, Secret) else Secret(value, name=key)
            for key, value in (credentials or {}).items()
        }
        for built in self.tools.values():
            missing = [c for c in built.credentials if c not in self._credentials]
            if missing:
                raise DefinitionError(
                    f"agent {name!r}: tool {built.name!r} needs credential(s) {missing} that this agent does not hold"
                )
        self.redactor = Redactor(self._credentials.values())
        self.max_steps = max_steps
        self.approve = approve
        self.settings = settings or ModelSettings(temperature=0.0)
        self.max_result_chars = max_result_chars

    @property
    def credential_names(self) -> list[str]:
        """Names of the credentials this agent holds (never their values)."""
        return sorted(self._credentials)

    def system_prompt(self) -> str:
        """The instructions the model gets."""
        lines = [f"You are {self.name}. {self.role.strip()}", ""]
        if self.tools:
            lines.append("You can call these tools:")
            for item in self.tools.values():
                approval = " [a person must approve each call]" if item.requires_approval else ""
                lines.append(f"- {item.signature_line()}: {item.description}{approval}")
            lines.append("")
        lines.append("Reply with exactly one JSON object and nothing else:")
        if self.tools:
            lines.append('{"tool": "<tool name>", "args": {<arguments>}} to call a tool, or')
        lines.append('{"final": <your answer>} when you are done.')
        return self.redactor.text("\n".join(lines))

    async def run(self, task: str, *, context: Mapping[str, Any] | None = None) -> AgentResult:
        """Work on ``task`` until a final answer or the step limit.

        Raises:
            AgentError: the step limit was reached without a final answer (the message
                and everything attached to it are redacted).
        """
        prompt = task if not context else f"{task}\n\nContext: {json.dumps(context, default=str)}"
        messages = [Message.system(self.system_prompt()), Message.user(self.redactor.text(prompt))]
        steps: list[AgentStep] = []
        usage = Usage()
        for index in range(1, self.max_steps + 1):
            result = await self.model.chat(messages, settings=self.settings)
            usage = usage + result.usage
            reply = self.redactor.text(result.text)
            messages.append(Message.assistant(reply))
            try:
                turn = _TURN.check(result.text)
            except OutputRejected as exc:
                steps.append(AgentStep(index, "invalid", error=exc.message))
                messages.append(Message.user(f"Invalid reply: {exc.message}. Reply with one JSON object."))
                continue
            if "final" in turn:
                output = self.redactor.data(turn["final"])
                steps.append(AgentStep(index, "final", result=output))
                log.info("agent_finished", agent=self.name, steps=index)
                return AgentResult(self.name, output, steps, usage, [m.to_dict() for m in messages])
            step, feedback = await self._tool_step(index, turn["tool"], turn.get("args", {}))
            steps.append(step)
            messages.append(Message.user(feedback))
        log.warning("agent_step_limit", agent=self.name, max_steps=self.max_steps)
        last = steps[-1] if steps else None
        detail = f"; last step: {last.kind} {last.tool or ''} {last.error or ''}".rstrip() if last else ""
        error = AgentError(
            self.redactor.text(
                f"agent {self.name!r} reached its step limit of {self.max_steps} without a final answer{detail}"
            )
        )
        raise error

    async def _tool_step(self, index: int, name: str, args: Any) -> tuple[AgentStep, str]:
        shown_args = self.redactor.data(args) if isinstance(args, dict) else {}
        selected = self.tools.get(name)
        if selected is None:
            message = f"there is no tool named {name!r}; the tools are {sorted(self.tools)}"
            return AgentStep(index, "invalid", name, shown_args, error=message), f"Error: {message}"
        try:
            checked = selected.check_args(args)
        except ToolArgumentError as exc:
            message = self.redactor.text(str(exc))
            return AgentStep(index, "invalid", name, shown_args, error=message), f"Error: {message}"
        call = ToolCall(self.name, name, shown_args)
        if selected.requires_approval and not await self._approved(call):
            message = f"the call of {name} was not approved by a person; do not retry it"
            log.warning("agent_tool_refused", agent=self.name, tool=name)
            return AgentStep(index, "refused", name, shown_args, error=message), f"Error: {message}"
        kwargs = {**checked, **{c: self._credentials[c] for c in selected.credentials}}
        log.info("agent_tool_call", agent=self.name, tool=name, args=shown_args)
        try:
            value = selected.fn(**kwargs)
            if inspect.isawaitable(value):
                value = await value
        except Exception as exc:  # noqa: BLE001 - a tool's failure is reported to the model
            message = self.redactor.error(exc)
            log.warning("agent_tool_failed", agent=self.name, tool=name, error=message)
            return AgentStep(index, "tool", name, shown_args, error=message), f"Tool {name} failed: {message}"
        shown = self.redactor.data(_jsonable(value))
        text = shown if isinstance(shown, str) else json.dumps(shown, default=str)
        if len(text) > self.max_result_chars:
            text = text[: self.max_result_chars] + " [truncated]"
        return AgentStep(index, "tool", name, shown_args, result=shown), f"Tool {name} returned: {text}"

    async def _approved(self, call: ToolCall) -> bool:
        if self.approve is None:
            return False
        decision = self.approve(call)
        if inspect.isawaitable(decision):
            decision = await decision
        if isinstance(decision, Mapping):
            return bool(decision.get("approved", False))
        return bool(decision)

    def __repr__(self) -> str:
        return f"Agent({self.name!r}, tools={sorted(self.tools)}, credentials={self.credential_names})"


def _jsonable(value: Any) -> Any:
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, Secret):
        return value
    dump = getattr(value, "model_dump", None)
    if callable(dump):
        return _jsonable(dump(mode="json"))
    return str(value)
