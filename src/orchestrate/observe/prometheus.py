"""Prometheus metrics, as an observer (extra ``metrics``: ``pip install 'orchestrate[metrics]'``).

::

    from orchestrate.observe.prometheus import PrometheusObserver, serve_metrics

    engine = Engine(store, observers=[PrometheusObserver()])   # or:
    serve_metrics(9100)   # an HTTP endpoint, and an observer for every engine of the process

``orchestrate worker --metrics-port 9100`` does the latter. Families (every name starts
with ``orchestrate_``; ``step`` is the step's name, the same for every key of a map):

========================================  =========  =======================================
family                                    type       labels
========================================  =========  =======================================
``step_duration_seconds``                 histogram  workflow, step, outcome (succeeded,
                                                     fallback, failed)
``step_attempts_total``                   counter    workflow, step
``step_errors_total``                     counter    workflow, step, error_type
``step_retries_total``                    counter    workflow, step
``step_fallbacks_total``                  counter    workflow, step, fallback
``step_timeouts_total``                   counter    workflow, step
``runs_created_total``                    counter    workflow
``runs_resumed_total``                    counter    workflow
``runs_parked_total``                     counter    workflow, reason (retry, sleep, signal)
``runs_ended_total``                      counter    workflow, status
``run_duration_seconds``                  histogram  workflow, status
``reviews_created_total``                 counter    workflow
``reviews_decided_total``                 counter    workflow, outcome
``reviews_escalated_total``               counter    workflow
``reviews_waiting``                       gauge      workflow
``review_decision_seconds``               histogram  workflow, outcome
``model_calls_total``                     counter    model, outcome (ok, error)
``model_tokens_total``                    counter    model, kind (input, output)
``model_cost_total``                      counter    model
``model_latency_seconds``                 histogram  model
``queue_depth``                           gauge      queue (runs due, not yet claimed)
``queue_oldest_due_seconds``              gauge      queue (the claim wait of the oldest)
========================================  =========  =======================================

The two queue gauges are read from the store every few seconds by :func:`watch_queues`
(``orchestrate worker --metrics-port`` runs it), not counted from events: they say how
deep the backlog is and how long the run at its head has waited for a claim.

Many worker processes on one host: set ``PROMETHEUS_MULTIPROC_DIR`` to an empty directory
shared by them (and by the process serving the endpoint) *before* they start, as
prometheus-client's multiprocess mode asks; every endpoint then serves the sum over all
of them, and ``orchestrate metrics --port N`` serves that directory on its own. Empty the
directory when the deployment restarts. ``reviews_waiting`` is counted up where an item
is created and down where it is decided (the API server, another worker): it is exact in
multiprocess mode, and summed over the processes of a host otherwise.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
from collections.abc import AsyncIterator, Sequence
from typing import Any

from orchestrate.observe.observer import Observer, add_observer

try:
    from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram, start_http_server
    from prometheus_client import multiprocess as _multiprocess
except ImportError as exc:  # pragma: no cover - depends on the extra
    raise ImportError(
        "orchestrate.observe.prometheus needs prometheus-client: pip install 'orchestrate[metrics]'"
    ) from exc

STEP_BUCKETS: tuple[float, ...] = (0.005, 0.01, 0.025, 0.05, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1, 2, 5, 10, 30, 60, 300)
"""Step latency buckets (seconds): fine around the 50-200 ms a step's bookkeeping is said to
cost elsewhere and the 500 ms p95 of an orchestrated pipeline, then out to timeouts."""

RUN_BUCKETS: tuple[float, ...] = (0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300, 900, 3600, 14400, 86400, 604800)
"""Run duration buckets (seconds): from a chain of fast steps to a week of waiting for people."""

REVIEW_BUCKETS: tuple[float, ...] = (60, 300, 900, 1800, 3600, 7200, 14400, 28800, 86400, 259200, 604800)
"""Time-to-decision buckets (seconds): a minute to a week."""

MODEL_BUCKETS: tuple[float, ...] = (0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 30, 60, 120)
"""Model call latency buckets (seconds)."""

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


class _Families:
    """The metric families of one registry (created once: a registry refuses duplicates)."""

    def __init__(self, registry: CollectorRegistry, buckets: dict[str, Sequence[float]]) -> None:
        def counter(name: str, doc: str, labels: Sequence[str]) -> Counter:
            return Counter(f"orchestrate_{name}", doc, labels, registry=registry)

        def histogram(name: str, doc: str, labels: Sequence[str], kind: str) -> Histogram:
            return Histogram(f"orchestrate_{name}", doc, labels, registry=registry, buckets=buckets[kind])

        step = ("workflow", "step")
        self.step_duration = histogram(
            "step_duration_seconds", "Step latency, attempts and backoffs included.", (*step, "outcome"), "step"
        )
        self.step_attempts = counter("step_attempts", "Attempts made (a cache hit makes none).", step)
        self.step_errors = counter("step_errors", "Failed attempts, by error class.", (*step, "error_type"))
        self.step_retries = counter("step_retries", "Retries scheduled.", step)
        self.step_fallbacks = counter("step_fallbacks", "Fallbacks that answered.", (*step, "fallback"))
        self.step_timeouts = counter("step_timeouts", "Attempts stopped by their timeout.", step)
        self.runs_created = counter("runs_created", "Runs created.", ("workflow",))
        self.runs_resumed = counter("runs_resumed", "Runs picked up from the store.", ("workflow",))
        self.runs_parked = counter("runs_parked", "Runs that parked.", ("workflow", "reason"))
        self.runs_ended = counter("runs_ended", "Runs that ended, by status.", ("workflow", "status"))
        self.run_duration = histogram(
            "run_duration_seconds", "Run duration from creation, waits included.", ("workflow", "status"), "run"
        )
        self.reviews_created = counter("reviews_created", "Review items opened.", ("workflow",))
        self.reviews_decided = counter("reviews_decided", "Review items decided.", ("workflow", "outcome"))
        self.reviews_escalated = counter("reviews_escalated", "Review items escalated.", ("workflow",))
        self.reviews_waiting = Gauge(
            "orchestrate_reviews_waiting",
            "Review items waiting for a decision.",
            ("workflow",),
            registry=registry,
            multiprocess_mode="sum",  # counted up and down in different processes
        )
        self.review_decision = histogram(
            "review_decision_seconds",
            "Time from an item's creation to its decision.",
            ("workflow", "outcome"),
            "review",
        )
        self.model_calls = counter("model_calls", "Model calls.", ("model", "outcome"))
        self.model_tokens = counter("model_tokens", "Tokens consumed.", ("model", "kind"))
        self.model_cost = counter("model_cost", "Cost of model calls (the price table's unit).", ("model",))
        self.model_latency = histogram("model_latency_seconds", "Model call latency.", ("model",), "model")
        # Read from the store (every worker reads the same): the live processes' largest value.
        self.queue_depth = Gauge(
            "orchestrate_queue_depth",
            "Runs due and waiting for a worker to claim them.",
            ("queue",),
            registry=registry,
            multiprocess_mode="livemax",
        )
        self.queue_oldest_due = Gauge(
            "orchestrate_queue_oldest_due_seconds",
            "How long the longest-waiting due run of the queue has waited for a claim.",
            ("queue",),
            registry=registry,
            multiprocess_mode="livemax",
        )


_FAMILIES: dict[int, tuple[CollectorRegistry, _Families]] = {}
_LOCK = threading.Lock()


def _families(registry: CollectorRegistry, buckets: dict[str, Sequence[float]]) -> _Families:
    with _LOCK:
        found = _FAMILIES.get(id(registry))
        if found is None or found[0] is not registry:
            found = _FAMILIES[id(registry)] = (registry, _Families(registry, buckets))
        return found[1]


def _reason(reason: str) -> str:
    kind = reason.partition(":")[0]
    return kind if kind in ("retry", "sleep", "signal") else "other"


class PrometheusObserver(Observer):
    """Counts and times steps, runs, reviews and model calls into Prometheus metrics.

    Args:
        registry: where the families live (default: prometheus-client's global one).
            Observers on one registry share its families.
        step_buckets: step latency buckets, seconds (default :data:`STEP_BUCKETS`).
        run_buckets: run duration buckets (default :data:`RUN_BUCKETS`).
        review_buckets: time-to-decision buckets (default :data:`REVIEW_BUCKETS`).
        model_buckets: model latency buckets (default :data:`MODEL_BUCKETS`).
    """

    def __init__(
        self,
        *,
        registry: CollectorRegistry | None = None,
        step_buckets: Sequence[float] = STEP_BUCKETS,
        run_buckets: Sequence[float] = RUN_BUCKETS,
        review_buckets: Sequence[float] = REVIEW_BUCKETS,
        model_buckets: Sequence[float] = MODEL_BUCKETS,
    ) -> None:
        self.registry = registry if registry is not None else REGISTRY
        buckets = {"step": step_buckets, "run": run_buckets, "review": review_buckets, "model": model_buckets}
        self.families = _families(self.registry, buckets)
        # Label lookups take a lock each: the children of the hot events are kept here.
        self._succeeded: dict[tuple[str, str], tuple[Any, Any]] = {}

    # steps --------------------------------------------------------------------------------
    def step_succeeded(self, *, workflow: str, name: str, latency_s: float, cached: bool, **future_kwargs: Any) -> None:
        """Observe the latency; count the attempt that succeeded."""
        key = (workflow, name)
        children = self._succeeded.get(key)
        if children is None:
            f = self.families
            children = self._succeeded[key] = (
                f.step_duration.labels(workflow, name, "succeeded"),
                f.step_attempts.labels(workflow, name),
            )
        children[0].observe(latency_s)
        if not cached:
            children[1].inc()

    def step_attempt_failed(
        self, *, workflow: str, name: str, error_class: str, timed_out: bool, **future_kwargs: Any
    ) -> None:
        """Count the attempt, its error and a timeout."""
        f = self.families
        f.step_attempts.labels(workflow, name).inc()
        f.step_errors.labels(workflow, name, error_class).inc()
        if timed_out:
            f.step_timeouts.labels(workflow, name).inc()

    def step_retried(self, *, workflow: str, name: str, **future_kwargs: Any) -> None:
        """Count the retry."""
        self.families.step_retries.labels(workflow, name).inc()

    def step_fallback(self, *, workflow: str, name: str, fallback: str, latency_s: float, **future_kwargs: Any) -> None:
        """Count the fallback taken; observe the step's latency."""
        f = self.families
        f.step_fallbacks.labels(workflow, name, fallback).inc()
        f.step_duration.labels(workflow, name, "fallback").observe(latency_s)

    def step_failed(self, *, workflow: str, name: str, latency_s: float, **future_kwargs: Any) -> None:
        """Observe the failed step's latency."""
        self.families.step_duration.labels(workflow, name, "failed").observe(latency_s)

    # runs ---------------------------------------------------------------------------------
    def run_created(self, *, workflow: str, **future_kwargs: Any) -> None:
        """Count the run."""
        self.families.runs_created.labels(workflow).inc()

    def run_resumed(self, *, workflow: str, **future_kwargs: Any) -> None:
        """Count the pick-up."""
        self.families.runs_resumed.labels(workflow).inc()

    def run_parked(self, *, workflow: str, reason: str, **future_kwargs: Any) -> None:
        """Count the park, by what it waits for."""
        self.families.runs_parked.labels(workflow, _reason(reason)).inc()

    def run_ended(self, *, workflow: str, status: str, duration_s: float, **future_kwargs: Any) -> None:
        """Count the run by status; observe its duration."""
        f = self.families
        f.runs_ended.labels(workflow, status).inc()
        f.run_duration.labels(workflow, status).observe(duration_s)

    # reviews ------------------------------------------------------------------------------
    def review_created(self, *, workflow: str, **future_kwargs: Any) -> None:
        """Count the item; one more waits."""
        f = self.families
        f.reviews_created.labels(workflow).inc()
        f.reviews_waiting.labels(workflow).inc()

    def review_decided(self, *, workflow: str, outcome: str, waited_s: float, **future_kwargs: Any) -> None:
        """Count the decision; observe the time to it; one fewer waits."""
        f = self.families
        f.reviews_decided.labels(workflow, outcome).inc()
        f.review_decision.labels(workflow, outcome).observe(waited_s)
        f.reviews_waiting.labels(workflow).dec()

    def review_escalated(self, *, workflow: str, **future_kwargs: Any) -> None:
        """Count the escalation (its new item is counted as created)."""
        f = self.families
        f.reviews_escalated.labels(workflow).inc()
        f.reviews_waiting.labels(workflow).dec()

    # models -------------------------------------------------------------------------------
    def model_called(
        self,
        *,
        model: str,
        input_tokens: int,
        output_tokens: int,
        cost: float | None,
        latency_s: float,
        error_class: str | None,
        **future_kwargs: Any,
    ) -> None:
        """Count the call, its tokens and cost; observe its latency."""
        f = self.families
        f.model_calls.labels(model, "error" if error_class else "ok").inc()
        f.model_latency.labels(model).observe(latency_s)
        if input_tokens:
            f.model_tokens.labels(model, "input").inc(input_tokens)
        if output_tokens:
            f.model_tokens.labels(model, "output").inc(output_tokens)
        if cost:
            f.model_cost.labels(model).inc(cost)


def serving_registry() -> CollectorRegistry:
    """The registry an endpoint serves: prometheus-client's global one, or, in multiprocess
    mode (``PROMETHEUS_MULTIPROC_DIR`` set), one that sums every process's files."""
    if not os.environ.get(MULTIPROC_ENV):
        return REGISTRY
    registry = CollectorRegistry()
    _multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    return registry


def serve_metrics(port: int, *, addr: str = "0.0.0.0", observe: bool = True) -> PrometheusObserver | None:
    """Serve ``/metrics`` on ``port`` from a daemon thread; with ``observe``, also register a
    process-wide :class:`PrometheusObserver` (every engine of the process reports to it).

    Returns:
        the observer registered, or ``None`` without ``observe``.
    """
    start_http_server(port, addr=addr, registry=serving_registry())
    if not observe:
        return None
    observer = PrometheusObserver()
    add_observer(observer)
    return observer


async def read_queues(store: Any, *, now: float, registry: CollectorRegistry | None = None) -> dict[str, int]:
    """Set the queue gauges from ``store`` once; the due runs per queue (a queue gone empty reads 0)."""
    from orchestrate.store._quality_sql import quality_for

    families = _families(registry if registry is not None else REGISTRY, _DEFAULT_BUCKETS)
    depths = await quality_for(store).queue_depths(now=now)
    seen = {d.queue: d for d in depths}
    for queue in _QUEUES_SHOWN.setdefault(id(families), set()) - set(seen):
        families.queue_depth.labels(queue).set(0)
        families.queue_oldest_due.labels(queue).set(0)
    for depth in depths:
        families.queue_depth.labels(depth.queue).set(depth.due)
        waited = 0.0 if depth.oldest_due_at is None else max(now - depth.oldest_due_at, 0.0)
        families.queue_oldest_due.labels(depth.queue).set(waited)
    _QUEUES_SHOWN[id(families)].update(seen)
    return {d.queue: d.due for d in depths}


@contextlib.asynccontextmanager
async def watch_queues(
    engine: Any, *, interval_seconds: float = 5.0, registry: CollectorRegistry | None = None
) -> AsyncIterator[None]:
    """Keep the queue gauges current from ``engine``'s store while the block runs (every ``interval_seconds``).

    A read that fails (the store is away) is logged and the next one tries again.
    """
    from orchestrate.observe.logging import get_logger

    stop = asyncio.Event()

    async def loop() -> None:
        while not stop.is_set():
            try:
                await read_queues(engine.store, now=engine.clock.now(), registry=registry)
            except Exception as exc:  # noqa: BLE001 - the gauges wait for the store to come back
                get_logger().warning("queue_metrics_failed", error_class=type(exc).__name__, error=str(exc))
            try:
                await asyncio.wait_for(stop.wait(), interval_seconds)
            except TimeoutError:
                pass

    task = asyncio.create_task(loop())
    try:
        yield
    finally:
        stop.set()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


_DEFAULT_BUCKETS: dict[str, Sequence[float]] = {
    "step": STEP_BUCKETS,
    "run": RUN_BUCKETS,
    "review": REVIEW_BUCKETS,
    "model": MODEL_BUCKETS,
}
_QUEUES_SHOWN: dict[int, set[str]] = {}
