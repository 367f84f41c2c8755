"""``orchestrate alerts …``: the durable alerts of the monitors: list them, acknowledge one."""

from __future__ import annotations

import datetime
import json

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
from orchestrate.observe.alerts import AlertRecord


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
