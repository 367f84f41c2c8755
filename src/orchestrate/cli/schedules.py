"""``orchestrate schedules list``, and loading the triggers ``orchestrate worker --triggers`` serves.

A triggers target names, like a workflow target, ``path/to/file.py:NAME`` or
``module:NAME``, where ``NAME`` is a trigger (a :class:`~orchestrate.triggers.Schedule`,
a broker trigger, a :class:`~orchestrate.triggers.WebhookTrigger`) or a list of them.
"""

from __future__ import annotations

import datetime as dt
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
from orchestrate.cli.loading import _import_module, _load_file, is_file_target, split_target
from orchestrate.client import Client
from orchestrate.errors import InvalidInputError
from orchestrate.triggers import Schedule, Trigger, WebhookTrigger

AnyTrigger = Trigger | WebhookTrigger


def load_triggers(target: str) -> list[AnyTrigger]:
    """The triggers ``target`` names: one trigger, or a list or tuple of them.

    Raises:
        InvalidInputError: the module or file does not load, lacks the name, or the
            name is not a trigger (nor a list of triggers).
    """
    location, name = split_target(target)
    module = _load_file(location, target) if is_file_target(location) else _import_module(location, target)
    obj: Any = module
    for part in name.split("."):
        if not hasattr(obj, part):
            raise InvalidInputError(f"{location!r} has no attribute {name!r} (from --triggers {target!r})")
        obj = getattr(obj, part)
    items = list(obj) if isinstance(obj, list | tuple) else [obj]
    for item in items:
        if not isinstance(item, Trigger | WebhookTrigger):
            raise InvalidInputError(
                f"{name!r} in {location!r} holds a {type(item).__name__}, not a trigger "
                "(a Schedule, NatsTrigger, RedisTrigger, RabbitMQTrigger or WebhookTrigger, or a list of them)"
            )
    return items


def load_all(targets: tuple[str, ...]) -> list[AnyTrigger]:
    """The triggers of every target, names unique across them."""
    found = [trigger for target in targets for trigger in load_triggers(target)]
    names = [t.name for t in found]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise InvalidInputError(f"trigger names must be unique; used twice: {', '.join(twice)}")
    return found


@click.group("schedules", invoke_without_command=True, short_help="Cron schedules: list them with their next firings.")
@click.pass_context
def schedules(ctx: click.Context) -> None:
    """Cron schedules (served by `orchestrate worker --triggers`)."""
    if ctx.invoked_subcommand is None:
        click.echo(ctx.get_help())


@schedules.command("list")
@click.option(
    "--triggers",
    "targets",
    multiple=True,
    required=True,
    metavar="TARGET",
    help="The triggers, path/to/file.py:NAME or module:NAME (a trigger or a list of them; repeat for several).",
)
@click.option("--count", type=click.IntRange(1, 100), default=3, show_default=True, help="Next firings shown.")
@click.option("--state", is_flag=True, help="Also read from the store up to when each schedule has fired.")
@store_option
@json_option
@log_level_option()
def list_schedules(targets: tuple[str, ...], count: int, state: bool, store: str, as_json: bool, log_level: str) -> int:
    """List the schedules with their next firings, in each schedule's time zone."""
    setup_logging(log_level)
    found = [t for t in load_all(targets) if isinstance(t, Schedule)]
    now = dt.datetime.now(dt.UTC).timestamp()
    cursors: dict[str, float | None] = {}
    if state and found:

        async def read(client: Client) -> dict[str, float | None]:
            return {s.name: await s.cursor(client) for s in found}

        cursors = run_async(with_client(store, read, read_only=True))
    rows = [_row(s, count, now, cursors) for s in found]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return 0
    if not rows:
        click.echo("no schedules")
        return 0
    table = Table(title="schedules")
    for column in ("name", "workflow", "cron", "timezone", "misfire", "next firings"):
        table.add_column(column)
    if state:
        table.add_column("fired up to")
    for row in rows:
        cells = [
            row["name"],
            row["workflow"],
            row["cron"],
            row["timezone"],
            row["misfire"],
            "\n".join(row["next"]),
        ]
        if state:
            cells.append(row["fired_up_to"] or "never served")
        table.add_row(*cells)
    console().print(table)
    return 0


def _row(schedule: Schedule, count: int, now: float, cursors: dict[str, float | None]) -> dict[str, Any]:
    misfire = schedule.misfire
    cursor = cursors.get(schedule.name)
    return {
        "name": schedule.name,
        "workflow": schedule.workflow_name,
        "cron": schedule.cron,
        "timezone": schedule.timezone,
        "misfire": f"catch_up:{misfire.catch_up}" if misfire.catch_up else "skip",
        "next": [when.isoformat() for when in schedule.next_firings(count, after=now)],
        "fired_up_to": None if cursor is None else dt.datetime.fromtimestamp(cursor, schedule.zone).isoformat(),
    }
