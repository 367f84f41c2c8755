"""Payload limits: how large a value's JSON may be when a store writes it.

Every store checks the values it is given (run inputs and outputs, step outputs, signal
values, review payloads, cached outputs) *before* anything is written or sent, on the
size of their encoded JSON: the SQL stores measure the text they encode anyway, the
in-memory store measures what a SQL store would write. A value over
:attr:`PayloadLimits.max_bytes` is refused with
:class:`~orchestrate.errors.PayloadTooLargeError`; one over
:attr:`PayloadLimits.warn_bytes` is written, with a ``payload_large`` event in its run's
history and a warning in the log.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from orchestrate import _codec
from orchestrate.errors import InvalidInputError, PayloadTooLargeError
from orchestrate.observe import get_logger
from orchestrate.store.base import Event, EventKind, ReviewRecord, RunRecord, StepRecord

MAX_PAYLOAD_BYTES = 2 * 1024 * 1024
"""The default hard limit on a value's JSON: 2 MiB (Temporal's limit for a payload)."""

PAYLOAD_LARGE_EVENT: str = EventKind.PAYLOAD_LARGE.value
"""The kind of the event that records a value over the warning size in a run's history."""

MAX_ENV = "ORCHESTRATE_MAX_PAYLOAD_BYTES"
"""Environment variable setting :attr:`PayloadLimits.max_bytes` of stores built without one."""

WARN_ENV = "ORCHESTRATE_WARN_PAYLOAD_BYTES"
"""Environment variable setting :attr:`PayloadLimits.warn_bytes` of stores built without one."""

URL_OPTIONS = ("max_payload_bytes", "warn_payload_bytes")
"""Query parameters of a store URL that set the limits (``sqlite:///x.db?max_payload_bytes=8388608``)."""

_FIX = (
    "store the value elsewhere (a file, an object store) and pass a reference to it, or raise the limit "
    f"(PayloadLimits(max_bytes=...) on the store, ?max_payload_bytes= in its URL, or {MAX_ENV})"
)


@dataclass(frozen=True, init=False)
class PayloadLimits:
    """How large a value's JSON may be when a store writes it.

    A value whose JSON is over ``max_bytes`` is refused, before anything is written, with
    :class:`~orchestrate.errors.PayloadTooLargeError`: a step's output ends its run
    ``dead``, a run's input is refused at start, a review edit or a signal value is
    refused to its sender. One over ``warn_bytes`` is written, with a ``payload_large``
    event in the run's history and a warning in the log.

    Args:
        max_bytes: the hard limit, in bytes of JSON (default 2 MiB).
        warn_bytes: the size above which a value is reported; default a quarter of
            ``max_bytes`` (512 KiB by default); one above ``max_bytes`` is lowered to it.

    Raises:
        InvalidInputError: a limit is not a positive integer.
    """

    max_bytes: int = MAX_PAYLOAD_BYTES
    warn_bytes: int = MAX_PAYLOAD_BYTES // 4

    def __init__(self, max_bytes: int = MAX_PAYLOAD_BYTES, warn_bytes: int | None = None) -> None:
        for name, value in (("max_bytes", max_bytes), ("warn_bytes", warn_bytes)):
            if value is not None and (type(value) is not int or value < 1):
                raise InvalidInputError(f"PayloadLimits: {name} must be a positive number of bytes, got {value!r}")
        object.__setattr__(self, "max_bytes", max_bytes)
        object.__setattr__(self, "warn_bytes", min(max_bytes // 4 if warn_bytes is None else warn_bytes, max_bytes))

    @classmethod
    def resolve(
        cls, given: PayloadLimits | None = None, options: Mapping[str, str] | None = None, *, where: str = "store"
    ) -> PayloadLimits:
        """The limits of a store: ``given``, else its URL's ``options``, else the environment, else the defaults.

        Args:
            given: limits passed to the store's constructor.
            options: the URL's query parameters (only :data:`URL_OPTIONS` are read).
            where: the store, for error messages.

        Raises:
            InvalidInputError: a limit is not a positive integer.
        """
        if given is not None:
            return given
        options = options or {}
        found: dict[str, int | None] = {}
        for name, env in zip(URL_OPTIONS, (MAX_ENV, WARN_ENV), strict=True):
            text = options.get(name)
            source = f"{where}: {name}"
            if text is None:
                text, source = os.environ.get(env) or None, f"${env}"
            if text is None:
                found[name] = None
                continue
            try:
                found[name] = int(text.replace("_", ""))
            except ValueError:
                raise InvalidInputError(f"{source} must be a number of bytes, got {text!r}") from None
        limit, warn = found["max_payload_bytes"], found["warn_payload_bytes"]
        if limit is None and warn is None:
            return _DEFAULT
        return cls(MAX_PAYLOAD_BYTES if limit is None else limit, warn)

    def over(self, size: int, where: str) -> PayloadTooLargeError | None:
        """The error refusing a value of ``size`` bytes (``None`` within the limit).

        Args:
            size: the length of the value's JSON.
            where: what the value is, as an error message starts (``step 'fetch' of run 1a2b: its output``).
        """
        if size <= self.max_bytes:
            return None
        return PayloadTooLargeError(
            f"{where} is {_human(size)} of JSON, over the store's limit of {_human(self.max_bytes)}; {_FIX}",
            size=size,
            limit=self.max_bytes,
        )

    def check(
        self, size: int, where: str, *, run_id: str | None, step_key: str | None, at: float, what: str
    ) -> Event | None:
        """Refuse a value over the limit; report one over the warning size.

        Called with the length of a value's JSON once it is over :attr:`warn_bytes` (the
        caller compares first: the common small value costs one comparison).

        Returns:
            the ``payload_large`` event for the run's history (logged as a warning too),
            or ``None`` for a value that belongs to no run or is not over the warning size.

        Raises:
            PayloadTooLargeError: ``size`` is over :attr:`max_bytes`.
        """
        error = self.over(size, where)
        if error is not None:
            raise error
        if size <= self.warn_bytes:
            return None
        get_logger().warning(
            PAYLOAD_LARGE_EVENT,
            run_id=run_id,
            step=step_key,
            what=what,
            size=size,
            warn_bytes=self.warn_bytes,
            max_bytes=self.max_bytes,
            message=f"{where} is {_human(size)} of JSON, over {_human(self.warn_bytes)}; keep large values out "
            "of the store and pass references",
        )
        if run_id is None:
            return None
        data: dict[str, Any] = {
            "what": what,
            "size": size,
            "warn_bytes": self.warn_bytes,
            "max_bytes": self.max_bytes,
        }
        return Event(run_id=run_id, kind=PAYLOAD_LARGE_EVENT, at=at, step_key=step_key, data=data)


_DEFAULT = PayloadLimits()


def _human(size: int) -> str:
    if size >= 1024 * 1024:
        return f"{size / (1024 * 1024):.1f} MiB ({size:,} bytes)"
    if size >= 1024:
        return f"{size / 1024:.1f} KiB ({size:,} bytes)"
    return f"{size:,} bytes"


# Each check below is called with a value's JSON size once it is over the warning size
# (the caller compares first: a small value costs one comparison). It raises over the
# limit, and returns the ``payload_large`` event for the run's history.


def input_check(run: RunRecord, size: int, limits: PayloadLimits) -> Event | None:
    """Check the JSON size of a run's input."""
    where = f"workflow {run.workflow!r}, run {run.run_id}: its input"
    return limits.check(size, where, run_id=run.run_id, step_key=None, at=run.created_at, what="input")


def _step_where(step: StepRecord) -> tuple[str, str]:
    """``(where, what)`` of a step record's output: a step's output, or a signal's value (``wait:``)."""
    if step.step_key.startswith("wait:"):
        return f"signal {step.step_key[5:]!r} of run {step.run_id}", "value"
    return f"step {step.step_key!r} of run {step.run_id}", "output"


def step_check(step: StepRecord, size: int, limits: PayloadLimits) -> Event | None:
    """Check the JSON size of a step's output, or of a signal's value (a ``wait:`` record)."""
    where, what = _step_where(step)
    kind = "signal value" if what == "value" else what
    at = step.finished_at
    return limits.check(size, f"{where}: its {what}", run_id=step.run_id, step_key=step.step_key, at=at, what=kind)


def signal_depth(step: StepRecord) -> None:
    """Refuse a signal's value (delivered from outside the run) that nests too deep.

    Raises:
        SerializationError: deeper than the codec allows a step's output (256 levels).
    """
    where, what = _step_where(step)
    _codec.check_depth(step.output, where, what)


def review_depth(review: ReviewRecord) -> None:
    """Refuse a review's payload (or its edit) that nests too deep (see :func:`signal_depth`)."""
    _codec.check_depth(review.payload, f"review {review.review_id} (step {review.step_key!r})", "payload")


def output_check(run_id: str, size: int, limits: PayloadLimits, now: float) -> Event | None:
    """Check the JSON size of a run's output."""
    return limits.check(size, f"run {run_id}: its output", run_id=run_id, step_key=None, at=now, what="output")


def review_check(review: ReviewRecord, size: int, limits: PayloadLimits, *, report: bool) -> Event | None:
    """Check the JSON size of a review's payload; ``report``: with the event of a large one.

    A decision writes the payload again (edited or not) with the value the run receives,
    which is reported instead.
    """
    where = f"review {review.review_id} (step {review.step_key!r} of run {review.run_id}): its payload"
    if report:
        at = review.updated_at
        return limits.check(size, where, run_id=review.run_id, step_key=review.step_key, at=at, what="review payload")
    error = limits.over(size, where)
    if error is not None:
        raise error
    return None


def cache_check(key: str, size: int, limits: PayloadLimits) -> None:
    """Refuse a cached value over the limit (a step's output: reported with its record)."""
    error = limits.over(size, f"the cached output {key!r}")
    if error is not None:
        raise error
