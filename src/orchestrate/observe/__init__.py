"""Observation: structured JSON logs (structlog) with the workflow, run and step in every line."""

from __future__ import annotations

from orchestrate.observe.logging import configure_logging, get_logger

__all__ = ["configure_logging", "get_logger"]
