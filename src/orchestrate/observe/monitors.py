"""Monitors: a step's health and drift over its recent executions, with alert rules.

A :class:`MonitorObserver` watches the steps this process runs. A :class:`Monitor`
closes a window every ``window`` executions of a step, computes a metric over it and
asks its rule whether it is abnormal; a :class:`DriftMonitor` feeds a step's outputs (or
one field of them) to a :class:`~orchestrate.observe.drift.DriftDetector` and alerts
when the recent window has drifted from the reference::

    monitors = MonitorObserver(
        [
            Monitor("fraud_check", "fallback_rate", Threshold(above=0.05)),
            Monitor("fraud_check", "latency_p95", Deviation(sigmas=2)),  # seed 002's "2 standard deviations"
            Monitor("fraud_check", "field_mean", Cusum(), field="confidence"),
            DriftMonitor("fraud_check", Drift("psi", 0.2), field="score"),
        ],
        on_alert=page_someone,
    )
    engine = Engine(store, observers=[monitors])

Rules: :class:`Threshold`; :class:`Deviation` (standard deviations from a baseline learned from the windows
it judged normal); the change detectors :class:`~orchestrate.observe.change.Cusum` and
:class:`~orchestrate.observe.change.PageHinkley`, which fire on a sustained shift and
not on one noisy window. An alert fires once when a monitor turns abnormal and resolves
once when it is normal again (``monitor_alert`` / ``monitor_resolved`` log records, and
``on_alert``).

The same monitors, and :class:`OutcomeMonitor` s over outcome feedback, are evaluated from
the store by :class:`orchestrate.observe.alerts.AlertEvaluator`: shared by every worker,
with durable alerts, acknowledgements and actions (``action=``).
"""

from __future__ import annotations

import math
import statistics
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from orchestrate.errors import InvalidInputError
from orchestrate.observe.change import ChangeState, Cusum, PageHinkley
from orchestrate.observe.drift import Drift, DriftDetector, DriftReading, Encode
from orchestrate.observe.logging import get_logger
from orchestrate.observe.observer import Observer

Metric = Literal[
    "latency_mean", "latency_p95", "error_rate", "fallback_rate", "retry_rate", "attempts_mean", "field_mean"
]
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


Rule = Threshold | Deviation | Cusum | PageHinkley

Action = Literal["fallback", "review"]
ACTIONS: tuple[str, ...] = Action.__args__  # type: ignore[attr-defined]


def _check_action(action: str | None, where: str) -> None:
    if action is not None and action not in ACTIONS:
        raise InvalidInputError(f"{where}: action must be 'fallback', 'review' or None, not {action!r}")


def field_of(value: Any, path: str) -> Any:
    """``path``'s value in ``value`` (dotted keys or attributes), or ``None`` when absent."""
    for part in path.split("."):
        value = value.get(part) if isinstance(value, dict) else getattr(value, part, None)
        if value is None:
            return None
    return value


@dataclass(frozen=True)
class Monitor:
    """A metric of one step over windows of ``window`` executions, and the rule that judges it.

    Args:
        step: the step's name.
        metric: ``latency_mean``, ``latency_p95`` (seconds), ``error_rate`` (failed for
            good), ``fallback_rate``, ``retry_rate`` (more than one attempt),
            ``attempts_mean``, or ``field_mean``: the mean of a numeric ``field`` of the
            step's output (a confidence, a score, an amount) over the executions that
            returned one.
        rule: a :class:`Threshold`, a :class:`Deviation`, a :class:`Cusum` or a
            :class:`PageHinkley`.
        window: executions per window.
        workflow: only this workflow's step (default: any workflow's step of that name).
        field: for ``field_mean``: the output's field, dotted for nested ones
            (``"scores.fraud"``).
        name: the monitor's name (default ``<step>.<metric>``, or ``<step>.<field>`` for
            ``field_mean``).
        action: what a durable alert of it does to the step until someone acknowledges
            it (:class:`~orchestrate.observe.alerts.AlertEvaluator`): ``"fallback"`` (take
            the step's fallback instead of running it) or ``"review"`` (people review its
            output before the run goes on); ``None``: only alert.
    """

    step: str
    metric: Metric
    rule: Rule
    window: int = 100
    workflow: str | None = None
    field: str | None = None
    name: str = ""
    action: Action | None = None

    def __post_init__(self) -> None:
        if self.metric not in METRICS:
            raise InvalidInputError(f"unknown metric {self.metric!r}; use one of {', '.join(METRICS)}")
        if self.window < 1:
            raise InvalidInputError("a monitor's window needs at least one execution")
        if (self.metric == "field_mean") != bool(self.field):
            raise InvalidInputError(
                f"monitor on {self.step!r}: field= goes with metric='field_mean' (and it needs one)"
            )
        if not isinstance(self.rule, Threshold | Deviation | Cusum | PageHinkley):
            raise InvalidInputError(
                f"monitor on {self.step!r}: rule must be Threshold, Deviation, Cusum or PageHinkley, "
                f"not {type(self.rule).__name__}"
            )
        _check_action(self.action, f"monitor on {self.step!r}")
        if not self.name:
            suffix = self.field if self.metric == "field_mean" else self.metric
            object.__setattr__(self, "name", f"{self.step}.{suffix}")


@dataclass(frozen=True)
class DriftMonitor:
    """Drift of one step's outputs (or a field of them) from a reference window.

    Args:
        step: the step's name.
        rule: the :class:`~orchestrate.observe.drift.Drift` test, threshold and windows.
        field: the output's field to watch, dotted for nested ones (default: the whole
            output, which must then be a number, a category or a text as the test needs).
        workflow: only this workflow's step (default: any workflow's step of that name).
        encode: for the ``embedding`` and ``mmd`` tests: texts to vectors (e.g.
            ``LocalEmbedder().encode``, MiniLM).
        name: the monitor's name (default ``<step>.<field>.drift`` or ``<step>.drift``).
        action: as :class:`Monitor`'s.
    """

    step: str
    rule: Drift
    field: str | None = None
    workflow: str | None = None
    encode: Encode | None = None
    name: str = ""
    action: Action | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.rule, Drift):
            raise InvalidInputError(f"drift monitor on {self.step!r}: rule must be a Drift, not {self.rule!r}")
        DriftDetector(self.rule, encode=self.encode)  # refuses a text test without an encoder
        _check_action(self.action, f"drift monitor on {self.step!r}")
        if not self.name:
            middle = f".{self.field}" if self.field else ""
            object.__setattr__(self, "name", f"{self.step}{middle}.drift")


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
    output: Any = None


@dataclass
class _State:
    window: list[_Execution] = field(default_factory=list)
    history: deque[float] = field(default_factory=deque)
    change: ChangeState | None = None
    firing: bool = False


def measure(metric: str, executions: Sequence[_Execution], field_path: str | None = None) -> float | None:
    """The metric over a window of executions (``None``: no execution gave a ``field_mean`` value)."""
    n = len(executions)
    if metric == "field_mean":
        assert field_path is not None
        values = [_number(field_of(e.output, field_path)) for e in executions if not e.failed]
        numbers = [v for v in values if v is not None]
        return statistics.fmean(numbers) if numbers else None
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


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


class MonitorObserver(Observer):
    """Evaluates :class:`Monitor` s and :class:`DriftMonitor` s on the steps this process runs.

    A step's output reaches it through the ``output`` of the ``step_succeeded`` hook; a
    fallback's answer counts for the health metrics but not for ``field_mean`` or drift
    (it is not what the step produced).

    Args:
        monitors: what to watch.
        on_alert: called with each :class:`Alert` (firing and resolved), besides the log.
    """

    def __init__(
        self, monitors: Sequence[Monitor | DriftMonitor], *, on_alert: Callable[[Alert], Any] | None = None
    ) -> None:
        for monitor in monitors:
            if not isinstance(monitor, Monitor | DriftMonitor):
                raise InvalidInputError(f"MonitorObserver takes Monitor and DriftMonitor, not {monitor!r}")
        names = [m.name for m in monitors]
        if len(set(names)) != len(names):
            raise InvalidInputError(f"monitor names must differ: {names}")
        self.monitors = tuple(monitors)
        self.on_alert = on_alert
        self.alerts: deque[Alert] = deque(maxlen=1000)  # the latest, for a look without a sink
        self._by_step: dict[str, list[Monitor | DriftMonitor]] = {}
        for monitor in self.monitors:
            self._by_step.setdefault(monitor.step, []).append(monitor)
        self._states: dict[tuple[str, str], _State] = {}
        self._detectors: dict[tuple[str, str], DriftDetector] = {}

    def firing(self) -> list[str]:
        """Names of the monitors firing now (per workflow: ``<workflow>:<monitor>``)."""
        return sorted(f"{wf}:{name}" for (wf, name), state in self._states.items() if state.firing)

    def drift_scores(self) -> dict[str, DriftReading]:
        """The latest reading of each drift monitor that has scored (``<workflow>:<monitor>``)."""
        return {
            f"{wf}:{name}": detector.last
            for (wf, name), detector in sorted(self._detectors.items())
            if detector.last is not None
        }

    def score(self, workflow: str, step: str) -> float | None:
        """The latest drift score of ``workflow``'s step ``step`` (the highest of its drift
        monitors'), or ``None`` when none has scored it yet."""
        scores = [
            detector.last.score
            for monitor in self._by_step.get(step, ())
            if isinstance(monitor, DriftMonitor)
            and (detector := self._detectors.get((workflow, monitor.name))) is not None
            and detector.last is not None
        ]
        return max(scores) if scores else None

    def attach(self, engine: Any) -> None:
        """Write this observer's drift scores into ``engine``'s step records (``meta["drift_score"]``).

        The score a record carries is the step's latest reading when the record is
        written: the recent window up to the executions before it.
        """
        engine.drift = self

    def detector(self, monitor: str, *, workflow: str) -> DriftDetector:
        """The drift detector of ``monitor`` for ``workflow`` (to pin or re-baseline it).

        Raises:
            InvalidInputError: no drift monitor of that name has seen that workflow's step.
        """
        found = self._detectors.get((workflow, monitor))
        if found is None:
            known = ", ".join(f"{wf}:{name}" for wf, name in sorted(self._detectors)) or "none yet"
            raise InvalidInputError(f"no drift detector {workflow}:{monitor} (known: {known})")
        return found

    def step_succeeded(
        self, *, workflow: str, name: str, attempts: int, latency_s: float, at: float, **future_kwargs: Any
    ) -> None:
        """One execution that succeeded (``output``, when the engine passes it, feeds drift)."""
        if name not in self._by_step:  # the common case: nothing watches this step
            return
        self._add(workflow, name, _Execution(latency_s, False, False, attempts, future_kwargs.get("output")), at)

    def step_fallback(
        self, *, workflow: str, name: str, attempts: int, latency_s: float, at: float, **future_kwargs: Any
    ) -> None:
        """One execution answered by a fallback."""
        if name not in self._by_step:
            return
        self._add(workflow, name, _Execution(latency_s, False, True, attempts), at)

    def step_failed(
        self, *, workflow: str, name: str, attempts: int, latency_s: float, at: float, **future_kwargs: Any
    ) -> None:
        """One execution that failed."""
        if name not in self._by_step:
            return
        self._add(workflow, name, _Execution(latency_s, True, False, attempts), at)

    def _add(self, workflow: str, step: str, execution: _Execution, at: float) -> None:
        for monitor in self._by_step.get(step, ()):
            if monitor.workflow is not None and monitor.workflow != workflow:
                continue
            state = self._states.get((workflow, monitor.name))
            if state is None:
                state = self._states[(workflow, monitor.name)] = self._new_state(monitor)
            if isinstance(monitor, DriftMonitor):
                self._drift(monitor, state, workflow, execution, at)
                continue
            state.window.append(execution)
            if len(state.window) >= monitor.window:
                self._judge(monitor, state, workflow, at)

    @staticmethod
    def _new_state(monitor: Monitor | DriftMonitor) -> _State:
        rule = monitor.rule
        baseline = rule.baseline if isinstance(rule, Deviation) else 1
        change = rule.start() if isinstance(rule, Cusum | PageHinkley) else None
        return _State(history=deque(maxlen=baseline), change=change)

    def _judge(self, monitor: Monitor, state: _State, workflow: str, at: float) -> None:
        value = measure(monitor.metric, state.window, monitor.field)
        state.window = []
        if value is None:
            return
        rule = monitor.rule
        if isinstance(rule, Cusum | PageHinkley):
            assert state.change is not None
            state.change, reason = rule.update(state.change, value)
        else:
            reason = rule.decide(value, state.history)
            if reason is None:
                state.history.append(value)  # only normal windows teach the baseline
        self._transition(monitor.name, monitor.step, state, workflow, value, reason, at)

    def _drift(self, monitor: DriftMonitor, state: _State, workflow: str, execution: _Execution, at: float) -> None:
        if execution.failed or execution.fallback:
            return
        value = execution.output if monitor.field is None else field_of(execution.output, monitor.field)
        if value is None:
            return
        detector = self._detectors.get((workflow, monitor.name))
        if detector is None:
            detector = self._detectors[(workflow, monitor.name)] = DriftDetector(monitor.rule, encode=monitor.encode)
        try:
            reading = detector.add(value)
        except InvalidInputError as exc:
            get_logger().warning("drift_value_refused", monitor=monitor.name, workflow=workflow, reason=str(exc))
            return
        if reading is not None:
            self._transition(monitor.name, monitor.step, state, workflow, reading.score, reading.reason, at)

    def _transition(
        self, name: str, step: str, state: _State, workflow: str, value: float, reason: str | None, at: float
    ) -> None:
        if reason is None:
            if state.firing:
                state.firing = False
                self._tell(Alert(name, "resolved", value, "back to normal", workflow, step, at))
        elif not state.firing:
            state.firing = True
            self._tell(Alert(name, "firing", value, reason, workflow, step, at))

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
