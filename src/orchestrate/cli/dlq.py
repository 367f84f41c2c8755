"""``orchestrate dlq …``: the dead-letter queue: list, show and replay dead runs."""

from __future__ import annotations

from typing import Any

import click
from rich.text import Text

from orchestrate.cli._common import (
    app_option,
    console,
    exit_code_for,
    json_option,
    load_for,
    log_level_option,
    run_async,
    setup_logging,
    shown,
    store_option,
    with_client,
)
from orchestrate.cli.loading import JSON_VALUE
from orchestrate.cli.runs import print_detail, print_next_steps, print_runs
from orchestrate.cli.timeline import render_timeline
from orchestrate.client import Client, RunDetail
from orchestrate.errors import RunStateError
from orchestrate.store.base import RunRecord
from orchestrate.types import RunStatus


@click.group("dlq", invoke_without_command=True, short_help="The dead-letter queue: list, show, replay.")
@click.pass_context
def dlq(ctx: click.Context) -> None:
    """The dead-letter queue: runs whose retries and fallbacks were exhausted."""
    if ctx.invoked_subcommand is None:
        click.echo(ctx.get_help())


@dlq.command("list")
@click.option("--workflow", metavar="NAME", help="Only dead runs of this workflow.")
@click.option("--limit", type=click.IntRange(min=1), default=50, show_default=True, help="Newest runs shown.")
@store_option
@json_option
@log_level_option()
def list_dead(workflow: str | None, limit: int, store: str, as_json: bool, log_level: str) -> int:
    """List dead runs, newest first, with the step and error that killed them.

    A replayed run leaves the list (its history names the replay).
    """
    setup_logging(log_level)

    async def go(client: Client) -> list[RunRecord]:
        return await client.dead_letters(workflow=workflow, limit=limit, values=False)

    records = run_async(with_client(store, go, read_only=True))
    title, empty = "dead-letter queue", "the dead-letter queue is empty"
    print_runs(records, title=title, empty=empty, as_json=as_json, values=False)
    return 0


@dlq.command("show")
@click.argument("run_id", metavar="RUN")
@store_option
@json_option
@log_level_option()
def show_dead(run_id: str, store: str, as_json: bool, log_level: str) -> int:
    """Show a dead run's timeline: where it failed, after which retries and fallbacks."""
    setup_logging(log_level)

    async def go(client: Client) -> RunDetail:
        detail = await client.detail(run_id)
        if detail.run.status is not RunStatus.DEAD:
            raise RunStateError(
                f"run {detail.run.run_id!r} is not in the dead-letter queue (it is {detail.run.status.value}); "
                f"see `orchestrate runs show {detail.run.run_id}`"
            )
        return detail

    print_detail(run_async(with_client(store, go, read_only=True)), as_json=as_json)
    return 0


@dlq.command("replay")
@click.argument("run_id", metavar="RUN")
@click.option(
    "--from-step",
    metavar="KEY",
    help="Reuse the steps recorded before KEY and run KEY again (default: resume at the failure).",
)
@click.option(
    "--input",
    "input_",
    type=JSON_VALUE,
    default=None,
    metavar="JSON",
    help="With --from-step: KEY's new input. Without: a new run input (nothing reused). @file reads a file.",
)
@app_option("The (fixed) workflow: FILE.yaml, path/to/file.py:NAME or module:NAME (required)")
@store_option
@log_level_option()
def replay_dead(
    run_id: str, from_step: str | None, input_: Any, apps: tuple[str, ...], store: str, log_level: str
) -> int:
    """Replay an ended run as a new run, with the current code of its workflow.

    The code comes from --app (or $ORCHESTRATE_APP), never from the store. Prints
    the new run's timeline. Exit codes: 0 succeeded, 1 failed/dead/cancelled, 3 waiting.
    """
    setup_logging(log_level)

    async def go(client: Client) -> tuple[str, str, RunDetail]:
        source = await client.get(run_id)
        target, wf = load_for(source, apps)
        client.engine.register(wf)
        record = await client.replay(source.run_id, from_step=from_step, input=input_, options={"target": target})
        return target, source.run_id, await client.detail(record.run_id)

    target, source_id, detail = run_async(with_client(store, go))
    source_id, detail = shown((source_id, detail))
    out = console()
    out.print(Text(f"replay of run {source_id} is run {detail.run.run_id}", style="bold"))
    render_timeline(detail, out)
    print_next_steps(out, detail, target)
    return exit_code_for(detail.run)
