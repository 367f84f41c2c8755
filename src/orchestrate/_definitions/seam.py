"""The seam between definitions and the engine: where ``Workflow.run`` finds an engine,
and the event loop ``run_sync()`` runs it on.

Definitions sit below the engine and never import it. ``Workflow.run()`` and
``Workflow.start()`` (run here, on the process's default engine for the workflow's
``state_store``) ask this module, and the engine fills it in when it is imported
(``orchestrate._engine.defaults``, which ``import orchestrate`` imports): the one place
where the definition layer calls up, through a hook instead of an import.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Protocol, TypeVar

from orchestrate.errors import OrchestrateError


class DefaultEngine(Protocol):
    """What the definitions need of an engine: run a workflow here, or start a run."""

    async def run(self, wf: Any, input: Any = None) -> Any:
        """Run ``wf`` to its end here and return its output."""

    async def start(self, wf: Any, input: Any = None) -> str:
        """Create a run of ``wf`` for a worker; return its id."""


EngineFactory = Callable[[Any], Awaitable[DefaultEngine]]
"""``factory(state_store)``: the process's open default engine for a store (a URL, a
``Store`` or ``None`` for the configured default)."""

_factory: EngineFactory | None = None


def install(factory: EngineFactory) -> None:
    """Set the default-engine factory (done once, by the engine package)."""
    global _factory
    _factory = factory


async def default_engine(state_store: Any) -> DefaultEngine:
    """The default engine for ``state_store``, from the installed factory.

    Raises:
        OrchestrateError: no engine is installed (only when the engine package was never
            imported, which ``import orchestrate`` always does).
    """
    if _factory is None:
        raise OrchestrateError(
            "no engine is installed to run workflows: import orchestrate (or orchestrate.Engine) first"
        )
    return await _factory(state_store)


T = TypeVar("T")

_LOOPS = threading.local()


def block_on(work: Coroutine[Any, Any, T]) -> T:
    """Run ``work`` to its end from code with no event loop, and return its result.

    Each thread keeps one loop for all its calls (an ``asyncio.Runner``), since the
    process's default engines and their stores hold connections and locks tied to the
    loop that opened them: a new loop per call (``asyncio.run``) would strand them.

    Raises:
        RuntimeError: an event loop is already running on this thread (async code, a
            notebook's own loop): await the coroutine there instead.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass
    else:
        work.close()
        raise RuntimeError(
            "run_sync() was called from async code (an event loop is running here); use `await wf.run(...)` instead"
        )
    runner: asyncio.Runner | None = getattr(_LOOPS, "runner", None)
    if runner is None:
        runner = _LOOPS.runner = asyncio.Runner()
    return runner.run(work)
