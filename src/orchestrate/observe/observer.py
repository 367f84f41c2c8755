"""The hooks seam: :class:`Observer`, the events it receives, and the process-wide observers.

An observer watches; it never steers. The engine calls its methods synchronously, in
the task that runs the step or the run, right after the event was written to the store
(an event the store refused is not reported). Every method takes keyword-only
arguments and ``**future_kwargs``, so that an observer written today keeps working
when an event gains a field. Subclass :class:`Observer` and override the methods you
need; the others cost nothing (the engine calls only overridden methods, and checks a
single attribute when no observer is set at all).

An observer that raises does not fail the run: the error is logged
(``observer_failed``, with the traceback on the first failure of that observer and
event), counted (:func:`observer_failures`) and swallowed. Keep methods fast: hand slow
work (a network export) to a queue or a background thread, as the OpenTelemetry and
Prometheus observers do.

Times (``at``) are the engine clock's POSIX seconds; durations are seconds
(``latency_s``), never milliseconds.

Observers are registered on an engine (``Engine(store, observers=[...])``) or for the
whole process (:func:`add_observer`): those see every engine of the process, including
the ones ``Workflow.run`` and the CLI create.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

EVENTS = (
    "step_started",
    "step_attempt_failed",
    "step_retried",
    "step_fallback",
    "step_succeeded",
    "step_failed",
    "run_created",
    "run_parked",
    "run_resumed",
    "run_ended",
    "review_created",
    "review_decided",
    "review_escalated",
    "model_called",
)
"""Every event an observer can receive, by method name."""


class Observer:
    """Receives what happens to runs, steps, reviews and model calls; override what you need.

    Common fields: ``workflow`` (its name), ``run_id``, ``step`` (the step's key in the
    run: ``fetch``, ``fetch#2``, ``items[3]``), ``name`` (the step's name, the same for
    every key of one step: what to aggregate metrics by) and ``at`` (when, on the engine's
    clock, POSIX seconds).

    Example::

        class SlowSteps(Observer):
            def step_succeeded(self, *, step, latency_s, **future_kwargs):
                if latency_s > 0.5:
                    print(f"{step} took {latency_s:.2f}s")

        engine = Engine(store, observers=[SlowSteps()])
    """

    # steps --------------------------------------------------------------------------------
    def step_started(
        self,
        *,
        workflow: str,
        run_id: str,
        step: str,
        name: str,
        attempt: int,
        input_hash: str,
        at: float,
        **future_kwargs: Any,
    ) -> None:
        """A step begins executing (it was not replayed from the store).

        ``attempt`` is 1, or the attempt a retry parked for when the run resumes it.
        """

    def step_attempt_failed(
        self,
        *,
        workflow: str,
        run_id: str,
        step: str,
        name: str,
        attempt: int,
        error: BaseException,
        error_class: str,
        latency_s: float,
        retry_in: float | None,
        timed_out: bool,
        at: float,
        **future_kwargs: Any,
    ) -> None:
        """An attempt raised (``timed_out``: the engine's timeout stopped it).

        ``latency_s`` is the attempt's own duration; ``retry_in`` the delay before the
        next attempt, or ``None`` when the retry policy gives up.
        """

    def step_retried(
        self,
        *,
        workflow: str,
        run_id: str,
        step: str,
        name: str,
        attempt: int,
        delay: float,
        at: float,
        **future_kwargs: Any,
    ) -> None:
        """The retry was recorded: ``attempt`` (the next one) starts after ``delay`` seconds."""

    def step_fallback(
        self,
        *,
        workflow: str,
        run_id: str,
        step: str,
        name: str,
        attempts: int,
        fallback: str,
        reason: str,
        error_class: str,
        flag: str | None,
        latency_s: float,
        at: float,
        **future_kwargs: Any,
    ) -> None:
        """The step's attempts failed and a fallback (``value``, ``cached``, ``skip``...) answered."""

    def step_succeeded(
        self,
        *,
        workflow: str,
        run_id: str,
        step: str,
        name: str,
        attempts: int,
        latency_s: float,
        input_hash: str,
        cached: bool,
        model: Mapping[str, Any] | None,
        at: float,
        output: Any = None,
        **future_kwargs: Any,
    ) -> None:
        """The step returned and its record was written.

        ``latency_s`` spans its attempts (and their backoffs); ``cached`` says it came from
        the step's cache; ``model`` is the quality record of a step that returned a model
        result (``model``, ``version``, ``tokens_in``, ``tokens_out``, ``cost``);
        ``output`` is the step's output as its record holds it (read it, never change it).
        """

    def step_failed(
        self,
        *,
        workflow: str,
        run_id: str,
        step: str,
        name: str,
        attempts: int,
        error_class: str,
        error: str,
        latency_s: float,
        at: float,
        **future_kwargs: Any,
    ) -> None:
        """The step failed for good: attempts and fallbacks exhausted (``error``: its message)."""

    # runs ---------------------------------------------------------------------------------
    def run_created(
        self,
        *,
        workflow: str,
        run_id: str,
        version: str,
        queue: str,
        parent_run_id: str | None,
        claimed: bool,
        carrier: Mapping[str, str],
        at: float,
        **future_kwargs: Any,
    ) -> None:
        """A run was created (``claimed``: this process drives it right away).

        ``carrier`` holds what observers asked to store with the run (see :meth:`carry`).
        """

    def run_resumed(
        self,
        *,
        workflow: str,
        run_id: str,
        replayed_steps: int,
        carrier: Mapping[str, str],
        at: float,
        **future_kwargs: Any,
    ) -> None:
        """This process picked the run up from the store to drive it.

        A pending run claimed by a worker (``replayed_steps`` 0), a waiting run woken by
        its timer or a decision, a run taken over from a dead worker.
        """

    def run_parked(
        self,
        *,
        workflow: str,
        run_id: str,
        reason: str,
        wake_at: float | None,
        at: float,
        **future_kwargs: Any,
    ) -> None:
        """The run waits (``reason``: ``retry:<step>``, ``sleep:...``, ``signal:<key>``) and
        this process lets it go; ``wake_at`` is its timer, ``None`` to wait for a signal."""

    def run_ended(
        self,
        *,
        workflow: str,
        run_id: str,
        status: str,
        step: str | None,
        error_class: str | None,
        duration_s: float,
        at: float,
        **future_kwargs: Any,
    ) -> None:
        """The run ended: ``status`` ``succeeded``, ``failed`` or ``dead`` (``step``: where it
        failed); ``duration_s`` counts from its creation, waits included."""

    # reviews ------------------------------------------------------------------------------
    def review_created(
        self,
        *,
        workflow: str,
        run_id: str,
        step: str,
        review_id: str,
        queue: str | None,
        roles: list[str],
        priority: str,
        level: int,
        due_at: float | None,
        at: float,
        **future_kwargs: Any,
    ) -> None:
        """A review item was opened: the run waits for people (``level`` > 0: an escalation's)."""

    def review_decided(
        self,
        *,
        workflow: str,
        run_id: str,
        step: str,
        review_id: str,
        outcome: str,
        by: str | None,
        waited_s: float,
        carrier: Mapping[str, str],
        at: float,
        **future_kwargs: Any,
    ) -> None:
        """A review item got its final decision.

        ``outcome`` ``approved``, ``edited``, ``rejected`` or ``expired`` (``by`` is
        ``"sla"`` then). Reported by the process that decided: the API server or CLI
        through a :class:`~orchestrate.Client`, or the worker that saw the SLA pass.
        """

    def review_escalated(
        self,
        *,
        workflow: str,
        run_id: str,
        step: str,
        review_id: str,
        to_review_id: str,
        to: str | None,
        level: int,
        waited_s: float,
        at: float,
        **future_kwargs: Any,
    ) -> None:
        """Nobody decided within the SLA: the item escalated to ``to`` (a new item, ``level``)."""

    # models -------------------------------------------------------------------------------
    def model_called(
        self,
        *,
        model: str,
        provider: str | None,
        operation: str,
        input_tokens: int,
        output_tokens: int,
        cost: float | None,
        latency_s: float,
        error_class: str | None,
        workflow: str | None,
        run_id: str | None,
        step: str | None,
        at: float,
        **future_kwargs: Any,
    ) -> None:
        """A model answered (or failed: ``error_class``).

        One event per call a step makes (``chat``, ``generate``), after the wrappers
        (failover, cache, accounting): ``model`` is the one that served, ``cost`` the
        price table's figure when one is set; ``operation`` is ``chat`` or
        ``text_completion`` (OpenTelemetry's ``gen_ai.operation.name``). ``workflow``,
        ``run_id`` and ``step`` name the step that called, or are ``None`` outside a
        run. ``at`` is POSIX seconds. Also given: ``requested_model`` (the id of the model
        called, before routing or failover), ``version``, ``finish_reason``, ``cached``,
        ``error`` (the exception), and ``request`` and ``result`` (the
        :class:`~orchestrate.models.ModelRequest` and ``ModelResult``: prompts and
        answers, to be masked before they leave the process).
        """

    # propagation --------------------------------------------------------------------------
    def carry(self, *, workflow: str, run_id: str, **future_kwargs: Any) -> Mapping[str, str] | None:
        """Strings to store with a new run, handed back to every process that drives it.

        Called before the run is written; what it returns is stored in the run's options
        (``options["observe"]``) and comes back as ``carrier`` in :meth:`run_created`,
        :meth:`run_resumed` and :meth:`review_decided`. The OpenTelemetry observer keeps
        the trace context there, so that a run stays one trace across processes.
        """
        return None


_PROCESS: list[Any] = []
_generation = 0


def add_observer(observer: Any) -> None:
    """Let ``observer`` see every engine of this process (``Workflow.run``'s, the CLI's too)."""
    global _generation
    if observer not in _PROCESS:
        _PROCESS.append(observer)
        _generation += 1


def remove_observer(observer: Any) -> None:
    """Stop a process-wide observer (no error if it was not added)."""
    global _generation
    if observer in _PROCESS:
        _PROCESS.remove(observer)
        _generation += 1


def process_observers() -> tuple[Any, ...]:
    """The process-wide observers, in the order they were added."""
    return tuple(_PROCESS)


def generation() -> int:
    """A number that changes whenever the process-wide observers change."""
    return _generation
