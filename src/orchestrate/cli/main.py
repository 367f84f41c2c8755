"""The ``orchestrate`` command: ``run``, ``signal``, ``worker``, and the ``runs``/``dlq`` groups.

Every command is a thin layer over :class:`orchestrate.Client`. Exit codes:

* 0 — done; a run the command drove succeeded;
* 1 — a run the command drove ended failed, dead or cancelled;
* 2 — bad arguments or input, an unknown run, or any other orchestrate error: one
  ``error: …`` line on stderr, never a traceback;
* 3 — a run the command drove is waiting for a person or an external signal;
* 130 — interrupted (Ctrl-C).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import Sequence
from typing import Any

import click

from orchestrate import __version__
from orchestrate._redact import redact
from orchestrate.cli._common import (
    APP_ENV,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    app_option,
    console,
    echo,
    exit_code_for,
    log_level_option,
    needs_app,
    printable,
    run_async,
    setup_logging,
    shown,
    store_option,
    with_client,
)
from orchestrate.cli.alerts import alerts, evaluating, load_monitors
from orchestrate.cli.dlq import dlq
from orchestrate.cli.loading import JSON_VALUE
from orchestrate.cli.metrics_command import metrics, metrics_port_option, start_metrics
from orchestrate.cli.reviews import reviews
from orchestrate.cli.runs import drive_and_show, print_next_steps, runs
from orchestrate.cli.schedules import load_all, schedules
from orchestrate.cli.serve import serve_command
from orchestrate.cli.stats import stats
from orchestrate.cli.timeline import render_timeline
from orchestrate.cli.tokens import tokens
from orchestrate.cli.yaml_commands import COMMANDS, canonical, declared_monitors, load_target
from orchestrate.client import Client, RunDetail
from orchestrate.errors import InvalidInputError, OrchestrateError
from orchestrate.policies import parse_duration
from orchestrate.store import SCHEMA_VERSION, open_store
from orchestrate.triggers import Trigger, WebhookTrigger, run_triggers
from orchestrate.workflow import AnyWorkflow

TRACEBACK_ENV = "ORCHESTRATE_TRACEBACK"
"""Set to print the traceback of an unexpected error instead of its one line."""


def _positive_duration(text: str, option: str) -> float:
    try:
        seconds = parse_duration(text, what=option)
    except OrchestrateError as exc:
        raise click.BadParameter(str(exc)) from None
    if seconds <= 0:
        raise click.BadParameter(f"{option} must be longer than 0, got {text!r}")
    return seconds


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _fail(message: str, code: int) -> int:
    click.echo(f"error: {printable(_one_line(redact(message)))}", err=True)
    return code


class OrchestrateGroup(click.Group):
    """The root group: turns every expected error into one ``error: …`` line and an exit code."""

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        """Run the command line; exit (or, with ``standalone_mode=False``, return) its code."""
        try:
            rv = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
            code = rv if isinstance(rv, int) else EXIT_OK
        except click.UsageError as exc:
            hint = f" (see '{exc.ctx.command_path} --help')" if exc.ctx is not None else ""
            code = _fail(exc.format_message() + hint, exc.exit_code)
        except click.ClickException as exc:
            code = _fail(exc.format_message(), exc.exit_code)
        except click.Abort:
            code = _fail("interrupted", EXIT_INTERRUPTED)
        except OrchestrateError as exc:
            code = _fail(str(exc) or type(exc).__name__, EXIT_USAGE)
        except Exception as exc:
            # Not an error orchestrate expected: still one line (and the traceback on request).
            if os.environ.get(TRACEBACK_ENV):
                raise
            code = _fail(
                f"unexpected {type(exc).__name__}: {exc} (this is a bug in orchestrate or in the code it ran; "
                f"set {TRACEBACK_ENV}=1 to see the traceback, and report it)",
                EXIT_USAGE,
            )
        if standalone_mode:
            sys.exit(code)
        return code


@click.group(cls=OrchestrateGroup, invoke_without_command=True)
@click.version_option(__version__, prog_name="orchestrate")
@click.pass_context
def cli(ctx: click.Context) -> None:
    """Run and inspect durable AI workflows.

    Exit codes: 0 success, 1 a run failed/dead/cancelled, 2 usage or input error,
    3 a run waits for a person, 130 interrupted.
    """
    if ctx.invoked_subcommand is None:
        click.echo(ctx.get_help())


cli.add_command(runs)
cli.add_command(dlq)
cli.add_command(schedules)
cli.add_command(reviews)
cli.add_command(metrics)
cli.add_command(serve_command)
cli.add_command(tokens)
cli.add_command(stats)
cli.add_command(alerts)
for _command in COMMANDS:  # validate, graph, schema
    cli.add_command(_command)


def main() -> None:
    """Entry point of the ``orchestrate`` command."""
    cli.main(prog_name="orchestrate")


# run ------------------------------------------------------------------------------------------


@cli.command("run", short_help="Run a workflow and show its timeline.")
@click.argument("target")
@click.option(
    "--input",
    "input_",
    type=JSON_VALUE,
    default=None,
    metavar="JSON",
    help="The run's input as JSON (@file.json reads a file). Default: null.",
)
@store_option
@click.option("--detach", is_flag=True, help="Only create the run (pending) for a worker, and print its id.")
@click.option("--run-id", metavar="ID", help="The run's id (default: a new UUID); an existing id is followed.")
@click.option(
    "--queue",
    metavar="NAME",
    default=None,
    help="With --detach: the queue the run waits in, for `orchestrate worker --queue NAME`. Default: default.",
)
@log_level_option()
def run_command(
    target: str, input_: Any, store: str, detach: bool, run_id: str | None, queue: str | None, log_level: str
) -> int:
    """Run the workflow TARGET (FILE.yaml, path/to/file.py:NAME or package.module:NAME).

    Runs in this process until the run ends or waits for a person, then prints its
    timeline. With --detach, prints the new run's id and leaves it to `orchestrate
    worker` (with --queue, to the workers of that queue). Exit codes: 0 succeeded,
    1 failed/dead/cancelled, 3 waiting.
    """
    if queue is not None and not detach:
        raise click.UsageError("--queue needs --detach: without it the run is driven in this process")
    setup_logging(log_level)
    wf = load_target(target)
    options = {"target": canonical(target)}

    if detach:

        async def start(client: Client) -> str:
            return await client.start(
                wf, input_, run_id=run_id, options=options, queue="default" if queue is None else queue
            )

        echo(run_async(with_client(store, start, workflows=[wf], create=True)))
        return EXIT_OK

    async def drive(client: Client) -> RunDetail:
        async with evaluating(client, declared_monitors([wf])):  # the YAML file's monitors
            record = await client.run(wf, input_, run_id=run_id, options=options)
        return await client.detail(record.run_id)

    detail = shown(run_async(with_client(store, drive, workflows=[wf], create=True)))
    out = console()
    render_timeline(detail, out)
    print_next_steps(out, detail, options["target"])
    return exit_code_for(detail.run)


# signal ---------------------------------------------------------------------------------------


@cli.command("signal", short_help="Deliver a signal or a review decision to a run.")
@click.argument("run_id", metavar="RUN")
@click.argument("key")
@click.option(
    "--value",
    type=JSON_VALUE,
    default=None,
    metavar="JSON",
    help="The value `ctx.wait(KEY)` returns, as JSON (@file.json reads a file). Default: null.",
)
@click.option("--by", metavar="WHO", help="Who sends it (recorded in the run's history).")
@click.option("--resume", is_flag=True, help="Then drive the run in this process and print its timeline.")
@app_option("With --resume: the run's workflow, FILE.yaml, path/to/file.py:NAME or module:NAME (required then)")
@store_option
@log_level_option()
def signal_command(
    run_id: str,
    key: str,
    value: Any,
    by: str | None,
    resume: bool,
    apps: tuple[str, ...],
    store: str,
    log_level: str,
) -> int:
    """Deliver --value to run RUN, waiting on `ctx.wait(KEY)` (exactly once).

    A review gate on step S waits for KEY `review:S` with a value like
    '{"approved": true}'. The run becomes due at once: a worker continues it, or
    this command with --resume and --app (exit codes then as for `orchestrate run`).
    """
    setup_logging(log_level)

    async def deliver(client: Client) -> str:
        run = await client.get(run_id)
        if resume and not apps:
            # Refused before anything is delivered: the operator names the code, not the store.
            raise InvalidInputError(needs_app(run))
        await client.signal(run.run_id, key, value, by=by)
        return run.run_id

    found = run_async(with_client(store, deliver))
    echo(f"signal {key!r} delivered to run {found}")
    if resume:
        return drive_and_show(store, found, apps)
    return EXIT_OK


# worker ---------------------------------------------------------------------------------------


@cli.command("worker", short_help="Drive due runs of the given workflows.")
@store_option
@click.option(
    "--app",
    "apps",
    multiple=True,
    required=True,
    envvar=APP_ENV,
    metavar="TARGET",
    help=f"A workflow to serve, path/to/file.py:NAME or module:NAME (repeat for several; env {APP_ENV}).",
)
@click.option("--concurrency", type=click.IntRange(min=1), default=10, show_default=True, help="Runs driven at once.")
@click.option("--until-idle", is_flag=True, help="Stop when no run of these workflows is due or scheduled.")
@click.option(
    "--queue",
    "queues",
    multiple=True,
    metavar="NAME",
    help="Only claim runs of this queue (repeat for several). Default: every queue.",
)
@click.option(
    "--lease",
    "lease_seconds",
    type=click.FloatRange(min=1.0),
    default=30.0,
    show_default=True,
    help="Seconds a claimed run stays held without a heartbeat: how soon a dead worker's runs move on.",
)
@click.option(
    "--drain",
    "drain_seconds",
    type=click.FloatRange(min=0.0),
    default=None,
    help="On SIGTERM, seconds to let runs in flight finish before handing them back. Default: until they finish.",
)
@click.option(
    "--poll",
    "poll_seconds",
    type=click.FloatRange(min=0.01),
    default=0.5,
    show_default=True,
    help="Seconds between looks for due runs when idle.",
)
@click.option(
    "--retain",
    "retain",
    metavar="DURATION",
    default=None,
    help="Delete runs that ended (succeeded, failed, cancelled) longer ago than this, e.g. 30d. Default: keep them.",
)
@click.option(
    "--max-crashes",
    type=click.IntRange(min=1),
    default=3,
    show_default=True,
    help="Attempts of a run that may die with their process (os._exit, segfault, OOM kill) before it goes "
    "to the dead-letter queue.",
)
@click.option(
    "--triggers",
    "trigger_targets",
    multiple=True,
    metavar="TARGET",
    help="Also serve these triggers (cron schedules, NATS, Redis, RabbitMQ), path/to/file.py:NAME or module:NAME "
    "naming a trigger or a list of them (repeat for several). Webhooks are served by `orchestrate serve`.",
)
@click.option(
    "--monitors",
    "monitor_targets",
    multiple=True,
    metavar="TARGET",
    help="Also evaluate these monitors from the store and take their alerts' actions, path/to/file.py:NAME or "
    "module:NAME naming a monitor or a list of them, or FILE.yaml (its monitors:); repeat for several. A YAML "
    "--app's own monitors: are evaluated without it. Workers share one alert per incident.",
)
@click.option(
    "--monitor-interval",
    "monitor_interval",
    type=click.FloatRange(min=0.05),
    default=5.0,
    show_default=True,
    help="Seconds between the monitors' passes over the store.",
)
@metrics_port_option
@log_level_option("info")
def worker_command(
    store: str,
    apps: tuple[str, ...],
    concurrency: int,
    until_idle: bool,
    queues: tuple[str, ...],
    lease_seconds: float,
    drain_seconds: float | None,
    poll_seconds: float,
    retain: str | None,
    max_crashes: int,
    trigger_targets: tuple[str, ...],
    monitor_targets: tuple[str, ...],
    monitor_interval: float,
    metrics_port: int | None,
    log_level: str,
) -> int:
    """Claim and drive due runs of the given workflows until SIGTERM/SIGINT.

    The first SIGTERM or Ctrl-C stops claiming runs and lets the runs in flight
    finish (or, with --drain, hands back those still going after that long); a second
    one stops at once and hands them back. Another worker resumes a handed-back run
    from its last recorded step.
    """
    setup_logging(log_level)
    retain_seconds = None if retain is None else _positive_duration(retain, "--retain")
    start_metrics(metrics_port)
    workflows = [load_target(app) for app in apps]
    triggers = [t for t in load_all(trigger_targets) if not isinstance(t, WebhookTrigger)]
    monitors = declared_monitors(workflows, load_monitors(monitor_targets))  # and the YAML apps' own
    try:
        driven = run_async(
            _work(
                store,
                workflows,
                concurrency,
                until_idle,
                poll_seconds,
                list(queues) or None,
                lease_seconds=lease_seconds,
                drain_seconds=drain_seconds,
                max_crashes=max_crashes,
                retain_seconds=retain_seconds,
                triggers=triggers,
                monitors=monitors,
                monitor_interval=monitor_interval,
                queue_metrics=metrics_port is not None,
            )
        )
    except asyncio.CancelledError:
        click.echo("worker stopped at once; its runs in flight were handed back to the other workers", err=True)
        return EXIT_INTERRUPTED
    click.echo(f"worker stopped after driving {driven} run(s)", err=True)
    return EXIT_OK


async def _work(
    store: str,
    workflows: list[AnyWorkflow],
    concurrency: int,
    until_idle: bool,
    poll_seconds: float,
    queues: list[str] | None = None,
    *,
    lease_seconds: float = 30.0,
    drain_seconds: float | None = None,
    max_crashes: int = 3,
    retain_seconds: float | None = None,
    triggers: Sequence[Trigger] = (),
    monitors: Sequence[Any] = (),
    monitor_interval: float = 5.0,
    queue_metrics: bool = False,
) -> int:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    task = asyncio.current_task()
    received: list[int] = []

    def on_signal(signum: int) -> None:
        received.append(signum)
        if len(received) == 1:
            click.echo(f"{signal.Signals(signum).name}: finishing the runs in flight (again to stop at once)", err=True)
            stop.set()
        elif task is not None:
            task.cancel()

    installed: list[int] = []
    for wanted in (signal.SIGTERM, signal.SIGINT):
        try:
            loop.add_signal_handler(wanted, on_signal, wanted)
            installed.append(wanted)
        except (NotImplementedError, RuntimeError, ValueError):
            pass  # not the main thread, or not supported here: Ctrl-C still interrupts
    try:
        async with Client(store, workflows=workflows) as client:
            client.engine.lease_seconds = lease_seconds
            client.engine.max_crashes = max_crashes
            client.engine.retain_seconds = retain_seconds
            names = ", ".join(f"{wf.name} ({wf.version})" for wf in workflows)
            echo(f"worker {client.engine.owner} serving {names} from {store}", err=True)
            if triggers:
                echo(f"worker triggers: {', '.join(t.name for t in triggers)}", err=True)
            if monitors:
                echo(f"worker monitors: {', '.join(m.name for m in monitors)}", err=True)
            watching: Any = contextlib.nullcontext()
            if queue_metrics:  # --metrics-port: the queue gauges, read from the store
                from orchestrate.observe.prometheus import watch_queues

                watching = watch_queues(client.engine)
            async with evaluating(client, monitors, interval_seconds=monitor_interval), watching:
                return await _work_with_triggers(
                    client,
                    triggers,
                    stop,
                    concurrency=concurrency,
                    poll_seconds=poll_seconds,
                    until_idle=until_idle,
                    queues=queues,
                    drain_seconds=drain_seconds,
                )
    finally:
        for signum in installed:
            loop.remove_signal_handler(signum)


async def _work_with_triggers(client: Client, triggers: Sequence[Trigger], stop: asyncio.Event, **work: Any) -> int:
    """Drive runs and serve the triggers until ``stop``; a trigger that fails stops the worker."""
    if not triggers:
        return await client.engine.work(stop=stop, **work)
    serving = asyncio.create_task(run_triggers(client, triggers, stop=stop))
    working = asyncio.create_task(client.engine.work(stop=stop, **work))
    try:
        await asyncio.wait({serving, working}, return_when=asyncio.FIRST_COMPLETED)
        if serving.done() and serving.exception() is not None:
            stop.set()
            await asyncio.gather(working, return_exceptions=True)
            serving.result()  # raises the trigger's error: one line, exit 2
        stop.set()  # the work ended (--until-idle): stop the triggers too
        await serving
        return await working
    finally:
        for task in (serving, working):
            task.cancel()
        await asyncio.gather(serving, working, return_exceptions=True)


# migrate --------------------------------------------------------------------------------------


@cli.command("migrate", short_help="Create the store's tables, or migrate an older schema.")
@store_option
@log_level_option()
def migrate_command(store: str, log_level: str) -> int:
    """Create the store's tables, or migrate an older schema to this version of orchestrate.

    A deploy step: workers started with ?migrate=false, and the commands that only read
    (runs list, runs show, dlq list...), never migrate. Running it again does nothing.
    """
    setup_logging(log_level)

    async def go() -> tuple[int, int]:
        backend = open_store(store)
        if hasattr(backend, "migrate"):  # PostgreSQL: migrate even with ?migrate=false
            backend.migrate = True
        await backend.open()
        try:
            return await backend.schema_version(), SCHEMA_VERSION
        finally:
            await backend.close()

    version, wanted = run_async(go())
    echo(f"store {store} is at schema version {version} (this orchestrate: {wanted})")
    return EXIT_OK
