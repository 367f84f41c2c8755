"""Durable, shared monitors: evaluated from the store, alerts kept in it, actions on steps.

An :class:`AlertEvaluator` reads the step records of the steps its monitors watch, and
the outcome feedback, from the store in batches (one query per pass, never one per
step), feeds them to the monitors (:mod:`orchestrate.observe.monitors`) and writes what
changed as durable alerts. Every worker may run one: an alert is one row per incident,
inserted if absent, and moved firing → acknowledged → resolved with compare-and-set,
so two workers that see the same incident make one alert and notify once. After an
alert resolves, the same monitor stays quiet for ``cooldown_seconds``.

Sinks hear of the transitions this process wrote: :class:`LogSink` (``monitor_alert`` /
``monitor_resolved`` records) and :class:`WebhookSink` (a JSON POST signed with
HMAC-SHA256). ``orchestrate alerts`` lists and acknowledges them.

**Actions.** A monitor with ``action="fallback"`` or ``action="review"`` diverts its
step while its alert holds (from firing until someone acknowledges it): the step takes
its fallback instead of running (a step with none goes to review), or people review its
output before the run goes on. The engine asks :class:`Diversions` (attached with
:meth:`AlertEvaluator.attach` or :meth:`Diversions.attach`), which reads the store's
diverting alerts at most every ``ttl_seconds``; the decision is recorded in the run
(a ``wait:diverted:<step>`` record and a ``step_diverted`` event), so a replay follows it.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import statistics
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from orchestrate.errors import InvalidInputError
from orchestrate.observe.change import Cusum, PageHinkley
from orchestrate.observe.logging import get_logger
from orchestrate.observe.monitors import (
    ACTIONS,
    Action,
    Alert,
    Deviation,
    DriftMonitor,
    Monitor,
    MonitorObserver,
    Rule,
    Threshold,
    _Execution,
)
from orchestrate.store._quality import (
    AlertRecord,
    AlertState,
    FeedbackRecord,
    QualityStore,
    alert_id,
    failed,
    is_fallback,
)
from orchestrate.store._quality_sql import quality_for
from orchestrate.store.base import EventKind, StepRecord

__all__ = [
    "DIVERTED_EVENT",
    "AlertEvaluator",
    "AlertRecord",
    "AlertSink",
    "AlertState",
    "Diversions",
    "FeedbackRecord",
    "LogSink",
    "OutcomeMonitor",
    "WebhookSink",
    "acknowledge",
    "sign",
]

OutcomeMetric = Literal["score_mean", "outcome_rate", "label_rate"]

DIVERTED_EVENT = EventKind.STEP_DIVERTED
"""The kind of the event a diversion writes into the run's history (data: alert_id, action)."""


@dataclass(frozen=True)
class OutcomeMonitor:
    """A metric of a workflow's outcome feedback over windows of ``window`` entries.

    Args:
        workflow: the workflow whose runs the feedback is about.
        metric: ``score_mean`` (the mean ``score``), ``outcome_rate`` (the share whose
            ``outcome`` is ``match``) or ``label_rate`` (the share whose ``label`` is
            ``match``: the rate of human corrections, say).
        rule: a :class:`Threshold`, :class:`Deviation`, :class:`Cusum` or :class:`PageHinkley`.
        match: the outcome or label counted by the rates.
        window: entries per window.
        step: only the feedback about this step (and the step an action diverts).
        name: the monitor's name (default ``<workflow>.<metric>`` or ``<workflow>.<match>_rate``).
        action: as :class:`~orchestrate.observe.monitors.Monitor`'s (needs ``step``).
    """

    workflow: str
    metric: OutcomeMetric
    rule: Rule
    match: str | None = None
    window: int = 50
    step: str | None = None
    name: str = ""
    action: Action | None = None

    def __post_init__(self) -> None:
        if self.metric not in ("score_mean", "outcome_rate", "label_rate"):
            raise InvalidInputError(f"outcome monitor: unknown metric {self.metric!r}")
        if (self.metric != "score_mean") != (self.match is not None):
            raise InvalidInputError(f"outcome monitor {self.metric!r}: match= goes with the rates (and they need one)")
        if self.window < 1:
            raise InvalidInputError("an outcome monitor's window needs at least one entry")
        if not isinstance(self.rule, Threshold | Deviation | Cusum | PageHinkley):
            raise InvalidInputError("outcome monitor: rule must be Threshold, Deviation, Cusum or PageHinkley")
        if self.action is not None and (self.action not in ACTIONS or self.step is None):
            raise InvalidInputError("outcome monitor: action= needs step= and is 'fallback' or 'review'")
        if not self.name:
            suffix = self.metric if self.match is None else f"{self.match}_rate"
            object.__setattr__(self, "name", f"{self.workflow}.{suffix}")

    def measure(self, entries: Sequence[FeedbackRecord]) -> float | None:
        """The metric over a window of entries (``None``: no score in it)."""
        if self.metric == "score_mean":
            scores = [e.score for e in entries if e.score is not None]
            return statistics.fmean(scores) if scores else None
        if self.metric == "outcome_rate":
            return sum(e.outcome == self.match for e in entries) / len(entries)
        return sum(e.label == self.match for e in entries) / len(entries)


AnyMonitor = Monitor | DriftMonitor | OutcomeMonitor


class AlertSink(Protocol):
    """Where alert transitions go; called once per transition, by the process that wrote it."""

    async def send(self, alert: AlertRecord, *, transition: str) -> None:
        """Deliver ``alert`` (``transition``: ``fired``, ``resolved`` or ``acknowledged``)."""


class LogSink:
    """Alerts as log records: ``monitor_alert`` (warning) and ``monitor_resolved`` (info)."""

    async def send(self, alert: AlertRecord, *, transition: str) -> None:
        """Write the record."""
        fields = {
            "alert_id": alert.alert_id,
            "monitor": alert.monitor,
            "workflow": alert.workflow,
            "step": alert.step,
            "value": alert.value,
            "reason": alert.reason,
            "action": alert.action,
        }
        if transition == "fired":
            get_logger().warning("monitor_alert", **fields)
        else:
            get_logger().info(f"monitor_{transition}", **fields)


def sign(secret: str, body: bytes, timestamp: str) -> str:
    """The signature a :class:`WebhookSink` sends: ``sha256=`` HMAC of ``<timestamp>.<body>``."""
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


class WebhookSink:
    """Alerts POSTed as JSON, signed: ``X-Orchestrate-Signature: sha256=<HMAC-SHA256 of "<timestamp>.<body>">``
    with the ``X-Orchestrate-Timestamp`` header, so a receiver checks the sender and refuses replays.

    A delivery that fails is logged (``alert_webhook_failed``) and not retried; the
    alert stays in the store (``orchestrate alerts``).

    Args:
        url: where to POST.
        secret: the shared HMAC key (never sent, never logged).
        timeout_seconds: how long a delivery may take.
    """

    def __init__(self, url: str, *, secret: str, timeout_seconds: float = 5.0) -> None:
        if not secret:
            raise InvalidInputError("WebhookSink needs a secret= to sign with")
        self.url = url
        self._secret = secret
        self.timeout_seconds = timeout_seconds

    async def send(self, alert: AlertRecord, *, transition: str) -> None:
        """POST the alert; log a failure."""
        import httpx

        body = json.dumps({"transition": transition, "alert": alert.to_dict()}, sort_keys=True).encode()
        stamp = str(int(time.time()))
        headers = {
            "Content-Type": "application/json",
            "X-Orchestrate-Timestamp": stamp,
            "X-Orchestrate-Signature": sign(self._secret, body, stamp),
        }
        try:
            async with httpx.AsyncClient(timeout=self.timeout_seconds) as client:
                response = await client.post(self.url, content=body, headers=headers)
                response.raise_for_status()
        except httpx.HTTPError as exc:
            get_logger().warning(
                "alert_webhook_failed", alert_id=alert.alert_id, url=self.url, error_class=type(exc).__name__
            )


class _Collector(MonitorObserver):
    """The in-memory monitors, telling their transitions to the evaluator instead of the log."""

    def __init__(self, monitors: Sequence[Monitor | DriftMonitor]) -> None:
        super().__init__(monitors)
        self.pending: list[Alert] = []

    def _tell(self, alert: Alert) -> None:
        self.pending.append(alert)


def _diverted(record: StepRecord) -> bool:
    """A diversion's record (``wait:diverted:<key>``) or a fallback an alert's action took."""
    meta = record.meta
    return record.step_key.startswith("wait:") or bool(meta.get("diverted")) or meta.get("fallback_reason") == "alert"


def _execution(record: StepRecord) -> _Execution:
    latency = record.meta.get("latency_ms")
    latency_s = float(latency) / 1000 if isinstance(latency, int | float) else 0.0
    gone, fell = failed(record), is_fallback(record)
    output = None if gone or fell else record.output
    return _Execution(latency_s, gone, fell, record.attempts, output)


class AlertEvaluator:
    """Monitors evaluated from the store, alerts written to it; one per worker, any number of workers.

    Args:
        store: the store the workers share.
        monitors: :class:`~orchestrate.observe.monitors.Monitor`,
            :class:`~orchestrate.observe.monitors.DriftMonitor` and :class:`OutcomeMonitor` s.
        sinks: where transitions this process wrote go (default: the log).
        cooldown_seconds: after an alert resolves, its monitor does not fire again for this long
            (in the records' time: from the reading that resolved it to the one that would fire).
        batch: records read per query.
        interval_seconds: the pause between passes of :meth:`run`.
        prime: records per watched step read on the first pass, to fill windows and
            references (the newest ones; ``0``: start with what comes next).
        lag_seconds: how far back each pass reads again, for records committed late
            (their ``finished_at`` is the writer's clock, their commit comes after).
        clock: the time alerts are stamped with.
    """

    def __init__(
        self,
        store: Any,
        monitors: Iterable[AnyMonitor],
        *,
        sinks: Sequence[AlertSink] | None = None,
        cooldown_seconds: float = 300.0,
        batch: int = 1000,
        interval_seconds: float = 5.0,
        prime: int = 1000,
        lag_seconds: float = 30.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        monitors = tuple(monitors)
        for monitor in monitors:
            if not isinstance(monitor, Monitor | DriftMonitor | OutcomeMonitor):
                raise InvalidInputError(f"AlertEvaluator takes monitors, not {monitor!r}")
        self.store = store
        self.monitors = monitors
        self.sinks: tuple[AlertSink, ...] = tuple(sinks) if sinks is not None else (LogSink(),)
        self.cooldown_seconds = cooldown_seconds
        self.batch = batch
        self.interval_seconds = interval_seconds
        self.prime = prime
        self.lag_seconds = lag_seconds
        self.clock = clock
        self._steps = _Collector([m for m in monitors if not isinstance(m, OutcomeMonitor)])
        self._outcomes = [m for m in monitors if isinstance(m, OutcomeMonitor)]
        self._outcome_windows: dict[str, list[FeedbackRecord]] = {m.name: [] for m in self._outcomes}
        self._outcome_new = {m.name: MonitorObserver._new_state(_as_monitor(m)) for m in self._outcomes}
        self._actions = {m.name: m.action for m in monitors}
        self._names = sorted({m.step for m in monitors if not isinstance(m, OutcomeMonitor)})
        self._after: float | None = None
        self._seen: dict[tuple[str, str], float] = {}
        self._feedback_after: float | None = None
        self._feedback_seen: dict[str, float] = {}
        self.passes = 0
        self.records_read = 0
        self.queries = 0
        self._attached: list[Diversions] = []

    @property
    def detectors(self) -> MonitorObserver:
        """The in-memory monitors (``detector(...)`` to pin or re-baseline a drift reference)."""
        return self._steps

    def attach(self, engine: Any, *, ttl_seconds: float = 2.0) -> Diversions:
        """Let this evaluator's actions divert ``engine``'s steps (see :class:`Diversions`), and
        its drift monitors' latest scores go into the step records (``meta["drift_score"]``)."""
        if any(isinstance(m, DriftMonitor) for m in self.monitors):
            self._steps.attach(engine)
        diversions = Diversions.attach(engine, self.store, ttl_seconds=ttl_seconds)
        # An alert this evaluator writes takes effect in the attached engines at once, not
        # when their cache of diverting alerts next expires.
        self._attached.append(diversions)
        return diversions

    async def run(self, stop: asyncio.Event | None = None) -> None:
        """Evaluate every ``interval_seconds`` until ``stop`` is set (or the task is cancelled).

        A pass that fails (the store is away) is logged and the next one tries again.
        """
        stop = stop or asyncio.Event()
        while not stop.is_set():
            try:
                await self.evaluate()
            except Exception as exc:  # noqa: BLE001 - the evaluator outlives a store outage
                get_logger().warning("monitor_evaluation_failed", error_class=type(exc).__name__, error=str(exc))
            try:
                await asyncio.wait_for(stop.wait(), self.interval_seconds)
            except TimeoutError:
                pass

    async def evaluate(self) -> list[AlertRecord]:
        """One pass: read what is new, feed the monitors, write the transitions.

        Returns:
            the alerts this process fired or resolved in this pass.
        """
        quality = quality_for(self.store)
        self.passes += 1
        if self._names:
            await self._read_steps(quality)
        if self._outcomes:
            await self._read_feedback(quality)
        written: list[AlertRecord] = []
        pending, self._steps.pending = self._steps.pending, []
        for alert in pending:
            record = await self._write(quality, alert)
            if record is not None:
                written.append(record)
        return written

    async def _read_steps(self, quality: QualityStore) -> None:
        if self._after is None:
            rows: list[tuple[str, StepRecord]] = []
            if self.prime:
                for name in self._names:
                    self.queries += 1
                    rows.extend(await quality.step_results(name, last=self.prime))
            rows.sort(key=lambda r: (r[1].finished_at, r[1].run_id, r[1].step_key))
            self._feed(rows)
            self._after = rows[-1][1].finished_at if rows else self.clock() - self.lag_seconds
        start = self._after - self.lag_seconds
        while True:  # pages on by time: a full page of records seen already is passed over, not stopped at
            self.queries += 1
            rows = await quality.steps_since(self._names, after=start, limit=self.batch)
            self._feed(rows)
            if not rows:
                break
            last = rows[-1][1].finished_at
            self._after = max(self._after, last)
            if len(rows) < self.batch or last <= start:  # the end, or a full page at one instant
                break
            start = last
        floor = self._after - self.lag_seconds
        self._seen = {k: at for k, at in self._seen.items() if at >= floor}

    def _feed(self, rows: Sequence[tuple[str, StepRecord]]) -> int:
        fresh = 0
        for workflow, record in rows:
            key = (record.run_id, record.step_key)
            if key in self._seen:
                continue
            self._seen[key] = record.finished_at
            fresh += 1
            if _diverted(record):  # an alert's own doing says nothing of the step's health
                continue
            self._steps._add(workflow, record.name, _execution(record), record.finished_at)
        self.records_read += fresh
        return fresh

    async def _read_feedback(self, quality: QualityStore) -> None:
        after = None if self._feedback_after is None else self._feedback_after - self.lag_seconds
        while True:  # pages on by time, as the step records do
            self.queries += 1
            entries = await quality.list_feedback(after=after, limit=self.batch)
            fresh = [e for e in entries if e.feedback_id not in self._feedback_seen]
            for entry in fresh:
                self._feedback_seen[entry.feedback_id] = entry.at
                self._judge_feedback(entry)
            if not entries:
                break
            last = entries[-1].at
            self._feedback_after = max(self._feedback_after or 0.0, last)
            if len(entries) < self.batch or (after is not None and last <= after):
                break
            after = last
        if self._feedback_after is not None:
            floor = self._feedback_after - self.lag_seconds
            self._feedback_seen = {k: at for k, at in self._feedback_seen.items() if at >= floor}

    def _judge_feedback(self, entry: FeedbackRecord) -> None:
        for monitor in self._outcomes:
            if entry.workflow != monitor.workflow or (monitor.step is not None and entry.step != monitor.step):
                continue
            window = self._outcome_windows[monitor.name]
            window.append(entry)
            if len(window) < monitor.window:
                continue
            value = monitor.measure(window)
            window.clear()
            if value is None:
                continue
            judged = self._outcome_new[monitor.name]
            rule = monitor.rule
            if isinstance(rule, Cusum | PageHinkley):
                assert judged.change is not None
                judged.change, reason = rule.update(judged.change, value)
            else:
                reason = rule.decide(value, judged.history)
                if reason is None:
                    judged.history.append(value)
            step = monitor.step or ""
            self._steps._transition(monitor.name, step, judged, monitor.workflow, value, reason, entry.at)

    async def _write(self, quality: QualityStore, alert: Alert) -> AlertRecord | None:
        """Write one transition; ``None`` when another worker wrote it first (or cooldown holds)."""
        # Firing and resolving are stamped with the time of the reading (the records' clock),
        # which every worker sees alike: a worker behind the others cannot resolve an
        # incident that fired after its reading, and the cooldown means the same to all.
        now = self.clock()
        last = await quality.last_alert(alert.workflow, alert.monitor)
        if alert.state == "firing":
            if last is not None and last.state is not AlertState.RESOLVED:
                return None  # the incident has its alert already
            if (
                last is not None
                and last.resolved_at is not None
                and alert.at - last.resolved_at < self.cooldown_seconds
            ):
                return None
            incident = 1 if last is None else last.incident + 1
            record = AlertRecord(
                alert_id=alert_id(alert.workflow, alert.monitor, incident),
                workflow=alert.workflow,
                monitor=alert.monitor,
                step=alert.step or None,
                incident=incident,
                state=AlertState.FIRING,
                value=alert.value,
                reason=alert.reason,
                action=self._actions.get(alert.monitor),
                fired_at=alert.at,
                updated_at=now,
            )
            if not await quality.insert_alert(record):
                return None
            await self._tell(record, "fired")
            return record
        if last is None or last.state is AlertState.RESOLVED or alert.at < last.fired_at:
            return None
        expected = last.version
        last.state = AlertState.RESOLVED
        last.resolved_at, last.updated_at = alert.at, now
        if not await quality.update_alert(last, expected_version=expected):
            return None
        await self._tell(last, "resolved")
        return last

    async def _tell(self, record: AlertRecord, transition: str) -> None:
        for diversions in self._attached:
            diversions.invalidate()
        for sink in self.sinks:
            try:
                await sink.send(record, transition=transition)
            except Exception as exc:  # noqa: BLE001 - a broken sink never stops the evaluator
                get_logger().warning("alert_sink_failed", sink=type(sink).__name__, error_class=type(exc).__name__)


def _as_monitor(monitor: OutcomeMonitor) -> Monitor:
    """A step monitor of the same rule, for the rule's fresh state."""
    return Monitor(monitor.workflow, "error_rate", monitor.rule)


async def acknowledge(store: Any, alert_id: str, *, by: str, now: float | None = None) -> AlertRecord:
    """Acknowledge an alert: a person has it, and its action stops diverting the step.

    Idempotent: an alert acknowledged already is returned as it is.

    Raises:
        InvalidInputError: no alert has that id.
    """
    quality = quality_for(store)
    for _ in range(5):
        found = await quality.get_alert(alert_id)
        if found is None:
            raise InvalidInputError(f"no alert {alert_id!r}; list them with `orchestrate alerts list`")
        if found.acked_at is not None:
            return found
        expected = found.version
        at = time.time() if now is None else now
        found.acked_at = found.updated_at = at
        found.acked_by = by
        if found.state is AlertState.FIRING:
            found.state = AlertState.ACKNOWLEDGED
        if await quality.update_alert(found, expected_version=expected):
            get_logger().info("monitor_acknowledged", alert_id=alert_id, by=by)
            return found
    raise InvalidInputError(f"alert {alert_id!r} kept changing while it was acknowledged; try again")


class Diversions:
    """Which steps alerts divert now, read from the store at most every ``ttl_seconds``.

    The engine asks :meth:`action_for` before it runs a step, only when diversions are
    attached to it (``engine.diversions``); with none attached a step pays one attribute
    check.
    """

    def __init__(self, store: Any, *, ttl_seconds: float = 2.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.store = store
        self.ttl_seconds = ttl_seconds
        self._clock = clock
        self._read_at: float | None = None
        self._active: dict[tuple[str, str], AlertRecord] = {}
        self._lock = asyncio.Lock()

    @classmethod
    def attach(cls, engine: Any, store: Any | None = None, *, ttl_seconds: float = 2.0) -> Diversions:
        """Attach diversions read from ``store`` (default: the engine's) to ``engine``."""
        found = cls(store if store is not None else engine.store, ttl_seconds=ttl_seconds)
        engine.diversions = found
        return found

    def invalidate(self) -> None:
        """Read the store again at the next question (after an acknowledgement here)."""
        self._read_at = None

    async def action_for(self, workflow: str, step: str) -> AlertRecord | None:
        """The alert diverting ``workflow``'s step ``step`` now, or ``None``."""
        now = self._clock()
        if self._read_at is None or now - self._read_at >= self.ttl_seconds:
            async with self._lock:
                if self._read_at is None or self._clock() - self._read_at >= self.ttl_seconds:
                    alerts = await quality_for(self.store).list_alerts(diverting=True, limit=1000)
                    active: dict[tuple[str, str], AlertRecord] = {}
                    for alert in sorted(alerts, key=lambda a: a.fired_at):
                        if alert.step is not None:
                            active[(alert.workflow, alert.step)] = alert
                    self._active = active
                    self._read_at = self._clock()
        found: AlertRecord | None = self._active.get((workflow, step))
        return found
