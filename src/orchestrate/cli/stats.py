"""``orchestrate stats STEP``: a step's health over windows of its executions, with sparklines."""

from __future__ import annotations

import json
from typing import Any

import click
from rich.table import Table

from orchestrate.cli._common import (
    console,
    json_option,
    log_level_option,
    run_async,
    setup_logging,
    store_option,
    with_client,
)
from orchestrate.client import Client
from orchestrate.observe.quality import WindowStats, sparkline, summarise

_ROWS: list[tuple[str, str, str]] = [
    ("p50 latency", "latency_p50_ms", "ms"),
    ("p95 latency", "latency_p95_ms", "ms"),
    ("error rate", "error_rate", "%"),
    ("fallback rate", "fallback_rate", "%"),
    ("escalation rate", "escalation_rate", "%"),
    ("mean confidence", "confidence_mean", ""),
]


def _show(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    if unit == "%":
        return f"{value * 100:.1f}%"
    if unit == "ms":
        return f"{value:,.1f} ms"
    return f"{value:.3f}"


@click.command("stats", short_help="A step's health: latency, error, fallback and escalation rates, confidence.")
@click.argument("step")
@click.option("--workflow", metavar="NAME", help="Only this workflow's step.")
@click.option("--window", type=click.IntRange(min=1), default=100, show_default=True, help="Executions per window.")
@click.option("--windows", type=click.IntRange(min=1), default=10, show_default=True, help="Windows shown.")
@store_option
@json_option
@log_level_option()
def stats(step: str, workflow: str | None, window: int, windows: int, store: str, as_json: bool, log_level: str) -> int:
    """Show STEP's p50/p95 latency, error, fallback and escalation rates and mean confidence over
    its last executions, in windows of --window executions (oldest first), with a sparkline per metric."""
    setup_logging(log_level)

    async def go(client: Client) -> list[Any]:
        results = await client.step_results(step, last=window * windows, workflow=workflow)
        return [summarise(results), *(await client.step_stats(step, workflow=workflow, window=window, windows=windows))]

    overall, *per_window = run_async(with_client(store, go, read_only=True))
    if as_json:
        click.echo(json.dumps({"overall": vars(overall), "windows": [vars(w) for w in per_window]}, indent=2))
        return 0
    out = console()
    if not per_window:
        out.print(f"no recorded executions of step {step!r}" + (f" in workflow {workflow!r}" if workflow else ""))
        return 0
    table = Table(title=f"{step}: {overall.executions} executions, {len(per_window)} windows of up to {window}")
    table.add_column("metric")
    table.add_column("overall", justify="right")
    table.add_column("latest window", justify="right")
    table.add_column("windows (oldest → newest)")
    latest: WindowStats = per_window[-1]
    for label, name, unit in _ROWS:
        series = [getattr(w, name) for w in per_window]
        table.add_row(label, _show(getattr(overall, name), unit), _show(getattr(latest, name), unit), sparkline(series))
    out.print(table)
    return 0
