"""Observation: structured logs now; traces, metrics and monitors build on the same ids."""

from __future__ import annotations

from orchestrate.observe.logging import configure_logging, get_logger

__all__ = ["configure_logging", "get_logger"]
