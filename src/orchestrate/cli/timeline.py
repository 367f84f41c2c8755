"""A run's timeline in the terminal: header, one row per step with a time bar, history.

:func:`render_timeline` is public (the README's demo calls it)::

    from rich.console import Console
    from orchestrate.cli.timeline import render_timeline

    async with Client("sqlite:///demo.db") as client:
        render_timeline(await client.detail(run_id), Console())

Every bar is drawn on the run's own time axis, from its creation to its end (or to now
while it has not ended), so bars are proportional to time and line up across steps.
Text that comes from the run (inputs, outputs, errors, step keys) is never read as
markup.
"""

from __future__ import annotations

import json
import math
import re
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from rich import box
from rich.console import Console
from rich.padding import Padding
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from orchestrate.client import RunDetail
from orchestrate.policies import MISSING
from orchestrate.store.base import REPLAYED_EVENT, Event, EventKind, ReviewRecord, ReviewStatus, StepRecord
from orchestrate.types import RunStatus, StepStatus

__all__ = ["error_summary", "format_duration", "format_time", "pending_review", "render_timeline", "summarize"]

_STATUS_STYLES = {
    RunStatus.PENDING: "dim",
    RunStatus.RUNNING: "bold blue",
    RunStatus.WAITING: "bold yellow",
    RunStatus.SUCCEEDED: "bold green",
    RunStatus.FAILED: "bold red",
    RunStatus.CANCELLED: "magenta",
    RunStatus.DEAD: "bold red",
}
_RETRY_MARK = "✕"
"""Drawn on a step's bar where an attempt failed and a retry was scheduled."""
_STEP_STYLES = {StepStatus.SUCCEEDED: "green", StepStatus.SKIPPED: "yellow", StepStatus.FAILED: "red"}


def render_timeline(detail: RunDetail, console: Console) -> None:
    """Print a run's header, its steps as bars over time, and its history.

    Args:
        detail: the run, its step records and its events (``Client.detail``).
        console: where to print.
    """
    axis = _Axis.of(detail)
    console.print(_header(detail, axis))
    rows = _step_rows(detail, axis)
    if rows:
        _render_steps(rows, axis, console)
    else:
        console.print(Text("  no steps recorded yet", style="dim"))
    if detail.events:
        console.print(_history_table(detail, axis))


# time ---------------------------------------------------------------------------------------


@dataclass
class _Axis:
    """The run's time axis: from its creation to its end (or now)."""

    start: float
    end: float

    @classmethod
    def of(cls, detail: RunDetail) -> _Axis:
        run = detail.run
        times = [run.created_at, run.updated_at]
        times += [s.finished_at for s in detail.steps if s.finished_at >= run.created_at]
        times += [e.at for e in detail.events]
        end = max(times)
        if not run.status.terminal:
            end = max(end, time.time())
        return cls(run.created_at, end)

    @property
    def span(self) -> float:
        return max(self.end - self.start, 1e-6)

    def column(self, at: float, width: int) -> int:
        return int((at - self.start) / self.span * width)

    def offset(self, at: float) -> str:
        return "+" + format_duration(at - self.start)


def format_duration(seconds: float) -> str:
    """``0.4ms``, ``12ms``, ``1.24s``, ``2m05s``, ``1h02m``."""
    seconds = max(seconds, 0.0)
    if seconds < 0.001:
        return f"{seconds * 1000:.1f}ms"
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    if seconds < 60:
        return f"{seconds:.2f}s"
    if seconds < 3600:
        minutes, rest = divmod(int(seconds), 60)
        return f"{minutes}m{rest:02d}s"
    hours, rest = divmod(int(seconds), 3600)
    return f"{hours}h{rest // 60:02d}m"


def _clock(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def format_time(at: float) -> str:
    """POSIX seconds as ISO-8601 UTC with milliseconds: ``2024-05-01T09:30:00.250Z``."""
    return datetime.fromtimestamp(at, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def summarize(value: Any, size: int = 100) -> str:
    """A value as compact JSON on one line, clipped to ``size`` characters."""
    if value is MISSING:
        return "(missing)"
    try:
        text = json.dumps(value, ensure_ascii=False, default=str, separators=(", ", ": "))
    except (TypeError, ValueError):
        text = repr(value)
    text = " ".join(text.split())
    return text if len(text) <= size else text[: size - 1] + "…"


_STEP_FAILED = re.compile(r"^step '.*' failed after \d+ attempt\(s\): (?P<cause>.*)$")


def _error_text(error: dict[str, Any] | None) -> str:
    """``Name: message`` on one line; a run killed by a step shows the step's own error."""
    if not error:
        return ""
    name = error.get("name") or error.get("type") or "error"
    message = " ".join(str(error.get("message", "")).split())
    found = _STEP_FAILED.match(message)
    if found:
        return found.group("cause")
    return f"{name}: {message}" if message else str(name)


def error_summary(error: dict[str, Any] | None) -> str:
    """A run's error on one line: ``step: Name: message`` (empty without an error)."""
    if not error:
        return ""
    where = f"{error['step']}: " if error.get("step") else ""
    return where + _error_text(error)


# header -------------------------------------------------------------------------------------


def _header(detail: RunDetail, axis: _Axis) -> Panel:
    run = detail.run
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold", no_wrap=True)
    grid.add_column(overflow="fold")
    grid.add_row("workflow", Text(f"{run.workflow}  (version {run.version})"))
    grid.add_row("status", Text(run.status.value, style=_STATUS_STYLES.get(run.status, "")))
    if run.queue != "default":
        grid.add_row("queue", Text(run.queue))
    grid.add_row("input", Text(summarize(run.input)))
    if run.status is RunStatus.SUCCEEDED:
        grid.add_row("output", Text(summarize(run.output)))
    if run.error:
        grid.add_row("error", Text(_run_error(detail), style="red"))
    if run.status is RunStatus.WAITING:
        grid.add_row("waiting", Text(_waiting_text(detail)))
    duration = format_duration(axis.end - axis.start)
    ended = "" if run.status.terminal else " so far"
    grid.add_row("created", Text(f"{_clock(run.created_at)}   duration {duration}{ended}"))
    flags = sorted({str(s.meta["flag"]) for s in detail.steps if s.meta.get("flag")})
    if flags:
        grid.add_row("flags", Text(", ".join(flags), style="yellow"))
    if run.parent_run_id:
        grid.add_row("replay of", Text(run.parent_run_id))
    replays = [str(e.data.get("replay")) for e in detail.events if e.kind == REPLAYED_EVENT]
    if replays:
        left = " (out of the dead-letter queue)" if run.status is RunStatus.DEAD else ""
        grid.add_row("replayed as", Text(", ".join(replays) + left, style="cyan"))
    title = Text.assemble(("run ", "bold"), (run.run_id, "bold cyan"))
    return Panel(grid, title=title, title_align="left", border_style=_STATUS_STYLES.get(run.status, ""), expand=False)


def _run_error(detail: RunDetail) -> str:
    """The run's error, told from its failed step's own record when there is one."""
    error = detail.run.error or {}
    key = error.get("step")
    if not key:
        return _error_text(error)
    step = next((s for s in detail.steps if s.step_key == key and s.error), None)
    if step is None:
        return f"at step {key!r}: {_error_text(error)}"
    return f"at step {key!r} after {step.attempts} attempt(s): {_error_text(step.error)}"


def pending_review(detail: RunDetail) -> ReviewRecord | None:
    """The pending review item a waiting run is parked on, if it waits on one."""
    reason = detail.run.wait_reason or ""
    if detail.run.status is not RunStatus.WAITING or not reason.startswith("signal:"):
        return None
    gate_key = reason[len("signal:") :]
    pending = [r for r in detail.reviews if r.gate_key == gate_key and r.status is ReviewStatus.PENDING]
    return max(pending, key=lambda r: r.level, default=None)


def _waiting_text(detail: RunDetail) -> str:
    run = detail.run
    reason = run.wait_reason or "unknown"
    item = pending_review(detail)
    if item is not None:
        text = (
            f"for review {item.review_id} of step {item.step_key!r} "
            f"(orchestrate reviews show {item.review_id}, then approve or reject it)"
        )
    elif reason.startswith("signal:"):
        key = reason[len("signal:") :]
        text = f"for signal {key!r} (orchestrate signal {run.run_id} {key} --value JSON)"
    else:
        text = f"for {reason}"
    if run.wake_at is not None:
        text += f"; due at {_clock(run.wake_at)}"
    return text


# steps --------------------------------------------------------------------------------------


@dataclass
class _Row:
    key: str
    status: str
    style: str
    start: float | None
    finish: float | None
    attempts: int | None
    notes: list[Text] = field(default_factory=list)
    marks: list[float] = field(default_factory=list)
    traceback: str | None = None


def _step_rows(detail: RunDetail, axis: _Axis) -> list[_Row]:
    retries: dict[str, list[float]] = {}
    waits: dict[str, float] = {}
    gates: dict[str, str] = {}  # wait key of a review -> where its gate sits
    for event in detail.events:
        if event.kind == "step_retry" and event.step_key:
            retries.setdefault(event.step_key, []).append(event.at)
        elif event.kind == "wait_started" and event.step_key:
            waits.setdefault(event.step_key, event.at)
    for item in detail.reviews:
        if item.level == 0 and item.meta.get("kind") != "flag":
            where = "before" if item.meta.get("reviews") == "input" else "after"
            what = "its input approved before it runs" if where == "before" else "its output reviewed"
            gates[f"wait:{item.gate_key}"] = f"gate {where} step {item.step_key!r}: {what}"
            waits.setdefault(f"wait:{item.gate_key}", item.created_at)
    source = detail.run.parent_run_id
    rows: list[_Row] = []
    recorded: set[str] = set()
    for step in sorted(detail.steps, key=lambda s: s.started_at):
        recorded.add(step.step_key)
        start = waits.get(step.step_key, step.started_at)
        reused = step.finished_at < axis.start
        row = _Row(
            step.step_key,
            step.status.value,
            _STEP_STYLES.get(step.status, ""),
            None if reused else start,
            None if reused else step.finished_at,
            step.attempts,
        )
        row.marks = retries.get(step.step_key, [])
        row.notes = _step_notes(step, reused=reused, source=source)
        if step.step_key in gates:
            row.notes.insert(0, Text(gates[step.step_key], style="magenta"))
        traceback = (step.error or {}).get("traceback")
        if step.status is StepStatus.FAILED and isinstance(traceback, str):
            row.traceback = traceback.rstrip()
        if step.fallback and not step.fallback.startswith("route:"):
            row.style = "yellow"
        rows.append(row)
    if not detail.run.status.terminal:
        for key, at in waits.items():
            if key not in recorded:
                row = _Row(key, "waiting", "yellow", at, axis.end, None)
                if key in gates:
                    row.notes.append(Text(gates[key], style="magenta"))
                row.notes.append(Text("parked until the signal arrives; holds no worker", style="yellow"))
                rows.append(row)
        for key, marks in retries.items():
            if key not in recorded:
                row = _Row(key, "retrying", "yellow", None, None, len(marks) + 1, marks=marks)
                row.notes.append(Text(f"{len(marks)} failed attempt(s) so far; next attempt is scheduled"))
                rows.append(row)
    return rows


def _step_notes(step: StepRecord, *, reused: bool, source: str | None) -> list[Text]:
    meta = step.meta
    notes: list[Text] = []
    if reused:
        notes.append(Text(f"reused from run {source}" if source else "reused", style="dim"))
    if meta.get("cached"):
        notes.append(Text("cache hit", style="cyan"))
    if step.fallback and step.fallback.startswith("route:"):
        notes.append(Text(f"routed to {step.fallback[len('route:') :]}", style="cyan"))
    elif step.fallback:
        reason = meta.get("fallback_reason") or (step.error or {}).get("name") or "failure"
        notes.append(Text(f"fallback {step.fallback} after {reason}", style="yellow"))
    if meta.get("flag"):
        notes.append(Text(f"flag {meta['flag']}", style="bold yellow"))
    if step.status is StepStatus.SKIPPED:
        notes.append(Text("skipped: downstream steps see it as missing", style="yellow"))
    log = meta.get("attempt_log")
    if isinstance(log, list) and (len(log) > 1 or (log and not step.fallback)):
        failed = Counter(str(entry.get("error", "?")) for entry in log if isinstance(entry, dict))
        counts = ", ".join(name if n == 1 else f"{name} x{n}" for name, n in failed.items())
        notes.append(Text(f"failed attempts: {counts}"))
    for tried in meta.get("fallbacks_failed") or []:
        if isinstance(tried, dict):
            notes.append(Text(f"fallback {tried.get('fallback')} failed: {tried.get('error')}", style="dim"))
    if step.status is StepStatus.FAILED or (step.error and not step.fallback):
        notes.append(Text(_error_text(step.error), style="red"))
    if step.step_key.startswith("wait:"):
        by = meta.get("by")
        notes.append(Text(f"signal {summarize(step.output, 60)}" + (f" by {by}" if by else ""), style="cyan"))
    return notes


def _bar(row: _Row, axis: _Axis, width: int) -> Text:
    """The step's span on the run's time axis, ``width`` cells between two ticks."""
    if row.start is None or row.finish is None:
        label = "" if row.status == "retrying" else "reused"
        return Text(" " + label.center(width) + " ", style="dim")
    first = min(max(axis.column(row.start, width), 0), width - 1)
    last = min(max(math.ceil((row.finish - axis.start) / axis.span * width), first + 1), width)
    cells = [" "] * width
    for i in range(first, last):
        cells[i] = "█"
    for at in row.marks:
        cells[min(max(axis.column(at, width), first), last - 1)] = _RETRY_MARK
    bar = Text("▏", style="dim")
    for i, cell in enumerate(cells):
        style = ("bold red" if cell == _RETRY_MARK else row.style) if first <= i < last else ""
        bar.append(cell, style=style)
    bar.append("▕", style="dim")
    return bar


def _render_steps(rows: list[_Row], axis: _Axis, console: Console) -> None:
    """Aligned columns; the notes follow on the line, or below it when the console is narrow."""
    width = console.width
    bar_width = max(10, min(40, width // 4))
    cells = [
        (
            axis.offset(row.start) if row.start is not None else "",
            row.key,
            row.status,
            "" if row.attempts is None else str(row.attempts),
            format_duration(row.finish - row.start) if row.start is not None and row.finish is not None else "",
        )
        for row in rows
    ]
    titles = ("start", "step", "status", "tries", "took")
    widths = [max(len(titles[i]), *(len(c[i]) for c in cells)) for i in range(5)]
    gap = "  "
    others = widths[0] + widths[2] + widths[3] + widths[4] + len(gap) * 5 + bar_width + 2
    widths[1] = min(widths[1], max(12, width - others))
    prefix = sum(widths) + len(gap) * 5 + bar_width + 2
    inline = width - prefix - len(gap) >= 30
    head = Text(style="bold")
    for i, title in enumerate(titles):
        head.append((title.rjust if i in (0, 3, 4) else title.ljust)(widths[i]) + gap)
    axis_label = f"0 → {format_duration(axis.span)}"
    head.append(" " + axis_label.ljust(bar_width + 1))
    if inline:
        head.append(gap + "notes")
    console.print(Text("steps", style="bold"))
    console.print(head, no_wrap=True, overflow="ellipsis")
    console.print(Text("─" * min(width, prefix + (len(gap) + 5 if inline else 0)), style="dim"))
    for row, (offset, key, status, tries, took) in zip(rows, cells, strict=True):
        if len(key) > widths[1]:
            key = key[: widths[1] - 1] + "…"
        line = Text()
        line.append(offset.rjust(widths[0]) + gap, style="dim")
        line.append(key.ljust(widths[1]) + gap)
        line.append(status.ljust(widths[2]), style=row.style)
        line.append(gap + tries.rjust(widths[3]) + gap + took.rjust(widths[4]) + gap)
        line.append_text(_bar(row, axis, bar_width))
        notes = Text("; ").join(row.notes)
        indent = widths[0] + len(gap)
        if inline and row.notes:
            line.append(gap)
            line.append_text(notes)
            console.print(line, overflow="fold")
        else:
            console.print(line, no_wrap=True, overflow="ellipsis")
            if row.notes:
                console.print(Padding(Text("↳ ").append_text(notes), (0, 0, 0, indent)))
        if row.traceback:
            _print_traceback(row.traceback, indent + 2, console)
    console.print()


def _print_traceback(text: str, indent: int, console: Console) -> None:
    """The failing attempt's traceback, under its step, indented and never read as markup."""
    for line in text.splitlines():
        console.print(Text(" " * indent + line, style="dim red"), soft_wrap=True)


# history ------------------------------------------------------------------------------------


def _history_table(detail: RunDetail, axis: _Axis) -> Table:
    table = Table(
        box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, title_justify="left", title=Text("history", style="bold")
    )
    table.add_column("at", justify="right", no_wrap=True, style="dim")
    table.add_column("event", no_wrap=True)
    table.add_column("step", overflow="fold")
    table.add_column("details", overflow="fold", ratio=1)
    state: str | None = None
    for event in detail.events:
        label, style, text, state = _describe(event, state, axis)
        table.add_row(axis.offset(event.at), Text(label, style=style), Text(event.step_key or ""), Text(text))
    return table


_Described = tuple[str, str, str, str | None]
"""``(label, style, details, run state after the event)`` of one history entry."""


def _describe(event: Event, state: str | None, axis: _Axis) -> _Described:
    """How the history shows ``event``: by its :class:`EventKind`, else as its kind and data."""
    describe = _DESCRIPTIONS.get(event.kind)
    if describe is None and event.kind.startswith("run_"):
        describe = _run_ended  # a status this version does not know yet
    if describe is None:
        return event.kind.replace("_", " "), "", _data_text(event.data, axis), state
    return describe(event, state, axis)


def _run_created(event: Event, state: str | None, axis: _Axis) -> _Described:
    claimed = bool(event.data.get("claimed"))
    how = "run in this process" if claimed else "pending until a worker claims it"
    return "created", "bold", f"version {event.data.get('version', '?')}; {how}", "running" if claimed else "pending"


def _run_resumed(event: Event, state: str | None, axis: _Axis) -> _Described:
    data = event.data
    replayed = f"replayed {data.get('replayed_steps', 0)} recorded step(s), fence {data.get('fence', '?')}"
    if state == "running":
        return "resumed after crash", "bold magenta", f"the previous holder stopped mid-run; {replayed}", "running"
    label = {"pending": "claimed", "waiting": "woke up"}.get(state or "", "resumed")
    return label, "blue", replayed, "running"


def _attempt_crashed(event: Event, state: str | None, axis: _Axis) -> _Described:
    data = event.data
    text = (
        f"the previous attempt died without a record (crash {data.get('crashes', '?')} of "
        f"{data.get('max_crashes', '?')}; worker {data.get('owner') or '?'})"
    )
    return "crashed", "bold magenta", text, state


def _step_retry(event: Event, state: str | None, axis: _Axis) -> _Described:
    data = event.data
    text = f"attempt {data.get('attempt', '?')} failed: {_error_text(data.get('error'))}"
    if isinstance(data.get("delay"), int | float):
        text += f"; next attempt in {format_duration(float(data['delay']))}"
    return "retry", "yellow", text, state


def _step_fallback(event: Event, state: str | None, axis: _Axis) -> _Described:
    data = event.data
    text = f"took {data.get('fallback')} after {data.get('reason') or _error_text(data.get('error'))}"
    if data.get("flag"):
        text += f"; flag {data['flag']}"
    return "fallback", "yellow", text, state


def _step_failed(event: Event, state: str | None, axis: _Axis) -> _Described:
    data = event.data
    return "step failed", "red", f"{_error_text(data.get('error'))} after {data.get('attempts', '?')} attempt(s)", state


def _step_routed(event: Event, state: str | None, axis: _Axis) -> _Described:
    return "routed", "cyan", f"to {event.data.get('target')}", state


def _wait_started(event: Event, state: str | None, axis: _Axis) -> _Described:
    data = event.data
    timeout = data.get("timeout")
    text = "waiting for a signal" + (f" (timeout {format_duration(float(timeout))})" if timeout else "")
    if data.get("payload") is not None:
        text += f"; payload {summarize(data['payload'], 60)}"
    return "wait", "yellow", text, state


def _signal_received(event: Event, state: str | None, axis: _Axis) -> _Described:
    by = event.data.get("by")
    return "signal", "cyan", f"delivered by {by}" if by else "delivered", state


def _timer_set(event: Event, state: str | None, axis: _Axis) -> _Described:
    wake = event.data.get("wake_at")
    return "timer", "", f"wakes at {axis.offset(float(wake))}" if isinstance(wake, int | float) else "", state


def _run_waiting(event: Event, state: str | None, axis: _Axis) -> _Described:
    text = str(event.data.get("reason") or "")
    wake = event.data.get("wake_at")
    if isinstance(wake, int | float):
        text += f"; due at {axis.offset(float(wake))}"
    return "parked", "yellow", text, "waiting"


def _replayed(event: Event, state: str | None, axis: _Axis) -> _Described:
    where = f" from step {event.step_key!r}" if event.step_key else ""
    return "replayed", "cyan", f"as run {event.data.get('replay')}{where}", state


def _replay_started(event: Event, state: str | None, axis: _Axis) -> _Described:
    reused = event.data.get("reused") or []
    return "replay", "cyan", f"of run {event.data.get('source')}; reused {len(reused)} step(s)", state


def _run_ended(event: Event, state: str | None, axis: _Axis) -> _Described:
    status = event.kind[len("run_") :]
    style = {"succeeded": "bold green", "cancelled": "magenta"}.get(status, "bold red")
    error = event.data.get("error")
    text = _error_text(error) if isinstance(error, dict) else ""
    if event.data.get("reason") and not text:
        text = str(event.data["reason"])
    return status, style, text, status


def _step_diverted(event: Event, state: str | None, axis: _Axis) -> _Described:
    data = event.data
    where = "its fallback" if data.get("action") == "fallback" else "human review"
    return "diverted", "bold yellow", f"to {where} by alert {data.get('alert_id')} ({data.get('monitor')})", state


def _feedback_recorded(event: Event, state: str | None, axis: _Axis) -> _Described:
    data = event.data
    shown = {key: data[key] for key in ("outcome", "score", "label", "step") if data.get(key) is not None}
    parts = [f"{key} {value if isinstance(value, str) else summarize(value, 40)}" for key, value in shown.items()]
    return "feedback", "cyan", f"{', '.join(parts) or 'recorded'} by {data.get('by') or '?'}", state


_DESCRIPTIONS: dict[str, Callable[[Event, str | None, _Axis], _Described]] = {
    EventKind.RUN_CREATED: _run_created,
    EventKind.RUN_RESUMED: _run_resumed,
    EventKind.RUN_WAITING: _run_waiting,
    EventKind.RUN_RELEASED: _run_ended,
    EventKind.RUN_SUCCEEDED: _run_ended,
    EventKind.RUN_FAILED: _run_ended,
    EventKind.RUN_CANCELLED: _run_ended,
    EventKind.RUN_DEAD: _run_ended,
    EventKind.ATTEMPT_CRASHED: _attempt_crashed,
    EventKind.STEP_RETRY: _step_retry,
    EventKind.STEP_FALLBACK: _step_fallback,
    EventKind.STEP_FAILED: _step_failed,
    EventKind.STEP_ROUTED: _step_routed,
    EventKind.TIMER_SET: _timer_set,
    EventKind.WAIT_STARTED: _wait_started,
    EventKind.SIGNAL_RECEIVED: _signal_received,
    EventKind.REPLAY_STARTED: _replay_started,
    EventKind.REPLAYED: _replayed,
    EventKind.STEP_DIVERTED: _step_diverted,
    EventKind.FEEDBACK_RECORDED: _feedback_recorded,
}
"""How the history describes each kind of event; the other kinds show their data as ``key=value``."""


def _is_time(key: str, value: Any) -> bool:
    return (key == "at" or key.endswith("_at")) and isinstance(value, int | float) and not isinstance(value, bool)


def _data_text(data: dict[str, Any], axis: _Axis) -> str:
    """``key=value, ...``; times (``at``, ``*_at``) in ISO-8601 with their offset, ``*_seconds`` as durations."""
    parts: list[str] = []
    for key, value in data.items():
        if _is_time(key, value):
            parts.append(f"{key}={format_time(value)} ({axis.offset(value)})")
        elif key.endswith("_seconds") and isinstance(value, int | float) and not isinstance(value, bool):
            parts.append(f"{key}={format_duration(value)}")
        else:
            parts.append(f"{key}={summarize(_readable(value), 40)}")
    return ", ".join(parts)


def _readable(value: Any) -> Any:
    """``value`` with the times nested in it as ISO-8601 text."""
    if isinstance(value, dict):
        return {k: format_time(v) if _is_time(str(k), v) else _readable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_readable(v) for v in value]
    return value
