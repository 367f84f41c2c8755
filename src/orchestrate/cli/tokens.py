"""``orchestrate tokens …``: API tokens for ``orchestrate serve``: create, list, revoke,
and whether the store takes review decisions only through the server.

A token is printed once, when created; the store keeps only its SHA-256.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

import click
from rich import box
from rich.table import Table

from orchestrate.cli._common import EXIT_OK, console, dump_json, echo, json_option, run_async, store_option, with_client
from orchestrate.cli.reviews import _default_user
from orchestrate.client import Client
from orchestrate.errors import OrchestrateError
from orchestrate.policies import parse_duration
from orchestrate.store._access import TokenRecord
from orchestrate.store._access_policy import ServerRequirement


@click.group("tokens", invoke_without_command=True)
@click.pass_context
def tokens(ctx: click.Context) -> None:
    """API tokens of the HTTP server: who may read, operate, review or administer."""
    if ctx.invoked_subcommand is None:
        click.echo(ctx.get_help())


def _when(at: float | None) -> str:
    return "-" if at is None else datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def _state(record: TokenRecord, now: float) -> str:
    if record.revoked_at is not None:
        return "revoked"
    if record.expires_at is not None and record.expires_at <= now:
        return "expired"
    return "active"


@tokens.command("create", short_help="Create a token and print it once.")
@click.option("--name", required=True, metavar="WHO", help="Who uses it: recorded on every decision and in the audit.")
@click.option(
    "--role",
    "roles",
    multiple=True,
    required=True,
    metavar="ROLE",
    help="viewer, operator, admin, or a reviewer role named like a gate's roles (repeat for several).",
)
@click.option("--expires", metavar="DURATION", default=None, help="Lifetime, e.g. 30d or 12h. Default: no expiry.")
@store_option
def create_command(name: str, roles: tuple[str, ...], expires: str | None, store: str) -> int:
    """Create a token for WHO with the given roles; it is printed once, on stdout.

    Roles: viewer reads; operator also starts, cancels, retries and replays runs;
    admin also manages; a reviewer role (e.g. medical_reviewer) decides the review
    items of gates that name it.
    """
    seconds = None
    if expires is not None:
        try:
            seconds = parse_duration(expires, what="--expires")
        except OrchestrateError as exc:
            raise click.BadParameter(str(exc)) from None
        if seconds <= 0:
            raise click.BadParameter(f"--expires must be longer than 0, got {expires!r}")

    from orchestrate.server.tokens import create_token  # the server extra, imported when used

    async def go(client: Client) -> tuple[str, TokenRecord]:
        return await create_token(client.store, name=name, roles=list(roles), expires_in=seconds)

    token, record = run_async(with_client(store, go, create=True))
    click.echo(token)  # the token itself: printed once, never masked, never stored
    until = f", expires {_when(record.expires_at)}" if record.expires_at is not None else ""
    click.echo(
        f"token {record.token_id} for {record.name} ({', '.join(record.roles)}){until}: "
        "keep it secret; it is not shown again",
        err=True,
    )
    return EXIT_OK


@tokens.command("list", short_help="List tokens (never the tokens themselves).")
@store_option
@json_option
def list_command(store: str, as_json: bool) -> int:
    """List the tokens: id, name, roles, created, expiry, state."""

    from orchestrate.server.tokens import list_tokens

    async def go(client: Client) -> list[TokenRecord]:
        return await list_tokens(client.store)

    found = run_async(with_client(store, go))
    now = time.time()
    if as_json:
        dump_json(
            [
                {
                    "token_id": r.token_id,
                    "name": r.name,
                    "roles": r.roles,
                    "created_at": r.created_at,
                    "expires_at": r.expires_at,
                    "revoked_at": r.revoked_at,
                    "state": _state(r, now),
                }
                for r in found
            ]
        )
        return EXIT_OK
    if not found:
        echo("no tokens; create one with `orchestrate tokens create --name NAME --role admin`")
        return EXIT_OK
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    for column in ("id", "name", "roles", "created", "expires", "state"):
        table.add_column(column)
    for r in found:
        table.add_row(r.token_id, r.name, ", ".join(r.roles), _when(r.created_at), _when(r.expires_at), _state(r, now))
    console().print(table)
    return EXIT_OK


@tokens.command("revoke", short_help="Revoke a token at once.")
@click.argument("token_id")
@store_option
def revoke_command(token_id: str, store: str) -> int:
    """Revoke token TOKEN_ID (from `orchestrate tokens list`): it and its sessions stop working at once."""

    from orchestrate.server.tokens import revoke_token

    async def go(client: Client) -> TokenRecord:
        return await revoke_token(client.store, token_id)

    record = run_async(with_client(store, go))
    echo(f"token {record.token_id} of {record.name} revoked")
    return EXIT_OK


def _local_user() -> str:
    return "local:" + _default_user()


@tokens.command("require-server", short_help="Take review decisions only through the server (on|off).")
@click.argument("state", required=False, type=click.Choice(["on", "off"]))
@click.option(
    "--by",
    default=None,
    metavar="WHO",
    help="Who changes it, for the audit.",
    show_default="local:$ORCHESTRATE_USER or local:<login>",
)
@store_option
@json_option
def require_server_command(state: str | None, by: str | None, store: str, as_json: bool) -> int:
    """Show, or turn on or off, whether the store requires the server for review decisions.

    When on, approve, reject, edit, decide and review: signals made with the CLI or the
    Python client are refused: decide through `orchestrate serve`, where the reviewer and
    role come from the token. The change is recorded in the audit trail.
    """
    from orchestrate.server.tokens import require_server, server_requirement

    async def go(client: Client) -> ServerRequirement:
        if state is None:
            return await server_requirement(client.store)
        return await require_server(client.store, state == "on", by=by or _local_user())

    setting = run_async(with_client(store, go, read_only=state is None))
    if as_json:
        dump_json({"require_server": setting.on, "by": setting.by, "at": setting.at})
        return EXIT_OK
    since = f" (set by {setting.by}, {_when(setting.at)})" if setting.by is not None else ""
    if setting.on:
        echo(f"require-server: on{since}: review decisions are taken only through orchestrate serve")
    else:
        echo(f"require-server: off{since}: review decisions are taken from the CLI and the Python client too")
    return EXIT_OK
