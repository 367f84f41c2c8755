"""``orchestrate alerts …``: the durable alerts of the monitors: list them, acknowledge one.

Also what ``orchestrate worker --monitors TARGET`` runs: the monitors a target names
(``path/to/file.py:NAME`` or ``module:NAME``, a monitor or a list of them), evaluated from
the store by an :class:`~orchestrate.observe.alerts.AlertEvaluator` beside the worker's
runs, with their actions diverting this worker's steps. Any number of workers may run
the same monitors: the store keeps one alert per incident.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import json
from collections.abc import AsyncIterator, Sequence
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
from orchestrate.cli.loading import _import_module, _load_file, is_file_target, split_target
from orchestrate.client import Client
from orchestrate.errors import InvalidInputError
from orchestrate.observe.alerts import AlertEvaluator, AlertRecord, AnyMonitor, OutcomeMonitor
from orchestrate.observe.logging import get_logger
from orchestrate.observe.monitors import DriftMonitor, Monitor


def load_monitors(targets: Sequence[str]) -> list[AnyMonitor]:
    """The monitors the targets name (each a monitor or a list of them), names unique across them.

    Raises:
        InvalidInputError: a module or file does not load, lacks the name, holds
            something that is not a monitor, or two monitors share a name.
    """
    found: list[AnyMonitor] = []
    for target in targets:
        if target.lower().endswith((".yaml", ".yml")):  # a YAML workflow file: its monitors
            from orchestrate.cli.yaml_commands import declared_monitors, load_target

            found += [m for m in declared_monitors([load_target(target)]) if m not in found]
            continue
        location, name = split_target(target)
        module = _load_file(location, target) if is_file_target(location) else _import_module(location, target)
        obj: Any = module
        for part in name.split("."):
            if not hasattr(obj, part):
                raise InvalidInputError(f"{location!r} has no attribute {name!r} (from --monitors {target!r})")
            obj = getattr(obj, part)
        items = list(obj) if isinstance(obj, list | tuple) else [obj]
        for item in items:
            if not isinstance(item, Monitor | DriftMonitor | OutcomeMonitor):
                raise InvalidInputError(
                    f"{name!r} in {location!r} holds a {type(item).__name__}, not a monitor "
                    "(a Monitor, DriftMonitor or OutcomeMonitor, or a list of them)"
                )
            found.append(item)
    names = [m.name for m in found]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise InvalidInputError(f"monitor names must be unique; used twice: {', '.join(twice)}")
    return found


@contextlib.asynccontextmanager
async def evaluating(
    client: Client, monitors: Sequence[AnyMonitor], *, interval_seconds: float = 5.0
) -> AsyncIterator[AlertEvaluator | None]:
    """Evaluate ``monitors`` from ``client``'s store every ``interval_seconds`` while the block runs.

    The evaluator's actions divert ``client``'s steps. On the way out it makes one more
    pass, so the records this worker wrote last are read before it stops. With no
    monitors it does nothing (and yields ``None``).
    """
    if not monitors:
        yield None
        return
    evaluator = AlertEvaluator(client.store, monitors, interval_seconds=interval_seconds)
    evaluator.attach(client.engine)
    stop = asyncio.Event()
    task = asyncio.create_task(evaluator.run(stop))
    try:
        yield evaluator
    except BaseException:
        task.cancel()  # stopping at once (or failing): no last pass
        await asyncio.gather(task, return_exceptions=True)
        raise
    stop.set()
    await task
    try:
        await evaluator.evaluate()
    except Exception as exc:  # noqa: BLE001 - the worker's own outcome stands; the log says why
        get_logger().warning("monitor_evaluation_failed", error_class=type(exc).__name__, error=str(exc))


@click.group("alerts", invoke_without_command=True, short_help="Monitors' alerts: list, acknowledge.")
@click.pass_context
def alerts(ctx: click.Context) -> None:
    """The alerts the monitors wrote into the store (firing, acknowledged, resolved)."""
    if ctx.invoked_subcommand is None:
        click.echo(ctx.get_help())


def _when(at: float | None) -> str:
    return "-" if at is None else datetime.datetime.fromtimestamp(at, datetime.UTC).strftime("%Y-%m-%d %H:%M:%S")


@alerts.command("list")
@click.option("--state", type=click.Choice(["firing", "acknowledged", "resolved"]), help="Only alerts in this state.")
@click.option("--workflow", metavar="NAME", help="Only this workflow's alerts.")
@click.option("--limit", type=click.IntRange(min=1), default=50, show_default=True, help="Newest alerts shown.")
@store_option
@json_option
@log_level_option()
def list_alerts(state: str | None, workflow: str | None, limit: int, store: str, as_json: bool, log_level: str) -> int:
    """List alerts, newest first, with the action each takes while it holds."""
    setup_logging(log_level)

    async def go(client: Client) -> list[AlertRecord]:
        return await client.alerts(state=state, workflow=workflow, limit=limit)

    found = run_async(with_client(store, go, read_only=True))
    if as_json:
        click.echo(json.dumps([a.to_dict() for a in found], indent=2))
        return 0
    out = console()
    if not found:
        out.print("no alerts")
        return 0
    table = Table(title="alerts")
    for column in ("id", "state", "step", "value", "action", "fired", "reason"):
        table.add_column(column)
    for a in found:
        action = "-" if a.action is None else (f"{a.action} (holds)" if a.diverting else f"{a.action} (lifted)")
        table.add_row(a.alert_id, a.state.value, a.step or "-", f"{a.value:.4g}", action, _when(a.fired_at), a.reason)
    out.print(table)
    return 0


@alerts.command("ack")
@click.argument("alert_id", metavar="ID")
@click.option("--by", required=True, metavar="NAME", help="Who acknowledges it.")
@store_option
@json_option
@log_level_option()
def ack(alert_id: str, by: str, store: str, as_json: bool, log_level: str) -> int:
    """Acknowledge alert ID: you have it, and its action stops diverting its step."""
    setup_logging(log_level)

    async def go(client: Client) -> AlertRecord:
        return await client.acknowledge_alert(alert_id, by=by)

    alert = run_async(with_client(store, go))
    if as_json:
        click.echo(json.dumps(alert.to_dict(), indent=2))
    else:
        console().print(f"acknowledged {alert.alert_id} ({alert.state.value}) by {by}")
    return 0
