"""``orchestrate runs …``: list, show, cancel and resume runs."""

from __future__ import annotations

import dataclasses
import shlex
from collections.abc import Sequence
from datetime import UTC, datetime

import click
from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from orchestrate.cli._common import (
    STATUS_STYLES,
    app_option,
    console,
    dump_json,
    echo,
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
from orchestrate.cli.timeline import error_summary, pending_review, render_timeline
from orchestrate.client import Client, RunDetail
from orchestrate.errors import RunStateError
from orchestrate.store.base import RunRecord
from orchestrate.types import RunStatus


@click.group("runs", invoke_without_command=True)
@click.pass_context
def runs(ctx: click.Context) -> None:
    """List, show, cancel and resume runs."""
    if ctx.invoked_subcommand is None:
        click.echo(ctx.get_help())


# tables -----------------------------------------------------------------------------------------


def _when(at: float, since: float | None = None) -> str:
    moment = datetime.fromtimestamp(at, UTC)
    if since is not None and moment.date() == datetime.fromtimestamp(since, UTC).date():
        return moment.strftime("%H:%M:%S")
    return moment.strftime("%Y-%m-%d %H:%M:%S")


def _reason(run: RunRecord) -> Text:
    if run.status is RunStatus.WAITING:
        return Text(run.wait_reason or "", style="yellow")
    if run.error:
        text = error_summary(run.error)
        return Text(text if len(text) <= 90 else text[:89] + "…", style="red")
    return Text("")


def runs_table(records: Sequence[RunRecord], *, title: str, width: int = 200) -> Table:
    """The table of ``runs list`` and ``dlq list``; narrower consoles get fewer columns."""
    wide = width >= 130
    dated = width >= 100
    table = Table(box=box.SIMPLE_HEAD, title=Text(title, style="bold"), title_justify="left", pad_edge=False)
    table.add_column("run", no_wrap=True, style="cyan", min_width=max((len(r.run_id) for r in records), default=3))
    table.add_column("workflow", overflow="fold", min_width=8)
    if wide:
        table.add_column("version", no_wrap=True, style="dim")
    table.add_column("status", no_wrap=True, min_width=9)
    if dated:
        table.add_column("created (UTC)", no_wrap=True)
    if wide:
        table.add_column("updated", no_wrap=True)
    table.add_column("wait reason / error", overflow="fold", ratio=1, min_width=16)
    for run in records:
        cells: list[Text | str] = [Text(run.run_id), Text(run.workflow)]
        if wide:
            cells.append(Text(run.version))
        cells.append(Text(run.status.value, style=STATUS_STYLES.get(run.status, "")))
        if dated:
            cells.append(_when(run.created_at) if wide else _when(run.created_at)[5:])
        if wide:
            cells.append(_when(run.updated_at, since=run.created_at))
        cells.append(_reason(run))
        table.add_row(*cells)
    return table


def print_runs(records: Sequence[RunRecord], *, title: str, empty: str, as_json: bool, values: bool = True) -> None:
    """Print runs as a table (or JSON), or a line saying there are none; secrets masked.

    Without ``values`` the JSON leaves out each run's input and output (they were not read).
    """
    records = shown(records)
    if as_json:
        rows = [dataclasses.asdict(r) for r in records]
        if not values:
            for row in rows:
                del row["input"], row["output"]
        dump_json(rows)
        return
    out = console()
    if not records:
        out.print(Text(empty, style="dim"))
        return
    out.print(runs_table(records, title=title, width=out.width))


def print_detail(detail: RunDetail, *, as_json: bool) -> None:
    """Print a run's timeline (or its record, steps and events as JSON); secrets masked."""
    detail = shown(detail)
    if as_json:
        dump_json(dataclasses.asdict(detail))
        return
    render_timeline(detail, console())


def print_next_steps(out: Console, detail: RunDetail, app: str | None = None) -> None:
    """One line telling what to do about a run that did not succeed.

    ``app`` is the target the operator gave this command; the commands shown pass it on
    (a command that drives the run needs the operator's ``--app``).
    """
    run = detail.run
    with_app = f" --app {shlex.quote(app)}" if app else ""
    item = pending_review(detail)
    if item is not None:
        have = {a.get("role") for a in item.approvals}
        roles = [r for r in item.required_roles if r not in have] or item.allowed_roles
        role = "" if not roles else f" --role {roles[0] if len(roles) == 1 else 'ROLE'}"
        out.print(
            Text(
                f"run {run.run_id} is waiting for review {item.review_id}; decide with: "
                f"orchestrate reviews approve {item.review_id}{role} --resume{with_app}, or: "
                f"orchestrate reviews reject {item.review_id}{role} --reason TEXT --resume{with_app}",
                style="yellow",
            ),
            soft_wrap=True,
        )
    elif run.status is RunStatus.WAITING and (run.wait_reason or "").startswith("signal:"):
        key = (run.wait_reason or "")[len("signal:") :]
        out.print(
            Text(
                f"run {run.run_id} is waiting; continue it with: "
                f"orchestrate signal {run.run_id} {key} --value JSON --resume{with_app}",
                style="yellow",
            ),
            soft_wrap=True,
        )
    elif run.status is RunStatus.DEAD:
        step = (run.error or {}).get("step")
        again = f" --from-step {step}" if step else ""
        out.print(
            Text(
                f"run {run.run_id} is in the dead-letter queue; after fixing the cause: "
                f"orchestrate dlq replay {run.run_id}{again}{with_app}",
                style="red",
            ),
            soft_wrap=True,
        )


# commands ---------------------------------------------------------------------------------------


@runs.command("list")
@click.option(
    "--status",
    "statuses",
    multiple=True,
    metavar="STATUS",
    help="Only runs with this status (repeat, or separate with commas): " + ", ".join(s.value for s in RunStatus) + ".",
)
@click.option("--workflow", metavar="NAME", help="Only runs of this workflow.")
@click.option("--limit", type=click.IntRange(min=1), default=50, show_default=True, help="Newest runs shown.")
@store_option
@json_option
@click.option("--full", is_flag=True, help="With --json: each run's input and output too (read from the store).")
@log_level_option()
def list_runs(
    statuses: tuple[str, ...],
    workflow: str | None,
    limit: int,
    store: str,
    as_json: bool,
    full: bool,
    log_level: str,
) -> int:
    """List runs, newest first (their inputs and outputs are not read, unless --full)."""
    setup_logging(log_level)
    wanted = [part.strip() for text in statuses for part in text.split(",") if part.strip()]

    async def go(client: Client) -> list[RunRecord]:
        return await client.list(status=wanted or None, workflow=workflow, limit=limit, values=full)

    records = run_async(with_client(store, go, read_only=True))
    print_runs(records, title=f"runs in {store}", empty="no runs match", as_json=as_json, values=full)
    return 0


@runs.command("prune")
@click.option(
    "--older-than",
    "older_than",
    required=True,
    metavar="DURATION",
    help="Delete runs that ended longer ago than this: 30d, 12h, 90m...",
)
@click.option(
    "--status",
    "statuses",
    multiple=True,
    metavar="STATUS",
    help="Only ended runs with this status (repeat, or separate with commas). Default: succeeded, failed, cancelled "
    "(dead runs only when named).",
)
@click.option("--dry-run", is_flag=True, help="Delete nothing; say how many runs would be deleted.")
@store_option
@log_level_option()
def prune_runs(older_than: str, statuses: tuple[str, ...], dry_run: bool, store: str, log_level: str) -> int:
    """Delete ended runs older than --older-than, with their steps, history and review items.

    Runs that have not ended are never deleted. Deleted in batches, one transaction
    each, so workers keep going meanwhile.
    """
    setup_logging(log_level)
    wanted = [part.strip() for text in statuses for part in text.split(",") if part.strip()]

    async def go(client: Client) -> int:
        return await client.prune(older_than=older_than, status=wanted or None, dry_run=dry_run)

    count = run_async(with_client(store, go, read_only=dry_run))
    which = ", ".join(wanted) or "succeeded, failed or cancelled"
    if dry_run:
        echo(f"{count} run(s) ({which}) ended more than {older_than} ago; nothing was deleted (--dry-run)")
    else:
        echo(f"deleted {count} run(s) ({which}) that ended more than {older_than} ago")
    return 0


@runs.command("show")
@click.argument("run_id", metavar="RUN")
@store_option
@json_option
@log_level_option()
def show_run(run_id: str, store: str, as_json: bool, log_level: str) -> int:
    """Show a run's timeline: its steps over time, retries, fallbacks, waits and history."""
    setup_logging(log_level)

    async def go(client: Client) -> RunDetail:
        return await client.detail(run_id)

    print_detail(run_async(with_client(store, go, read_only=True)), as_json=as_json)
    return 0


@runs.command("cancel")
@click.argument("run_id", metavar="RUN")
@click.option("--reason", default="cancelled from the command line", show_default=True, help="Recorded with the run.")
@store_option
@log_level_option()
def cancel_run(run_id: str, reason: str, store: str, log_level: str) -> int:
    """Cancel a run that has not ended; a worker driving it stops at its next write."""
    setup_logging(log_level)

    async def go(client: Client) -> RunRecord:
        return await client.cancel(run_id, reason=reason)

    run = run_async(with_client(store, go))
    echo(f"run {run.run_id} is {run.status.value}")
    return 0


@runs.command("resume")
@click.argument("run_id", metavar="RUN")
@app_option("The run's workflow: FILE.yaml, path/to/file.py:NAME or module:NAME (required)")
@store_option
@log_level_option()
def resume_run(run_id: str, apps: tuple[str, ...], store: str, log_level: str) -> int:
    """Drive a run in this process until it ends or waits for a person, then show it.

    The code comes from --app (or $ORCHESTRATE_APP), never from the store. Exit
    codes: 0 succeeded, 1 failed/dead/cancelled, 3 waiting.
    """
    setup_logging(log_level)
    return drive_and_show(store, run_id, apps)


def drive_and_show(store: str, run_id: str, apps: Sequence[str], *, or_leave: bool = False) -> int:
    """Resume ``run_id`` in this process with the operator's code, print its timeline, return the exit code.

    Without ``apps`` the run is refused with one line naming the workflow and version it
    needs; with ``or_leave`` it is left to a worker instead: one line says so and the exit
    code is 0.
    """

    async def go(client: Client) -> tuple[str, RunDetail] | str:
        run = await client.get(run_id)
        if run.status.terminal:
            code = shlex.quote(apps[0]) if apps else "path/to/file.py:NAME"
            dead = run.status is RunStatus.DEAD
            hint = f"; replay it with `orchestrate dlq replay {run.run_id} --app {code}`" if dead else ""
            raise RunStateError(
                f"run {run.run_id!r} already ended ({run.status.value}), there is nothing to resume{hint}"
            )
        if or_leave and not apps:
            return _left_to_a_worker(run)
        target, wf = load_for(run, apps)
        client.engine.register(wf)
        client.engine.get_workflow(run.workflow, run.version)
        await client.resume(run.run_id)
        return target, await client.detail(run.run_id)

    driven = run_async(with_client(store, go))
    if isinstance(driven, str):
        echo(driven)
        return 0
    target, detail = driven[0], shown(driven[1])
    out = console()
    render_timeline(detail, out)
    print_next_steps(out, detail, target)
    return exit_code_for(detail.run)


def _left_to_a_worker(run: RunRecord) -> str:
    """One line: why ``run`` is not driven here, and what will drive it."""
    return (
        f"run {run.run_id} is not resumed here (no --app names the code of workflow {run.workflow!r} "
        f"version {run.version!r}): a worker serving workflow {run.workflow!r} will resume it, "
        f"or resume it here with `orchestrate runs resume {run.run_id} --app path/to/file.py:NAME`"
    )
