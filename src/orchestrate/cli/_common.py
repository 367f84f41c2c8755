"""Pieces shared by the commands: options, exit codes, the console, the client.

Everything a command prints goes through :func:`shown` (records), :func:`echo`,
:func:`dump_json` or :func:`console`, which mask secrets: every ``Secret`` value of the
process and common credential formats (also in data an older version stored in clear).
Records are masked before they are rendered, so a secret is never split by wrapping
before it is recognised; the console masks what it writes once more.

The code a command runs comes from the operator — ``--app`` or ``$ORCHESTRATE_APP`` —
never from the store: a run's recorded ``target`` is only shown as a hint.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Sequence
from typing import Any, TextIO, TypeVar, cast

import click
from rich.console import Console

from orchestrate._redact import redact, redact_data
from orchestrate.client import Client
from orchestrate.errors import InvalidInputError, StoreError
from orchestrate.observe import configure_logging
from orchestrate.store import DEFAULT_URL, open_store
from orchestrate.store.base import RunRecord
from orchestrate.store.sqlite import SQLiteStore
from orchestrate.types import RunStatus
from orchestrate.workflow import AnyWorkflow

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])

EXIT_OK = 0
"""The command did what was asked (a run it drove succeeded)."""
EXIT_RUN_FAILED = 1
"""A run the command drove ended failed, dead or cancelled."""
EXIT_USAGE = 2
"""Bad arguments, bad input, an unknown run, or any other orchestrate error."""
EXIT_WAITING = 3
"""A run the command drove is waiting for a person or an external signal."""
EXIT_INTERRUPTED = 130
"""Interrupted by Ctrl-C."""

LOG_LEVELS = ("debug", "info", "warning", "error")

STATUS_STYLES: dict[RunStatus, str] = {
    RunStatus.PENDING: "dim",
    RunStatus.RUNNING: "bold blue",
    RunStatus.WAITING: "bold yellow",
    RunStatus.SUCCEEDED: "bold green",
    RunStatus.FAILED: "bold red",
    RunStatus.CANCELLED: "magenta",
    RunStatus.DEAD: "bold red",
}


def store_option(fn: F) -> F:
    """``--store URL`` (else ``$ORCHESTRATE_STORE``, else the SQLite file in ``.orchestrate/``)."""
    return click.option(
        "--store",
        "store",
        envvar="ORCHESTRATE_STORE",
        default=DEFAULT_URL,
        show_default=True,
        metavar="URL",
        help="Store URL: sqlite:///path.db, postgresql://..., memory:// (env ORCHESTRATE_STORE).",
    )(fn)


def log_level_option(default: str = "warning") -> Callable[[F], F]:
    """``--log-level`` for the JSON logs written to stderr."""

    def decorate(fn: F) -> F:
        return click.option(
            "--log-level",
            type=click.Choice(LOG_LEVELS, case_sensitive=False),
            default=default,
            show_default=True,
            help="Level of the JSON logs written to stderr.",
        )(fn)

    return decorate


APP_ENV = "ORCHESTRATE_APP"
"""Targets the commands may load for existing runs, separated by spaces (like repeated ``--app``)."""


def app_option(help: str) -> Callable[[F], F]:
    """``--app TARGET`` (repeatable; else ``$ORCHESTRATE_APP``): the code, named by the operator."""

    def decorate(fn: F) -> F:
        return click.option(
            "--app",
            "apps",
            multiple=True,
            envvar=APP_ENV,
            metavar="TARGET",
            help=f"{help} (repeat for several; env {APP_ENV}).",
        )(fn)

    return decorate


def json_option(fn: F) -> F:
    """``--json``: print machine-readable JSON instead of tables."""
    return click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")(fn)


class _Stderr:
    """Writes to whatever ``sys.stderr`` is at the time of the write (tests swap it)."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


_STDERR = cast(TextIO, _Stderr())


def setup_logging(level: str) -> None:
    """Send JSON logs at ``level`` to stderr (stdout stays for results): the library's, and
    the workflow code's own (``logging.getLogger(...)``) with their run's ids."""
    configure_logging(level, stream=_STDERR, root=True)


def printable(text: str) -> str:
    """``text`` with lone surrogates (which no output encoding takes) written as ``\\udXXX`` escapes.

    Old data may hold them (JSON can spell one, ``"\\ud800"``): a command that shows it
    must not fail on it, and must not fail for the whole listing either.
    """
    if text.isascii():
        return text
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text


class _MaskedStdout:
    """Writes to whatever ``sys.stdout`` is at the time of the write, secrets masked."""

    def write(self, text: str) -> int:
        sys.stdout.write(printable(redact(text)))
        return len(text)

    def flush(self) -> None:
        sys.stdout.flush()

    def isatty(self) -> bool:
        return sys.stdout.isatty()

    def fileno(self) -> int:
        return sys.stdout.fileno()

    @property
    def encoding(self) -> str:
        return getattr(sys.stdout, "encoding", None) or "utf-8"


def console() -> Console:
    """A console on the current stdout, secrets masked; 120 columns when stdout is not a terminal."""
    out = Console(file=cast(TextIO, _MaskedStdout()), highlight=False)
    if not out.is_terminal and "COLUMNS" not in os.environ:
        out.width = 120
    return out


def run_async(coro: Coroutine[Any, Any, T]) -> T:
    """Run one coroutine to completion on a fresh event loop."""
    return asyncio.run(coro)


async def with_client(
    store: str,
    fn: Callable[[Client], Awaitable[T]],
    *,
    workflows: Iterable[AnyWorkflow] = (),
    create: bool = False,
    read_only: bool = False,
) -> T:
    """Open a client on ``store``, call ``fn`` with it, close it.

    Only commands that start runs pass ``create=True``: for the others a SQLite file that
    does not exist (a mistyped ``--store``) is an error, and nothing is created. Commands
    that only read pass ``read_only=True``: they write nothing, not even a migration, and
    do not wait for another process's write.
    """
    backend = open_store(store, create=create, read_only=read_only)
    client = Client(backend, workflows=workflows)
    try:
        await client.engine.open()
    except StoreError as exc:
        if create or not isinstance(backend, SQLiteStore) or await asyncio.to_thread(os.path.exists, backend.path):
            raise
        raise StoreError(
            f"{exc}; check --store or $ORCHESTRATE_STORE (without them: {DEFAULT_URL}, in the current directory)"
        ) from exc
    async with client:
        return await fn(client)


def exit_code_for(run: RunRecord) -> int:
    """The exit code of a command that drove ``run``: 0 succeeded, 3 waiting, else 1."""
    if run.status is RunStatus.SUCCEEDED:
        return EXIT_OK
    if run.status in (RunStatus.WAITING, RunStatus.PENDING, RunStatus.RUNNING):
        return EXIT_WAITING
    return EXIT_RUN_FAILED


_HINT_CHARS = 200


def needs_app(run: RunRecord) -> str:
    """One line: the workflow and version ``run`` needs, the flag that names its code, and a hint.

    The target recorded at start is stored data, so it is only shown (quoted, masked,
    clipped), never loaded.
    """
    text = (
        f"run {run.run_id} needs workflow {run.workflow!r} version {run.version!r}: "
        f"pass --app path/to/file.py:NAME, module:NAME or FILE.yaml (or set ${APP_ENV})"
    )
    recorded = run.options.get("target")
    if isinstance(recorded, str) and recorded:
        shown = recorded if len(recorded) <= _HINT_CHARS else recorded[: _HINT_CHARS - 1] + "…"
        text += f"; it was started with --app {redact(shown)!r}"
    return text


def load_for(run: RunRecord, apps: Sequence[str]) -> tuple[str, AnyWorkflow]:
    """The operator's target for an existing run, and its loaded workflow.

    Each of ``apps`` (``--app``, else ``$ORCHESTRATE_APP``) is loaded; the one whose
    workflow is the run's is used. The store never names the code to load.

    Raises:
        InvalidInputError: no ``apps`` (the message names what the run needs), one fails
            to load, or none is the run's workflow.
    """
    # Imported here: the YAML commands build on this module.
    from orchestrate.cli.yaml_commands import canonical, load_target

    if not apps:
        raise InvalidInputError(needs_app(run))
    loaded = [(canonical(app), load_target(app)) for app in apps]
    for target, wf in loaded:
        if wf.name == run.workflow:
            return target, wf
    if len(loaded) == 1:
        target, wf = loaded[0]
        raise InvalidInputError(
            f"target {target!r} is workflow {wf.name!r}, but run {run.run_id!r} belongs to {run.workflow!r}"
        )
    names = ", ".join(sorted({wf.name for _, wf in loaded}))
    raise InvalidInputError(f"no --app is workflow {run.workflow!r} of run {run.run_id!r} (they are: {names})")


def shown(value: T) -> T:
    """``value`` (records, lists of them, JSON-like data) as a command may print it: secrets masked."""
    masked: T = redact_data(value)
    return masked


def echo(text: str, *, err: bool = False) -> None:
    """Print one line on stdout (or stderr), secrets masked."""
    click.echo(printable(redact(text)), err=err)


def dump_json(value: Any) -> None:
    """Print ``value`` as indented JSON on stdout, secrets masked.

    Masked as data, string by string, so that the output stays valid JSON.
    """
    text = json.dumps(shown(value), indent=2, default=lambda obj: redact(str(obj)), ensure_ascii=False)
    click.echo(printable(text))  # a lone surrogate becomes its JSON escape: still valid JSON
