"""Observation: the hooks seam (:class:`Observer`), logs through the standard library with
correlation ids, and observers for Prometheus (:mod:`orchestrate.observe.prometheus`,
extra ``metrics``) and OpenTelemetry (:mod:`orchestrate.observe.otel`, extra ``otel``)."""

from __future__ import annotations

from orchestrate.observe._dispatch import observer_failures
from orchestrate.observe.correlation import CorrelationFilter, current_ids
from orchestrate.observe.logging import configure_logging, get_logger
from orchestrate.observe.observer import EVENTS, Observer, add_observer, remove_observer

__all__ = [
    "EVENTS",
    "CorrelationFilter",
    "Observer",
    "add_observer",
    "configure_logging",
    "current_ids",
    "get_logger",
    "observer_failures",
    "remove_observer",
]
