"""Calling observers safely: one :class:`Dispatch` per set of observers.

A dispatch resolves, once, which observers override which event, so an event nobody
listens to costs a dictionary lookup and an empty loop. An observer's exception is
logged, counted and swallowed: observing never fails a run.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterable
from typing import Any

from orchestrate.observe import observer as _observer
from orchestrate.observe.observer import EVENTS, Observer

_FAILURES: Counter[str] = Counter()


def observer_failures() -> dict[str, int]:
    """How many times each observer raised in this process, by ``"<class>.<event>"``."""
    return dict(_FAILURES)


def _overrides(obs: Any, event: str) -> bool:
    if event in getattr(obs, "__dict__", ()):
        return callable(obs.__dict__[event])  # set on the instance
    method = getattr(type(obs), event, None)
    if method is None:
        return callable(getattr(obs, event, None))  # set on the instance
    return method is not getattr(Observer, event)


class Dispatch:
    """Calls one event's method on every observer that has it, swallowing their errors."""

    __slots__ = ("methods", "observers")

    def __init__(self, observers: Iterable[Any]) -> None:
        self.observers = tuple(dict.fromkeys(observers))  # each observer once, in order
        self.methods: dict[str, tuple[Any, ...]] = {
            event: tuple(getattr(o, event) for o in self.observers if _overrides(o, event))
            for event in (*EVENTS, "carry")
        }
        """The methods listening to each event: empty when nobody does (check it before
        building an event's arguments)."""

    def wants(self, event: str) -> bool:
        """Whether any observer listens to ``event`` (to skip building its arguments)."""
        return bool(self.methods[event])

    def emit(self, event: str, /, **kwargs: Any) -> None:
        """Call ``event`` on each observer that overrides it."""
        for method in self.methods[event]:
            try:
                method(**kwargs)
            except Exception as exc:  # noqa: BLE001 - an observer never fails a run
                _failed(method, event, exc)

    def carry(self, *, workflow: str, run_id: str) -> dict[str, str]:
        """What the observers ask to store with a new run (see :meth:`Observer.carry`)."""
        carried: dict[str, str] = {}
        for method in self.methods["carry"]:
            try:
                found = method(workflow=workflow, run_id=run_id)
                if found:
                    carried.update({str(k): str(v) for k, v in found.items()})
            except Exception as exc:  # noqa: BLE001 - an observer never fails a run
                _failed(method, "carry", exc)
        return carried


def _failed(method: Any, event: str, exc: Exception) -> None:
    owner = getattr(method, "__self__", method)
    key = f"{type(owner).__qualname__}.{event}"
    _FAILURES[key] += 1
    count = _FAILURES[key]
    # 1st, 10th, 100th...: a broken observer on a hot path must not flood the log.
    if count == 1 or (count % 10 == 0 and str(count).rstrip("0") == "1"):
        from orchestrate.observe.logging import get_logger

        fields: dict[str, Any] = {
            "observer": type(owner).__qualname__,
            "hook": event,
            "error_class": type(exc).__qualname__,
            "error": str(exc),
            "failures": count,
        }
        if count == 1:
            fields["exc_info"] = exc
        get_logger().warning("observer_failed", **fields)


_process: tuple[int, Dispatch | None] = (-1, None)


def process_dispatch() -> Dispatch | None:
    """The process-wide observers' dispatch, or ``None`` when there are none."""
    global _process
    gen = _observer.generation()
    if _process[0] != gen:
        found = _observer.process_observers()
        _process = (gen, Dispatch(found) if found else None)
    return _process[1]


def combined(own: tuple[Any, ...]) -> Dispatch | None:
    """A dispatch for ``own`` observers plus the process-wide ones (``None`` if neither)."""
    found = (*own, *_observer.process_observers())
    return Dispatch(found) if found else None


def wall_clock() -> float:
    """POSIX seconds (the time of events that happen outside an engine, e.g. model calls)."""
    return time.time()
