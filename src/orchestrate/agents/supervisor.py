"""Supervisor → workers: code routes a task to one worker agent; no model decides the route.

The seeds' rule: "your supervisor should never call an LLM directly". A
:class:`Supervisor` holds worker agents and a *routing function* — rules, a keyword
table, or the embedded :class:`~orchestrate.models.local.IntentClassifier` — and never
a generative model of its own::

    classifier = IntentClassifier(LocalEmbedder(), examples)
    support = Supervisor(
        {"refund": refund_agent, "technical": tech_agent},
        route=lambda task: classifier.classify(task).label,
        default="technical",
    )
    outcome = await support.run("My blender arrived broken, I want my money back")
    outcome.worker, outcome.result.output

In a durable workflow, route in one step and run the worker in the next, so a crash
between them does not route twice.

**Delegation** (seed 002): :meth:`Supervisor.delegate` decomposes a task *with code*
into sub-tasks, runs their workers in parallel as child steps of the run, retries a
worker that fails, escalates to a person after ``retries`` failed retries, and
synthesises the results with code::

    outcome = await support.delegate(
        ctx,
        ticket,
        decompose=lambda t: [("refund", t), ("technical", t)],   # code, never a model
        synthesise=lambda done: " / ".join(str(d.output) for d in done),
        retries=3,
        escalate_roles=["support_lead"],
    )

Each attempt of each sub-task runs its agent under its own scope (step keys
``agent:<name>@<n>.<attempt>:...``), so a resumed run replays finished attempts and
goes on where it stopped. An escalation is a review at the gate
``delegate:<n>``: the person's (possibly edited) payload's ``output`` stands in for the
worker's; a rejection fails the delegation.

The same pattern as a graph workflow: :meth:`Supervisor.workflow` builds
``decompose → Map(work, retry=retries) → escalate (a review gate, only when a part
failed) → synthesise``. There each worker's run is one step (retried by the step's
policy), not a step per turn.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from orchestrate.agents.agent import Agent, AgentResult
from orchestrate.errors import (
    AgentError,
    DeadlineExceededError,
    DefinitionError,
    LeaseLostError,
    NonDeterminismError,
)
from orchestrate.observe.logging import get_logger
from orchestrate.policies import Retry

if TYPE_CHECKING:
    from orchestrate import RunContext

log = get_logger()

RouteFn = Callable[[str], "str | Awaitable[str]"]


@dataclass(frozen=True)
class Delegation:
    """Which worker handled a task, why, and what it produced."""

    worker: str
    routed_by: str
    result: AgentResult


@dataclass(frozen=True)
class SubTaskOutcome:
    """How one sub-task of a delegation ended.

    Attributes:
        index: its position among the sub-tasks.
        worker: the worker label it went to.
        task: the sub-task.
        output: the worker's answer, or the person's after an escalation.
        attempts: worker runs made (1 when the first succeeded).
        errors: why each failed attempt failed.
        escalated: a person decided it after the retries ran out.
        decided_by: who, when escalated.
    """

    index: int
    worker: str
    task: str
    output: Any
    attempts: int
    errors: tuple[str, ...] = ()
    escalated: bool = False
    decided_by: str | None = None


@dataclass(frozen=True)
class Delegated:
    """What :meth:`Supervisor.delegate` produced: the synthesis and each sub-task's outcome."""

    output: Any
    parts: tuple[SubTaskOutcome, ...] = field(default_factory=tuple)


Decompose = Callable[[str], "Sequence[tuple[str, str]]"]
"""``task -> [(worker label, sub-task), ...]``: code, never a model."""

Synthesise = Callable[["list[SubTaskOutcome]"], Any]
"""Combines the sub-tasks' outcomes (in sub-task order) into the answer."""


class Supervisor:
    """Routes each task to one worker agent with plain code.

    Args:
        workers: ``{route label: agent}``.
        route: ``task -> label`` (sync or async); it must not call a generative model.
        default: the worker for labels with no worker (``None``: such a task is an error).
    """

    def __init__(self, workers: Mapping[str, Agent], *, route: RouteFn, default: str | None = None) -> None:
        if not workers:
            raise DefinitionError("a Supervisor needs at least one worker")
        if default is not None and default not in workers:
            raise DefinitionError(f"default worker {default!r} is not among {sorted(workers)}")
        self.workers = dict(workers)
        self.route = route
        self.default = default

    async def choose(self, task: str) -> tuple[str, str]:
        """The worker label for ``task`` and how it was chosen (``route`` or ``default``)."""
        label: Any = self.route(task)
        if inspect.isawaitable(label):
            label = await label
        if isinstance(label, str) and label in self.workers:
            return label, "route"
        if self.default is not None:
            return self.default, "default"
        raise AgentError(f"no worker for route {label!r}; workers are {sorted(self.workers)}")

    async def run(self, task: str, *, context: Mapping[str, Any] | None = None) -> Delegation:
        """Route ``task`` and let the chosen worker handle it."""
        label, how = await self.choose(task)
        log.info("supervisor_delegated", worker=label, routed_by=how)
        result = await self.workers[label].run(task, context=context)
        return Delegation(label, how, result)

    async def delegate(
        self,
        ctx: RunContext | None,
        task: str,
        *,
        decompose: Decompose,
        synthesise: Synthesise,
        retries: int = 3,
        escalate_roles: Sequence[str] | None = None,
    ) -> Delegated:
        """Decompose ``task`` with code, run the workers in parallel, retry, escalate, synthesise.

        Args:
            ctx: the run's context (``None``: in memory, no escalation possible).
            task: the task.
            decompose: splits it into ``(worker label, sub-task)`` pairs (code).
            synthesise: combines the outcomes (code).
            retries: runs of a failing worker after its first (seed 002: 3).
            escalate_roles: who decides a sub-task whose retries all failed; ``None``
                (or no ``ctx``) fails the delegation instead.

        Raises:
            AgentError: a label has no worker, or a sub-task failed for good (retries
                spent and no escalation, or the person rejected it).
        """
        if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
            raise DefinitionError(f"retries must be an int >= 0, got {retries!r}")
        parts = list(decompose(task))
        unknown = sorted({label for label, _ in parts} - set(self.workers))
        if unknown:
            raise AgentError(f"decompose sent sub-tasks to {unknown}; workers are {sorted(self.workers)}")
        log.info("supervisor_decomposed", parts=len(parts), workers=[label for label, _ in parts])
        runs = [self._attempts(ctx, i, label, sub, retries, escalate_roles) for i, (label, sub) in enumerate(parts)]
        done: list[SubTaskOutcome] = list(await ctx.gather(*runs)) if ctx is not None else [await r for r in runs]
        return Delegated(synthesise(done), tuple(done))

    async def _attempts(
        self,
        ctx: RunContext | None,
        index: int,
        label: str,
        sub: str,
        retries: int,
        roles: Sequence[str] | None,
    ) -> SubTaskOutcome:
        worker = self.workers[label]
        errors: list[str] = []
        for attempt in range(1, retries + 2):
            try:
                result = await worker.run(sub, ctx=ctx, scope=f"{index}.{attempt}")
            except Exception as exc:  # a failed worker is retried, then escalated
                if _parks(exc):
                    raise
                errors.append(worker.redactor.error(exc))
                log.warning("supervisor_worker_failed", worker=label, part=index, attempt=attempt, error=errors[-1])
                continue
            return SubTaskOutcome(index, label, sub, result.output, attempt, tuple(errors))
        if ctx is None or roles is None:
            raise AgentError(
                f"sub-task {index} ({label}) failed {retries + 1} times; last error: {errors[-1] if errors else '?'}"
            )
        log.warning("supervisor_escalated", worker=label, part=index, attempts=retries + 1)
        payload = {"task": sub, "worker": label, "errors": errors, "output": None}
        decision = await ctx.review(payload, key=f"delegate:{index}", roles=list(roles))
        if not decision.approved:
            raise AgentError(f"sub-task {index} ({label}) was rejected by {decision.by}: {decision.reason}")
        answer = decision.payload.get("output") if isinstance(decision.payload, Mapping) else decision.payload
        return SubTaskOutcome(index, label, sub, answer, retries + 1, tuple(errors), True, decision.by)

    def workflow(
        self,
        name: str,
        *,
        decompose: Decompose,
        synthesise: Synthesise,
        retries: int | Retry = 3,
        escalate_roles: Sequence[str],
        version: str | None = None,
        max_workers: int | None = None,
    ) -> Any:
        """The delegation as a graph workflow taking the task as its input.

        Nodes: ``decompose`` (a step: the parts), ``parts`` (a :class:`~orchestrate.Map`
        running each part's worker as the step ``work``, retried ``retries`` times (a count,
        or a :class:`~orchestrate.policies.Retry` for its delays); a part
        that still fails is marked for a person), ``escalation`` (a branch that parks the
        run at a review gate for ``escalate_roles`` only when a part failed: the reviewer
        edits the failed parts' ``output``), ``synthesise``.

        Returns:
            a :class:`~orchestrate.Workflow` to register with an engine.
        """
        from orchestrate.policies import Fallback
        from orchestrate.review.gate import HumanReviewGate
        from orchestrate.workflow import Branch, Map, Step, Workflow

        if isinstance(retries, Retry):
            retry, attempts = retries, retries.max_attempts or 1
        elif isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
            raise DefinitionError(f"retries must be an int >= 0 or a Retry, got {retries!r}")
        else:
            retry, attempts = Retry(max_attempts=retries + 1), retries + 1
        workers = self.workers

        def split(task: str) -> list[dict[str, Any]]:
            parts: list[dict[str, Any]] = [
                {"index": i, "worker": label, "task": sub, "output": None, "attempts": 0, "escalated": False}
                for i, (label, sub) in enumerate(decompose(task))
            ]
            unknown = sorted({p["worker"] for p in parts} - set(workers))
            if unknown:
                raise AgentError(f"decompose sent sub-tasks to {unknown}; workers are {sorted(workers)}")
            return parts

        async def work(part: dict[str, Any], ctx: Any = None) -> dict[str, Any]:
            result = await workers[part["worker"]].run(part["task"])
            return {**part, "output": result.output, "attempts": ctx.attempt if ctx is not None else 1}

        def failed(part: dict[str, Any]) -> dict[str, Any]:
            log.warning("supervisor_escalated", worker=part["worker"], part=part["index"], attempts=attempts)
            return {**part, "attempts": attempts, "escalated": True}

        def review(parts: list[dict[str, Any]]) -> list[dict[str, Any]]:
            return parts  # the gate shows them to a person, who fills in the failed parts' output

        def combine(parts: list[dict[str, Any]]) -> Any:
            return synthesise(
                [
                    SubTaskOutcome(p["index"], p["worker"], p["task"], p["output"], p["attempts"], (), p["escalated"])
                    for p in parts
                ]
            )

        def needs_person(parts: list[dict[str, Any]]) -> bool:
            return any(p["escalated"] for p in parts)

        gate = HumanReviewGate(roles=list(escalate_roles))
        return Workflow(
            name,
            [
                Step("decompose", split),
                Map(
                    Step("work", work, retry=retry, fallback=Fallback.call(failed)),
                    name="parts",
                    max_workers=max_workers,
                ),
                Branch(
                    needs_person,
                    {True: [Step("escalate", review, gate=gate)], False: "synthesise"},
                    name="escalation",
                ),
                Step("synthesise", combine),
            ],
            version=version,
        )


def _parks(exc: BaseException) -> bool:
    """Whether ``exc`` stops the run itself (never a worker's failure to retry)."""
    return isinstance(exc, LeaseLostError | DeadlineExceededError | NonDeterminismError)
