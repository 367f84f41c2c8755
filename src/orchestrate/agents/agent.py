"""An agent: a model with a role, typed tools, its own credentials, a step limit and a budget.

Tool calls reach the model in one of two ways:

* **native** tool calling, for providers that have it (OpenAI-compatible servers,
  Anthropic, Ollama): the tools' JSON schemas go in the request and the model answers
  with tool calls, several at once if it likes;
* a small **JSON protocol** that any model can follow, for base models such as Gemma
  270M and scripted test models::

    {"tool": "lookup_order", "args": {"order_id": "A-17"}}   # call a tool
    {"final": "Your order A-17 ships tomorrow."}              # answer

**Durable.** Given the run's context (``await agent.run(task, ctx=ctx)`` in a durable
function), every model turn and every tool call is a step of the run, keyed
``agent:<name>:turn:<n>`` and ``agent:<name>:tool:<n>:<i>`` (approvals
``agent:<name>:approval:<n>:<i>``). After a crash the agent resumes at the turn that was
interrupted: earlier turns come back from the store (no token paid twice), earlier tool
calls are not made again, and each tool receives its step's idempotency key. Token and
cost budgets are checked before each call against the usage recorded so far, so they
hold across restarts. Without ``ctx`` the same loop runs in memory.

Each model turn counts against ``max_steps``, so an agent cannot loop forever
(:class:`~orchestrate.errors.AgentError`). Malformed turns, unknown tools, bad arguments,
refusals and tool errors are fed back to the model.

Secrets: the agent holds only the credentials it is given, passes each tool only those
the tool declares, and scrubs every secret value from what the model sees, from what
the steps record, from the transcript it returns, from its logs and from its errors.
"""

from __future__ import annotations

import asyncio
import contextvars
import hashlib
import inspect
import json
import math
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from orchestrate.agents.context import ContextWindow
from orchestrate.agents.streaming import EventSink, StreamEvents, TextHandler, sink_for, stream_into
from orchestrate.agents.tools import Tool, ToolArgumentError, tool
from orchestrate.errors import AgentError, BudgetExceededError, DefinitionError
from orchestrate.models.base import (
    Message,
    Model,
    ModelRequest,
    ModelSettings,
    ToolUse,
    Usage,
    observed_request,
    supports_tools,
)
from orchestrate.models.secrets import Redactor, Secret, StreamRedactor
from orchestrate.models.tokens import message_tokens, tokenizer_of
from orchestrate.models.validation import OutputRejected, Validator
from orchestrate.observe.logging import get_logger

if TYPE_CHECKING:
    from orchestrate import RunContext, StepContext
    from orchestrate.models.router import PriceTable

log = get_logger()

ToolProtocol = Literal["auto", "native", "json"]


@dataclass(frozen=True)
class ToolCall:
    """A tool call the model asked for, as an approver sees it.

    Attributes:
        agent: the agent's name.
        tool: the tool's name.
        args: the arguments (secrets redacted).
        args_hash: SHA-256 of the tool's name and arguments in canonical JSON: an
            approval holds for this exact call and no other.
        key: the call's step key in the run (``agent:<name>:tool:<n>:<i>``).
    """

    agent: str
    tool: str
    args: Mapping[str, Any]
    args_hash: str = ""
    key: str | None = None


Approver = Callable[[ToolCall], "bool | Mapping[str, Any] | Awaitable[bool | Mapping[str, Any]]"]
"""Decides on a call of a tool that requires approval: ``True``/``{"approved": True}`` allows it."""


@dataclass(frozen=True)
class AgentStep:
    """One model turn or tool call and what came of it (JSON-friendly, secrets redacted).

    Attributes:
        index: the model turn (1-based) it belongs to.
        kind: ``tool`` (a call made), ``final`` (the answer), ``invalid`` (a malformed
            turn, an unknown tool or bad arguments) or ``refused`` (no approval).
        tool: the tool called.
        args: its arguments.
        result: what the tool returned, or the final answer.
        error: what went wrong.
        call: the call's position among the turn's tool calls.
        args_hash: see :attr:`ToolCall.args_hash` (tool calls only).
    """

    index: int
    kind: str  # "tool", "final", "invalid", "refused"
    tool: str | None = None
    args: Mapping[str, Any] | None = None
    result: Any = None
    error: str | None = None
    call: int = 0
    args_hash: str | None = None


@dataclass(frozen=True)
class AgentResult:
    """What an agent produced.

    Attributes:
        agent: the agent's name.
        output: the final answer.
        steps: every step, in order.
        usage: tokens over all model calls.
        transcript: the conversation as the model saw it (redacted).
        cost: the cost of its model calls (from the results' ``cost`` or the budget's
            price table; 0 when neither prices them).
        turns: model turns taken.
    """

    agent: str
    output: Any
    steps: Sequence[AgentStep]
    usage: Usage = field(default_factory=Usage)
    transcript: Sequence[Mapping[str, Any]] = ()
    cost: float = 0.0
    turns: int = 0


@dataclass(frozen=True)
class AgentBudget:
    """Caps on what one run of an agent may spend, checked *before* each model call.

    The check adds the coming request's input tokens to what the recorded turns spent,
    so a run stops before the call that would cross the cap instead of after it; in a
    durable run the recorded turns survive restarts, and so does the count. The coming
    request is counted with the model's own tokenizer where it has one, else from the
    provider's count of the last request (its recorded usage) plus an estimate of the
    messages added since (see :mod:`orchestrate.models.tokens`).

    Args:
        max_tokens: most input plus output tokens over all turns.
        max_cost: most cost over all turns, in the price table's currency.
        prices: prices the turns' usage (results that already carry a ``cost``, from a
            router or an accounted model, keep theirs).
    """

    max_tokens: int | None = None
    max_cost: float | None = None
    prices: PriceTable | None = None

    def __post_init__(self) -> None:
        if self.max_tokens is not None and (isinstance(self.max_tokens, bool) or self.max_tokens < 1):
            raise DefinitionError(f"AgentBudget.max_tokens must be an int >= 1, got {self.max_tokens!r}")
        if self.max_cost is not None and not (self.max_cost >= 0 and math.isfinite(self.max_cost)):
            raise DefinitionError(f"AgentBudget.max_cost must be a finite number >= 0, got {self.max_cost!r}")

    def cost_of(self, model_id: str, usage: Usage) -> float:
        """The price of ``usage`` on ``model_id`` (0 without a price table or a price)."""
        if self.prices is None or model_id not in self.prices:
            return 0.0
        return self.prices.cost(model_id, usage)

    def check(self, *, used: Usage, cost: float, model_id: str, next_input_tokens: int) -> str | None:
        """Why the next call may not be made, or ``None`` when it may."""
        if self.max_tokens is not None and used.total_tokens + next_input_tokens > self.max_tokens:
            return (
                f"{used.total_tokens} tokens spent and the next request needs about {next_input_tokens}: "
                f"over the budget of {self.max_tokens}"
            )
        if self.max_cost is not None:
            coming = self.cost_of(model_id, Usage(next_input_tokens, 0))
            if cost + coming > self.max_cost:
                return (
                    f"{cost:.6f} spent and the next request costs about {coming:.6f}: "
                    f"over the budget of {self.max_cost:g}"
                )
        return None


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


def args_hash(tool_name: str, args: Any) -> str:
    """The hash an approval is bound to: the tool's name and its arguments, canonical JSON."""
    blob = json.dumps([tool_name, args], sort_keys=True, separators=(",", ":"), ensure_ascii=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


@dataclass
class _Live:
    """One run of an agent: the conversation so far and the calls of the current turn.

    Steps read it through :data:`_LIVE`; nothing in it is recorded, all of it is rebuilt
    from the recorded turns on a replay.
    """

    messages: list[Message]
    native: bool
    run_key: str
    pending: dict[tuple[int, int], tuple[Tool, dict[str, Any], ToolCall]] = field(default_factory=dict)
    approved: dict[tuple[int, int], str] = field(default_factory=dict)
    run: RunContext | None = None
    on_text: TextHandler | None = None
    # (tokens, messages): the provider's count of the conversation's first ``messages``
    # messages, from the last turn's usage (its prompt plus its answer).
    known: tuple[int, int] | None = None
    scope: str | None = None  # in step keys, after the agent's name: one run among several


_LIVE: contextvars.ContextVar[_Live | None] = contextvars.ContextVar("orchestrate_agent_run", default=None)


def _live() -> _Live:
    live = _LIVE.get()
    if live is None:  # pragma: no cover - steps are only ever called by Agent.run
        raise AgentError("an agent step ran outside its agent's run")
    return live


class Agent:
    """A model with a role, tools, a step limit and an optional budget.

    Args:
        name: the agent's name (in logs, step keys and results).
        role: what it is for, in a sentence or two (the start of its system prompt).
        model: the model it thinks with.
        tools: its tools (functions are wrapped with :func:`~orchestrate.agents.tools.tool`).
        max_steps: most model turns per run.
        credentials: its own secrets, by name; a tool gets only those it declares.
        approve: decides on calls of tools marked ``requires_approval``; without it such
            calls are refused (and the refusal is fed back to the model).
        settings: generation settings for its model.
        max_result_chars: tool results are cut to this many characters for the model.
        tool_protocol: ``native`` tool calling, the ``json`` protocol, or ``auto``
            (native where the model supports it).
        budget: token and cost caps per run.
        model_timeout: seconds one model turn may take.
        tool_timeout: seconds one tool call may take (a tool's own ``timeout`` wins);
            a call that runs out is reported to the model as failed.
        retry: retries of a failed model turn, as a durable step's ``retry=`` (durable
            runs only).
        first_token_timeout: seconds until a streamed turn's first token (turns stream
            when :meth:`run` is given ``on_text``, or when a timeout on tokens is set).
        idle_timeout: seconds between two tokens of a streamed turn.
        stream_events: how a streamed turn's text is coalesced into the run's
            ``model_stream`` events (durable runs); ``None`` writes none.
        context_window: keeps each request under its token limit by summarising the
            older turns (a durable step ``agent:<name>:summary:<n>`` in a run).
        summariser: the model that writes those summaries (default: ``model``).
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
        tool_protocol: ToolProtocol = "auto",
        budget: AgentBudget | None = None,
        model_timeout: float | None = None,
        tool_timeout: float | None = 60.0,
        retry: Any = None,
        first_token_timeout: float | None = None,
        idle_timeout: float | None = None,
        stream_events: StreamEvents | None = StreamEvents(),  # noqa: B008 - frozen, shared safely
        context_window: ContextWindow | None = None,
        summariser: Model | None = None,
    ) -> None:
        if max_steps < 1:
            raise DefinitionError(f"agent {name!r}: max_steps must be >= 1")
        if not isinstance(name, str) or not name or ":" in name:
            raise DefinitionError(f"an agent needs a name without ':' (it is part of step keys), got {name!r}")
        if tool_protocol not in ("auto", "native", "json"):
            raise DefinitionError(f"agent {name!r}: tool_protocol must be 'auto', 'native' or 'json'")
        for label, seconds in (
            ("model_timeout", model_timeout),
            ("tool_timeout", tool_timeout),
            ("first_token_timeout", first_token_timeout),
            ("idle_timeout", idle_timeout),
        ):
            if seconds is not None and not seconds > 0:
                raise DefinitionError(f"agent {name!r}: {label} must be > 0 seconds, got {seconds!r}")
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
        self.tool_protocol: ToolProtocol = tool_protocol
        self.budget = budget
        self.model_timeout = model_timeout
        self.tool_timeout = tool_timeout
        self.retry = retry
        self.first_token_timeout = first_token_timeout
        self.idle_timeout = idle_timeout
        self.stream_events = stream_events
        self.context_window = context_window
        self.summariser = summariser

    @property
    def credential_names(self) -> list[str]:
        """Names of the credentials this agent holds (never their values)."""
        return sorted(self._credentials)

    @property
    def native(self) -> bool:
        """Whether this agent uses its model's native tool calling."""
        if self.tool_protocol == "auto":
            return bool(self.tools) and supports_tools(self.model)
        return self.tool_protocol == "native"

    def system_prompt(self) -> str:
        """The instructions the model gets."""
        lines = [f"You are {self.name}. {self.role.strip()}", ""]
        if self.native:
            gated = [t.name for t in self.tools.values() if t.requires_approval]
            if gated:
                lines.append(f"A person must approve each call of: {', '.join(gated)}.")
            lines.append("Call the tools you need; answer in plain text when you are done.")
            return self.redactor.text("\n".join(lines).strip())
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

    # the loop ------------------------------------------------------------------------------
    async def run(
        self,
        task: str,
        *,
        context: Mapping[str, Any] | None = None,
        ctx: RunContext | None = None,
        on_text: TextHandler | None = None,
        scope: str | None = None,
    ) -> AgentResult:
        """Work on ``task`` until a final answer or the step limit.

        Args:
            task: what to do.
            context: facts to add to the task (as JSON).
            ctx: the run's context, in a durable function: each turn and each tool call
                becomes a durable step of that run.
            on_text: receives the model's text as it streams (every turn streams; a
                turn replayed from the store does not call it again).
            scope: tells this run of the agent apart from its other runs in the same
                workflow run: its step keys read ``agent:<name>@<scope>:...``.

        Raises:
            AgentError: the step limit was reached without a final answer (the message
                and everything attached to it are redacted).
            BudgetExceededError: the next model call would cross the agent's budget.
        """
        if scope is not None and (not isinstance(scope, str) or not scope or ":" in scope):
            raise DefinitionError(f"agent {self.name!r}: a scope is a non-empty string without ':', got {scope!r}")
        prompt = task if not context else f"{task}\n\nContext: {json.dumps(context, default=str)}"
        live = _Live(
            [Message.system(self.system_prompt()), Message.user(self.redactor.text(prompt))],
            self.native,
            ctx.run_id if ctx is not None else uuid.uuid4().hex,
            run=ctx,
            on_text=on_text,
            scope=scope,
        )
        steps: list[AgentStep] = []
        usage, cost = Usage(), 0.0
        for index in range(1, self.max_steps + 1):
            if self.context_window is not None:
                fitted = await self.context_window.fit(
                    live.messages,
                    summariser=self.summariser or self.model,
                    counter=self.model,
                    ctx=ctx,
                    key=self._key("summary", index, live=live),
                )
                if fitted.summarised:
                    log.info("agent_context_summarised", agent=self.name, turn=index, messages=fitted.summarised)
                    live.messages = list(fitted.messages)
                    live.known = None  # the recorded usage no longer describes this prompt
            self._check_budget(usage, cost, live)
            turn = await self._step(ctx, live, self._model_turn, index, kind="turn", policy=self._turn_policy())
            usage = usage + Usage(*turn["usage"])
            cost += float(turn["cost"] or 0.0)
            spent = Usage(*turn["usage"])
            if spent.input_tokens > 0:  # the prompt and the answer about to be appended
                live.known = (spent.total_tokens, len(live.messages) + 1)
            calls = self._take_turn(turn, live, index, steps)
            if calls is None:
                log.info("agent_finished", agent=self.name, steps=index)
                return AgentResult(
                    self.name,
                    steps[-1].result,
                    steps,
                    usage,
                    [m.to_dict() for m in live.messages],
                    cost,
                    index,
                )
            for position, call in enumerate(calls):
                step, feedback = await self._tool_call(ctx, live, index, position, call)
                steps.append(step)
                if live.native:
                    live.messages.append(Message.tool(feedback, name=call.name, tool_call_id=call.id))
                else:
                    live.messages.append(Message.user(feedback))
        log.warning("agent_step_limit", agent=self.name, max_steps=self.max_steps)
        last = steps[-1] if steps else None
        detail = f"; last step: {last.kind} {last.tool or ''} {last.error or ''}".rstrip() if last else ""
        raise AgentError(
            self.redactor.text(
                f"agent {self.name!r} reached its step limit of {self.max_steps} without a final answer{detail}"
            )
        )

    def _key(self, kind: str, turn: int, call: int | None = None, *, live: _Live | None = None) -> str:
        scope = live.scope if live is not None else None
        name = self.name if scope is None else f"{self.name}@{scope}"
        return f"agent:{name}:{kind}:{turn}" + ("" if call is None else f":{call}")

    def _turn_policy(self) -> dict[str, Any]:
        return {"retry": self.retry} if self.retry is not None else {}

    async def _step(
        self,
        ctx: RunContext | None,
        live: _Live,
        fn: Callable[..., Awaitable[Any]],
        *args: Any,
        kind: str,
        position: int | None = None,
        policy: Mapping[str, Any] | None = None,
    ) -> Any:
        """``fn(index, *args)`` as the durable step ``agent:<name>:<kind>:<index>[:<position>]``.

        Without a run it is a plain call.
        """
        token = _LIVE.set(live)
        try:
            if ctx is None:
                return await fn(*args)
            key = self._key(kind, args[0], position, live=live)
            return await ctx.step(fn, *args, key=key, name=f"agent:{self.name}:{kind}", **(policy or {}))
        finally:
            _LIVE.reset(token)

    def _coming_tokens(self, live: _Live) -> int:
        """The next request's input tokens: counted by the model's own tokenizer where it has
        one; otherwise the provider's count of the conversation so far (the last turn's
        usage) plus an estimate of what was added since; an estimate of it all without either."""
        if tokenizer_of(self.model) is None and live.known is not None:
            tokens, count = live.known
            return tokens + message_tokens(None, live.messages[count:])
        return message_tokens(self.model, live.messages)

    def _check_budget(self, usage: Usage, cost: float, live: _Live) -> None:
        if self.budget is None:
            return
        coming = self._coming_tokens(live)
        reason = self.budget.check(used=usage, cost=cost, model_id=self.model.model_id, next_input_tokens=coming)
        if reason is not None:
            log.warning("agent_budget_exceeded", agent=self.name, reason=reason)
            spent = float(usage.total_tokens) if self.budget.max_cost is None else cost
            limit = float(self.budget.max_tokens or 0) if self.budget.max_cost is None else self.budget.max_cost
            raise BudgetExceededError(
                f"agent {self.name!r} stopped before its next model call: {reason}", spent=spent, limit=limit
            )

    async def _model_turn(self, index: int, ctx: StepContext | None = None) -> dict[str, Any]:
        """One model call; what it returns is what the turn's step records (redacted)."""
        live = _live()
        specs = tuple(t.spec() for t in self.tools.values()) if live.native else ()
        request = ModelRequest.chat(live.messages, self.settings, tools=specs)
        async with asyncio.timeout(self.model_timeout):
            if live.on_text is not None or self.first_token_timeout is not None or self.idle_timeout is not None:
                sink = sink_for(live.run, ctx, self.stream_events) if live.run is not None else None
                shown = _Shown(live.on_text, self.redactor.streaming(), sink)
                result = await stream_into(
                    self.model,
                    request,
                    on_text=shown.feed,
                    sink=None,  # fed by ``shown``, redacted
                    first_token_timeout=self.first_token_timeout,
                    idle_timeout=self.idle_timeout,
                )
                await shown.end(result.usage)
            else:
                result = await observed_request(self.model, request)
        cost = result.cost
        if cost is None and self.budget is not None:
            cost = self.budget.cost_of(result.model, result.usage)
        return {
            "text": self.redactor.text(result.text),
            "tool_calls": [self.redactor.data(call.to_dict()) for call in result.tool_calls],
            "usage": [result.usage.input_tokens, result.usage.output_tokens],
            "cost": cost,
            "model": result.model,
            "finish_reason": result.finish_reason,
        }

    def _take_turn(
        self, turn: Mapping[str, Any], live: _Live, index: int, steps: list[AgentStep]
    ) -> list[ToolUse] | None:
        """Add a recorded turn to the conversation; the calls it makes, or ``None`` if it answers."""
        text = str(turn["text"])
        native_calls = [ToolUse(str(c["id"]), str(c["name"]), c["arguments"]) for c in turn["tool_calls"]]
        if live.native:
            live.messages.append(Message.assistant(text, tool_calls=native_calls))
            if native_calls:
                return native_calls
            steps.append(AgentStep(index, "final", result=text))
            return None
        live.messages.append(Message.assistant(text))
        try:
            parsed = _TURN.check(text)
        except OutputRejected as exc:
            steps.append(AgentStep(index, "invalid", error=exc.message))
            live.messages.append(Message.user(f"Invalid reply: {exc.message}. Reply with one JSON object."))
            return []
        if "final" in parsed:
            steps.append(AgentStep(index, "final", result=parsed["final"]))
            return None
        return [ToolUse(f"call_{index}_0", parsed["tool"], parsed.get("args", {}))]

    async def _tool_call(
        self, ctx: RunContext | None, live: _Live, index: int, position: int, call: ToolUse
    ) -> tuple[AgentStep, str]:
        name, args = call.name, call.arguments
        shown_args = self.redactor.data(args) if isinstance(args, Mapping) else {}
        selected = self.tools.get(name)

        def invalid(message: str) -> tuple[AgentStep, str]:
            return AgentStep(index, "invalid", name, shown_args, error=message, call=position), f"Error: {message}"

        if selected is None:
            return invalid(f"there is no tool named {name!r}; the tools are {sorted(self.tools)}")
        try:
            checked = selected.check_args(args)
        except ToolArgumentError as exc:
            return invalid(self.redactor.text(str(exc)))
        digest = args_hash(name, shown_args)
        request = ToolCall(self.name, name, shown_args, digest, self._key("tool", index, position, live=live))
        live.pending[(index, position)] = (selected, checked, request)
        if selected.requires_approval:
            decision: bool | None = None
            if getattr(self.approve, "parks_run", False) and ctx is not None:
                decision = await self._ask(request)  # a review gate: durable itself, parks the run
            audit = await self._step(
                ctx, live, self._approval, index, position, decision, kind="approval", position=position
            )
            if not (audit["approved"] and audit["args_hash"] == digest):
                message = f"the call of {name} was not approved by a person; do not retry it"
                log.warning("agent_tool_refused", agent=self.name, tool=name, args_hash=digest)
                return (
                    AgentStep(index, "refused", name, shown_args, error=message, call=position, args_hash=digest),
                    f"Error: {message}",
                )
            live.approved[(index, position)] = digest
        log.info("agent_tool_call", agent=self.name, tool=name, args=shown_args)
        outcome = await self._step(ctx, live, self._execute, index, position, kind="tool", position=position)
        error = outcome.get("error")
        if error is not None:
            step = AgentStep(index, "tool", name, shown_args, error=error, call=position, args_hash=digest)
            return step, f"Tool {name} failed: {error}"
        shown = outcome.get("result")
        text = shown if isinstance(shown, str) else json.dumps(shown, default=str)
        if len(text) > self.max_result_chars:
            text = text[: self.max_result_chars] + " [truncated]"
        step = AgentStep(index, "tool", name, shown_args, result=shown, call=position, args_hash=digest)
        return step, (f"Tool {name} returned: {text}" if not live.native else text)

    async def _approval(self, index: int, position: int, decision: bool | None) -> dict[str, Any]:
        """The recorded decision on one gated call: which call (hashed), and yes or no."""
        _tool, _args, request = _live().pending[(index, position)]
        approved = decision if decision is not None else await self._ask(request)
        return {"tool": request.tool, "args_hash": request.args_hash, "approved": bool(approved), "call": request.key}

    async def _ask(self, request: ToolCall) -> bool:
        if self.approve is None:
            return False
        decision = self.approve(request)
        if inspect.isawaitable(decision):
            decision = await decision
        if isinstance(decision, Mapping):
            return decision.get("approved") is True
        return decision is True

    async def _execute(self, index: int, position: int, ctx: StepContext | None = None) -> dict[str, Any]:
        """One tool call; what it returns is what the call's step records (redacted)."""
        live = _live()
        selected, checked, request = live.pending[(index, position)]
        if selected.requires_approval and live.approved.get((index, position)) != request.args_hash:
            # Unreachable through run(): a gated call executes only after its approval. Kept
            # so that no path, present or future, runs a gated tool without one.
            return {"result": None, "error": "not approved"}
        kwargs = {**checked, **{c: self._credentials[c] for c in selected.credentials}}
        if selected.wants_idempotency_key:
            kwargs["idempotency_key"] = ctx.idempotency_key if ctx is not None else f"{live.run_key}:{request.key}"
        limit = selected.timeout or self.tool_timeout
        try:
            async with asyncio.timeout(limit):
                value = selected.fn(**kwargs)
                if inspect.isawaitable(value):
                    value = await value
        except TimeoutError:
            message = f"no result within {limit:g}s"
            log.warning("agent_tool_timeout", agent=self.name, tool=selected.name, seconds=limit)
            return {"result": None, "error": message}
        except Exception as exc:  # noqa: BLE001 - a tool's failure is reported to the model
            message = self.redactor.error(exc)
            log.warning("agent_tool_failed", agent=self.name, tool=selected.name, error=message)
            return {"result": None, "error": message}
        return {"result": self.redactor.data(_jsonable(value)), "error": None}

    def __repr__(self) -> str:
        return f"Agent({self.name!r}, tools={sorted(self.tools)}, credentials={self.credential_names})"


class _Shown:
    """Streamed text on its way to a caller's handler and the run's events: redacted, a
    secret split between two pieces included."""

    def __init__(self, handler: TextHandler | None, redactor: StreamRedactor, sink: EventSink | None) -> None:
        self.handler, self.redactor, self.sink = handler, redactor, sink

    async def _hand(self, text: str) -> None:
        if not text:
            return
        if self.handler is not None:
            outcome = self.handler(text)
            if inspect.isawaitable(outcome):
                await outcome
        if self.sink is not None:
            await self.sink.add(text)

    async def feed(self, text: str) -> None:
        await self._hand(self.redactor.feed(text))

    async def end(self, usage: Usage) -> None:
        await self._hand(self.redactor.end())
        if self.sink is not None:
            await self.sink.flush(done=True, extra={"usage": [usage.input_tokens, usage.output_tokens]})


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
