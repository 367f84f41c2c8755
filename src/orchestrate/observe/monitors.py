"""Monitors: a step's health over windows of its recent executions, with alert rules.

A first cut, in one process's memory: a :class:`MonitorObserver` watches the steps this
process runs, closes a window every ``window`` executions of a step, computes a metric
over it and asks the monitor's rule whether it is abnormal::

    monitors = MonitorObserver(
        [
            Monitor("fraud_check", "fallback_rate", Threshold(above=0.05)),
            Monitor("fraud_check", "latency_p95", Deviation(sigmas=2)),  # seed 002's "2 standard deviations"
        ],
        on_alert=page_someone,
    )
    engine = Engine(store, observers=[monitors])

An alert fires once when a monitor turns abnormal and resolves once when it is normal
again (``monitor_alert`` / ``monitor_resolved`` log records, and ``on_alert``). A
:class:`Deviation` rule learns its baseline from the windows it judged normal (the ones
that fired are kept out of it).

Not yet: monitors evaluated from the store (shared by every worker, surviving restarts),
durable alert states with acknowledgements, change detection robust to noise
(Page-Hinkley, CUSUM), drift of inputs and outputs, outcome feedback, actions.
"""

from __future__ import annotations

import math
import statistics
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from orchestrate.errors import InvalidInputError
from orchestrate.observe.logging import get_logger
from orchestrate.observe.observer import Observer

Metric = Literal["latency_mean", "latency_p95", "error_rate", "fallback_rate", "retry_rate", "attempts_mean"]
METRICS: tuple[str, ...] = Metric.__args__  # type: ignore[attr-defined]


@dataclass(frozen=True)
class Threshold:
    """Abnormal above ``above`` or below ``below`` (either or both)."""

    above: float | None = None
    below: float | None = None

    def __post_init__(self) -> None:
        if self.above is None and self.below is None:
            raise InvalidInputError("Threshold needs above=, below= or both")

    def decide(self, value: float, history: Sequence[float]) -> str | None:
        """Why ``value`` is abnormal, or ``None``."""
        if self.above is not None and value > self.above:
            return f"{value:.4g} is above {self.above:g}"
        if self.below is not None and value < self.below:
            return f"{value:.4g} is below {self.below:g}"
        return None


@dataclass(frozen=True)
class Deviation:
    """Abnormal more than ``sigmas`` standard deviations away from the baseline.

    The baseline is the mean and standard deviation of the last ``baseline`` windows
    judged normal; nothing fires before ``min_windows`` of them. ``min_delta`` is the
    smallest absolute change that counts (a steady metric has a tiny deviation).

    Args:
        sigmas: how far, in standard deviations.
        direction: ``"up"``, ``"down"`` or ``"both"``.
        baseline: windows kept in the baseline.
        min_windows: windows needed before it judges.
        min_delta: the smallest absolute difference from the mean that may fire.
    """

    sigmas: float = 2.0
    direction: Literal["up", "down", "both"] = "both"
    baseline: int = 50
    min_windows: int = 5
    min_delta: float = 0.0

    def __post_init__(self) -> None:
        if self.sigmas <= 0 or self.baseline < 2 or not 2 <= self.min_windows <= self.baseline:
            raise InvalidInputError("Deviation needs sigmas > 0 and 2 <= min_windows <= baseline")

    def decide(self, value: float, history: Sequence[float]) -> str | None:
        """Why ``value`` is abnormal against ``history``, or ``None``."""
        if len(history) < self.min_windows:
            return None
        mean = statistics.fmean(history)
        spread = statistics.pstdev(history)
        delta = value - mean
        if abs(delta) < self.min_delta or abs(delta) <= self.sigmas * spread:
            return None
        if (self.direction == "up" and delta < 0) or (self.direction == "down" and delta > 0):
            return None
        sigmas = math.inf if spread == 0 else abs(delta) / spread
        return f"{value:.4g} is {sigmas:.3g} standard deviations from {mean:.4g} (sd {spread:.3g})"


Rule = Threshold | Deviation


@dataclass(frozen=True)
class Monitor:
    """A metric of one step over windows of ``window`` executions, and the rule that judges it.

    Args:
        step: the step's name.
        metric: ``latency_mean``, ``latency_p95`` (seconds), ``error_rate`` (failed for
            good), ``fallback_rate``, ``retry_rate`` (more than one attempt),
            ``attempts_mean``.
        rule: a :class:`Threshold` or a :class:`Deviation`.
        window: executions per window.
        workflow: only this workflow's step (default: any workflow's step of that name).
        name: the monitor's name (default ``<step>.<metric>``).
    """

    step: str
    metric: Metric
    rule: Rule
    window: int = 100
    workflow: str | None = None
    name: str = ""

    def __post_init__(self) -> None:
        if self.metric not in METRICS:
            raise InvalidInputError(f"unknown metric {self.metric!r}; use one of {', '.join(METRICS)}")
        if self.window < 1:
            raise InvalidInputError("a monitor's window needs at least one execution")
        if not self.name:
            object.__setattr__(self, "name", f"{self.step}.{self.metric}")


@dataclass(frozen=True)
class Alert:
    """A monitor turned abnormal (``state="firing"``) or normal again (``"resolved"``)."""

    monitor: str
    state: Literal["firing", "resolved"]
    value: float
    reason: str
    workflow: str
    step: str
    at: float


@dataclass
class _Execution:
    latency_s: float
    failed: bool
    fallback: bool
    attempts: int


@dataclass
class _State:
    window: list[_Execution] = field(default_factory=list)
    history: deque[float] = field(default_factory=deque)
    firing: bool = False


def measure(metric: str, executions: Sequence[_Execution]) -> float:
    """The metric over a window of executions."""
    n = len(executions)
    if metric == "latency_mean":
        return statistics.fmean(e.latency_s for e in executions)
    if metric == "latency_p95":
        ordered = sorted(e.latency_s for e in executions)
        return ordered[min(n - 1, math.ceil(0.95 * n) - 1)]
    if metric == "error_rate":
        return sum(e.failed for e in executions) / n
    if metric == "fallback_rate":
        return sum(e.fallback for e in executions) / n
    if metric == "retry_rate":
        return sum(e.attempts > 1 for e in executions) / n
    return statistics.fmean(e.attempts for e in executions)


class MonitorObserver(Observer):
    """Evaluates :class:`Monitor` s on the steps this process runs.

    Args:
        monitors: what to watch.
        on_alert: called with each :class:`Alert` (firing and resolved), besides the log.
    """

    def __init__(self, monitors: Sequence[Monitor], *, on_alert: Callable[[Alert], Any] | None = None) -> None:
        names = [m.name for m in monitors]
        if len(set(names)) != len(names):
            raise InvalidInputError(f"monitor names must differ: {names}")
        self.monitors = tuple(monitors)
        self.on_alert = on_alert
        self.alerts: deque[Alert] = deque(maxlen=1000)  # the latest, for a look without a sink
        self._by_step: dict[str, list[Monitor]] = {}
        for monitor in self.monitors:
            self._by_step.setdefault(monitor.step, []).append(monitor)
        self._states: dict[tuple[str, str], _State] = {}

    def firing(self) -> list[str]:
        """Names of the monitors firing now (per workflow: ``<workflow>:<monitor>``)."""
        return sorted(f"{wf}:{name}" for (wf, name), state in self._states.items() if state.firing)

    def step_succeeded(
        self, *, workflow: str, name: str, attempts: int, latency_s: float, at: float, **future_kwargs: Any
    ) -> None:
        """One execution that succeeded."""
        self._add(workflow, name, _Execution(latency_s, False, False, attempts), at)

    def step_fallback(
        self, *, workflow: str, name: str, attempts: int, latency_s: float, at: float, **future_kwargs: Any
    ) -> None:
        """One execution answered by a fallback."""
        self._add(workflow, name, _Execution(latency_s, False, True, attempts), at)

    def step_failed(
        self, *, workflow: str, name: str, attempts: int, latency_s: float, at: float, **future_kwargs: Any
    ) -> None:
        """One execution that failed."""
        self._add(workflow, name, _Execution(latency_s, True, False, attempts), at)

    def _add(self, workflow: str, step: str, execution: _Execution, at: float) -> None:
        for monitor in self._by_step.get(step, ()):
            if monitor.workflow is not None and monitor.workflow != workflow:
                continue
            state = self._states.get((workflow, monitor.name))
            if state is None:
                baseline = monitor.rule.baseline if isinstance(monitor.rule, Deviation) else 1
                state = self._states[(workflow, monitor.name)] = _State(history=deque(maxlen=baseline))
            state.window.append(execution)
            if len(state.window) >= monitor.window:
                self._judge(monitor, state, workflow, at)

    def _judge(self, monitor: Monitor, state: _State, workflow: str, at: float) -> None:
        value = measure(monitor.metric, state.window)
        state.window = []
        reason = monitor.rule.decide(value, state.history)
        if reason is None:
            state.history.append(value)  # only normal windows teach the baseline
            if state.firing:
                state.firing = False
                self._tell(Alert(monitor.name, "resolved", value, "back to normal", workflow, monitor.step, at))
        elif not state.firing:
            state.firing = True
            self._tell(Alert(monitor.name, "firing", value, reason, workflow, monitor.step, at))

    def _tell(self, alert: Alert) -> None:
        self.alerts.append(alert)
        log = get_logger()
        fields = {
            "monitor": alert.monitor,
            "workflow": alert.workflow,
            "step": alert.step,
            "value": alert.value,
            "reason": alert.reason,
        }
        if alert.state == "firing":
            log.warning("monitor_alert", **fields)
        else:
            log.info("monitor_resolved", **fields)
        if self.on_alert is not None:
            self.on_alert(alert)
