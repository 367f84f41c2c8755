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
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from orchestrate.agents.agent import Agent, AgentResult
from orchestrate.errors import AgentError, DefinitionError
from orchestrate.observe.logging import get_logger

log = get_logger()

RouteFn = Callable[[str], "str | Awaitable[str]"]


@dataclass(frozen=True)
class Delegation:
    """Which worker handled a task, why, and what it produced."""

    worker: str
    routed_by: str
    result: AgentResult


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
