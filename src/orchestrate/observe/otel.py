"""OpenTelemetry traces, as an observer (extra ``otel``: ``pip install 'orchestrate[otel]'``).

::

    from orchestrate.observe.otel import OpenTelemetryObserver

    engine = Engine(store, observers=[OpenTelemetryObserver()])  # the global tracer provider

A run is one trace, however many processes drive it:

- ``start_run <workflow>``: where the run was created, a child of the span current there
  (an HTTP request's, say). Its context is stored with the run (``options["observe"]``,
  W3C ``traceparent``), so every process that drives the run continues the same trace;
- ``run <workflow>``: one span per drive (a process picking the run up until it ends or
  parks), a child of ``start_run``;
- ``step <name>``, children of the drive, with an ``attempt <n>`` span per attempt
  when there were several (failed ones carry the exception; a step that succeeded at
  once is its own attempt, which spares a span on the common path);
- ``chat <model>`` / ``text_completion <model>``: model calls made by a step, following
  OpenTelemetry's GenAI semantic conventions (``gen_ai.operation.name``,
  ``gen_ai.request.model``, ``gen_ai.response.model``, ``gen_ai.provider.name``,
  ``gen_ai.usage.input_tokens``, ``gen_ai.usage.output_tokens``,
  ``gen_ai.response.finish_reasons``), plus ``orchestrate.cost``;
- ``review <step>``: the wait for people, from the item's creation to its decision,
  recorded by the process that saw the decision (the API server, or the worker that
  saw the SLA pass).

Prompts and responses are not recorded unless ``capture_content=True``; then they are
masked like log records (``gen_ai.input.messages``, ``gen_ai.output.messages``).
A run created where no tracing observer was attached still gets one trace: its id is
derived from the run's id.

Spans are built from the engine's events (their times from the engine's clock) and are
not made current: code inside a step that starts spans of its own parents them itself.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from orchestrate._redact import redact
from orchestrate.observe.correlation import RUN, STEP, add_trace_source, step_of
from orchestrate.observe.observer import Observer

try:
    from opentelemetry import context as otel_context
    from opentelemetry import trace
    from opentelemetry.trace import SpanKind, Status, StatusCode
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
except ImportError as exc:  # pragma: no cover - depends on the extra
    raise ImportError("orchestrate.observe.otel needs OpenTelemetry: pip install 'orchestrate[otel]'") from exc

_PROPAGATOR = TraceContextTextMapPropagator()


def _ns(seconds: float) -> int:
    return int(seconds * 1_000_000_000)


@dataclass
class _Step:
    span: Any
    attempt: int
    attempt_at: float


@dataclass
class _Drive:
    span: Any
    context: Any
    steps: dict[str, _Step] = field(default_factory=dict)


class OpenTelemetryObserver(Observer):
    """Records runs, steps, attempts, model calls and review waits as spans.

    Args:
        tracer_provider: where spans go (default: the global provider).
        capture_content: record prompts and responses of model calls (masked); off by
            default, as the GenAI conventions advise.
    """

    def __init__(self, *, tracer_provider: Any = None, capture_content: bool = False) -> None:
        from orchestrate import __version__

        self.tracer = trace.get_tracer("orchestrate", __version__, tracer_provider=tracer_provider)
        self.capture_content = capture_content
        self._drives: dict[str, _Drive] = {}
        add_trace_source(self)  # log lines written in a run carry its trace id

    def trace_id(self, run_id: str) -> str | None:
        """The trace id (32 hex digits) of run ``run_id`` while this process drives it, else ``None``."""
        drive = self._drives.get(run_id)
        if drive is None:
            return None
        found: int = drive.span.get_span_context().trace_id
        return format(found, "032x") if found else None

    # propagation --------------------------------------------------------------------------
    def carry(self, *, workflow: str, run_id: str, **future_kwargs: Any) -> Mapping[str, str] | None:
        """Open (and close) ``start_run`` under the current span; return its ``traceparent``.

        A run started by a step of another run (``client.start`` inside a step) joins that
        run's trace, under the step.
        """
        parent = None
        starter = RUN.get()
        drive = self._drives.get(starter.run_id) if starter is not None else None
        if drive is not None:
            step, _ = step_of(STEP.get())
            found = drive.steps.get(step) if step is not None else None
            parent = trace.set_span_in_context(found.span) if found is not None else drive.context
        span = self.tracer.start_span(
            f"start_run {workflow}",
            context=parent,
            kind=SpanKind.PRODUCER,
            attributes={"orchestrate.workflow": workflow, "orchestrate.run_id": run_id},
        )
        span.end()
        carrier: dict[str, str] = {}
        _PROPAGATOR.inject(carrier, context=trace.set_span_in_context(span))
        return carrier

    def _parent(self, run_id: str, carrier: Mapping[str, str] | None) -> Any:
        """The run's stored trace context, or one derived from its id."""
        if carrier and "traceparent" in carrier:
            return _PROPAGATOR.extract(dict(carrier))
        digest = hashlib.sha256(run_id.encode()).digest()
        derived = trace.SpanContext(
            trace_id=int.from_bytes(digest[:16], "big") or 1,
            span_id=int.from_bytes(digest[16:24], "big") or 1,
            is_remote=True,
            trace_flags=trace.TraceFlags(trace.TraceFlags.SAMPLED),
        )
        return trace.set_span_in_context(trace.NonRecordingSpan(derived))

    # runs ---------------------------------------------------------------------------------
    def _drive(self, workflow: str, run_id: str, carrier: Mapping[str, str] | None, at: float) -> _Drive:
        span = self.tracer.start_span(
            f"run {workflow}",
            context=self._parent(run_id, carrier),
            kind=SpanKind.CONSUMER,
            start_time=_ns(at),
            attributes={"orchestrate.workflow": workflow, "orchestrate.run_id": run_id},
        )
        drive = self._drives[run_id] = _Drive(span, trace.set_span_in_context(span))
        return drive

    def run_created(
        self,
        *,
        workflow: str,
        run_id: str,
        claimed: bool,
        carrier: Mapping[str, str],
        at: float,
        **future_kwargs: Any,
    ) -> None:
        """A run this process drives right away: its first drive starts."""
        if claimed:
            self._drive(workflow, run_id, carrier, at)

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
        """A drive starts, in the run's trace."""
        drive = self._drive(workflow, run_id, carrier, at)
        drive.span.set_attribute("orchestrate.replayed_steps", replayed_steps)

    def run_parked(self, *, run_id: str, reason: str, wake_at: float | None, at: float, **future_kwargs: Any) -> None:
        """The drive ends: the run waits."""
        drive = self._drives.pop(run_id, None)
        if drive is None:
            return
        drive.span.set_attribute("orchestrate.status", "waiting")
        drive.span.set_attribute("orchestrate.wait_reason", reason)
        if wake_at is not None:
            drive.span.set_attribute("orchestrate.wake_at", wake_at)
        self._close(drive, at)

    def run_ended(
        self,
        *,
        run_id: str,
        status: str,
        step: str | None,
        error_class: str | None,
        at: float,
        **future_kwargs: Any,
    ) -> None:
        """The drive ends with the run."""
        drive = self._drives.pop(run_id, None)
        if drive is None:
            return
        drive.span.set_attribute("orchestrate.status", status)
        if status != "succeeded":
            drive.span.set_status(Status(StatusCode.ERROR, f"{status} at step {step}: {error_class}"))
            if error_class:
                drive.span.set_attribute("error.type", error_class)
        self._close(drive, at)

    def _close(self, drive: _Drive, at: float) -> None:
        for open_step in drive.steps.values():  # a retry parked mid-step
            open_step.span.set_attribute("orchestrate.parked", True)
            open_step.span.end(end_time=_ns(at))
        drive.span.end(end_time=_ns(at))

    # steps --------------------------------------------------------------------------------
    def step_started(
        self, *, run_id: str, step: str, name: str, attempt: int, input_hash: str, at: float, **future_kwargs: Any
    ) -> None:
        """The step's span opens."""
        drive = self._drives.get(run_id)
        if drive is None:
            return
        span = self.tracer.start_span(
            f"step {name}",
            context=drive.context,
            start_time=_ns(at),
            attributes={
                "orchestrate.run_id": run_id,
                "orchestrate.step": step,
                "orchestrate.input_hash": input_hash,
                "orchestrate.first_attempt": attempt,
            },
        )
        drive.steps[step] = _Step(span, attempt, at)

    def _attempt(self, found: _Step, end: float, error: BaseException | None, timed_out: bool = False) -> None:
        span = self.tracer.start_span(
            f"attempt {found.attempt}",
            context=trace.set_span_in_context(found.span),
            start_time=_ns(found.attempt_at),
            attributes={"orchestrate.attempt": found.attempt},
        )
        if error is not None:
            span.record_exception(error, timestamp=_ns(end))
            span.set_status(Status(StatusCode.ERROR, type(error).__qualname__))
            span.set_attribute("error.type", type(error).__qualname__)
            if timed_out:
                span.set_attribute("orchestrate.timed_out", True)
        span.end(end_time=_ns(end))

    def step_attempt_failed(
        self,
        *,
        run_id: str,
        step: str,
        attempt: int,
        error: BaseException,
        timed_out: bool,
        at: float,
        **future_kwargs: Any,
    ) -> None:
        """An ``attempt`` span, failed."""
        found = self._step(run_id, step)
        if found is not None:
            found.attempt = attempt
            self._attempt(found, at, error, timed_out)

    def step_retried(
        self, *, run_id: str, step: str, attempt: int, delay: float, at: float, **future_kwargs: Any
    ) -> None:
        """The next attempt starts after the delay."""
        found = self._step(run_id, step)
        if found is not None:
            found.attempt, found.attempt_at = attempt, at + delay

    def step_succeeded(
        self,
        *,
        workflow: str,
        run_id: str,
        step: str,
        name: str,
        attempts: int,
        latency_s: float,
        cached: bool,
        at: float,
        **future_kwargs: Any,
    ) -> None:
        """The last attempt's span and the step's close."""
        found = self._end_step(run_id, step, name, latency_s, at)
        if found is None:
            return
        if attempts > 1:  # a first attempt that succeeded is the step span itself
            found.attempt = attempts
            self._attempt(found, at, None)
        found.span.set_attributes({"orchestrate.attempts": attempts, "orchestrate.cached": cached})
        found.span.end(end_time=_ns(at))

    def step_fallback(
        self,
        *,
        run_id: str,
        step: str,
        name: str,
        attempts: int,
        fallback: str,
        error_class: str,
        latency_s: float,
        at: float,
        **future_kwargs: Any,
    ) -> None:
        """The step's span closes, answered by a fallback (not an error: the run goes on)."""
        found = self._end_step(run_id, step, name, latency_s, at)
        if found is None:
            return
        found.span.set_attributes(
            {"orchestrate.attempts": attempts, "orchestrate.fallback": fallback, "error.type": error_class}
        )
        found.span.end(end_time=_ns(at))

    def step_failed(
        self,
        *,
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
        """The step's span closes, failed."""
        found = self._end_step(run_id, step, name, latency_s, at)
        if found is None:
            return
        found.span.set_attributes({"orchestrate.attempts": attempts, "error.type": error_class})
        found.span.set_status(Status(StatusCode.ERROR, redact(f"{error_class}: {error}")))
        found.span.end(end_time=_ns(at))

    def _step(self, run_id: str, step: str) -> _Step | None:
        drive = self._drives.get(run_id)
        return drive.steps.get(step) if drive is not None else None

    def _end_step(self, run_id: str, step: str, name: str, latency_s: float, at: float) -> _Step | None:
        drive = self._drives.get(run_id)
        if drive is None:
            return None
        found = drive.steps.pop(step, None)
        if found is None:  # a cache hit: no attempt was started
            span = self.tracer.start_span(
                f"step {name}",
                context=drive.context,
                start_time=_ns(at - latency_s),
                attributes={"orchestrate.run_id": run_id, "orchestrate.step": step},
            )
            found = _Step(span, 1, at - latency_s)
        return found

    # reviews ------------------------------------------------------------------------------
    def review_created(
        self, *, run_id: str, step: str, review_id: str, level: int, at: float, **future_kwargs: Any
    ) -> None:
        """An event on the drive: the run is about to wait for people."""
        drive = self._drives.get(run_id)
        if drive is not None:
            drive.span.add_event(
                "review_created",
                {"orchestrate.review_id": review_id, "orchestrate.step": step, "orchestrate.level": level},
                timestamp=_ns(at),
            )

    def review_decided(
        self,
        *,
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
        """The wait for people, as a span from the item's creation to its decision."""
        drive = self._drives.get(run_id)
        parent = drive.context if drive is not None else self._parent(run_id, carrier)
        self._review(parent, run_id, step, review_id, outcome, by, waited_s, at, future_kwargs.get("level", 0))

    def review_escalated(
        self,
        *,
        run_id: str,
        step: str,
        review_id: str,
        to: str | None,
        waited_s: float,
        at: float,
        level: int,
        **future_kwargs: Any,
    ) -> None:
        """The wait that ended in an escalation."""
        drive = self._drives.get(run_id)
        if drive is not None:
            self._review(drive.context, run_id, step, review_id, "escalated", "sla", waited_s, at, level - 1, to=to)

    def _review(
        self,
        parent: Any,
        run_id: str,
        step: str,
        review_id: str,
        outcome: str,
        by: str | None,
        waited_s: float,
        at: float,
        level: int,
        to: str | None = None,
    ) -> None:
        attributes: dict[str, Any] = {
            "orchestrate.run_id": run_id,
            "orchestrate.step": step,
            "orchestrate.review_id": review_id,
            "orchestrate.review.outcome": outcome,
            "orchestrate.review.level": level,
            "orchestrate.review.waited_s": waited_s,
        }
        if by is not None:
            attributes["orchestrate.review.by"] = redact(by)
        if to is not None:
            attributes["orchestrate.review.escalated_to"] = to
        span = self.tracer.start_span(
            f"review {step}", context=parent, start_time=_ns(at - waited_s), attributes=attributes
        )
        span.end(end_time=_ns(at))

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
        run_id: str | None,
        step: str | None,
        at: float,
        **future_kwargs: Any,
    ) -> None:
        """A ``gen_ai`` client span, a child of the step that called (or of the current span)."""
        parent: Any = None
        drive = self._drives.get(run_id) if run_id is not None else None
        if drive is not None:
            found = drive.steps.get(step) if step is not None else None
            parent = trace.set_span_in_context(found.span) if found is not None else drive.context
        requested = future_kwargs.get("requested_model") or model
        attributes: dict[str, Any] = {
            "gen_ai.operation.name": operation,
            "gen_ai.request.model": requested,
            "gen_ai.response.model": model,
            "gen_ai.usage.input_tokens": input_tokens,
            "gen_ai.usage.output_tokens": output_tokens,
        }
        if provider:
            attributes["gen_ai.provider.name"] = provider
        finish = future_kwargs.get("finish_reason")
        if finish:
            attributes["gen_ai.response.finish_reasons"] = [finish]
        if cost is not None:
            attributes["orchestrate.cost"] = cost
        if run_id is not None:
            attributes["orchestrate.run_id"] = run_id
        if step is not None:
            attributes["orchestrate.step"] = step
        if self.capture_content:
            attributes.update(_content(future_kwargs.get("request"), future_kwargs.get("result")))
        span = self.tracer.start_span(
            f"{operation} {requested}",
            context=parent if parent is not None else otel_context.get_current(),
            kind=SpanKind.CLIENT,
            start_time=_ns(at - latency_s),
            attributes=attributes,
        )
        if error_class:
            span.set_attribute("error.type", error_class)
            span.set_status(Status(StatusCode.ERROR, error_class))
        span.end(end_time=_ns(at))


def _content(request: Any, result: Any) -> dict[str, str]:
    """Prompt and response as the GenAI conventions' JSON messages, masked."""
    found: dict[str, str] = {}
    if request is not None:
        if getattr(request, "kind", None) == "chat":
            messages = [{"role": m.role, "parts": [{"type": "text", "content": m.content}]} for m in request.messages]
        else:
            messages = [{"role": "user", "parts": [{"type": "text", "content": getattr(request, "prompt", "")}]}]
        found["gen_ai.input.messages"] = redact(json.dumps(messages, ensure_ascii=False))
    if result is not None:
        output = [{"role": "assistant", "parts": [{"type": "text", "content": getattr(result, "text", "")}]}]
        found["gen_ai.output.messages"] = redact(json.dumps(output, ensure_ascii=False))
    return found
