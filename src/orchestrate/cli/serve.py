"""``orchestrate serve``: the HTTP API, live events and the dashboard, on uvicorn.

Secure by default: every route but the health checks needs a token (``orchestrate tokens
create``); ``--no-auth`` is for the loopback address only, and a server on another
address must name the host names its clients use (``--allowed-host``), so that a page
served elsewhere cannot reach it through DNS rebinding.
"""

from __future__ import annotations

from typing import Any

import click

from orchestrate.cli._common import APP_ENV, EXIT_OK, echo, log_level_option, run_async, setup_logging, store_option
from orchestrate.cli.yaml_commands import load_target
from orchestrate.store import open_store
from orchestrate.triggers import WebhookTrigger


@click.command("serve", short_help="Serve the HTTP API, live events and the dashboard.")
@click.argument("targets", nargs=-1, metavar="[TARGET]...")
@store_option
@click.option(
    "--app",
    "apps",
    multiple=True,
    envvar=APP_ENV,
    metavar="TARGET",
    help=f"A workflow runs may be started of, like TARGET (repeat for several; env {APP_ENV}).",
)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True, help="Port to listen on.")
@click.option(
    "--allowed-host",
    "allowed_hosts",
    multiple=True,
    metavar="NAME",
    help="A Host header the server answers to (repeat for several). Default: the loopback names.",
)
@click.option("--no-auth", is_flag=True, help="No tokens: every request acts as the local admin. Loopback only.")
@click.option(
    "--worker/--no-worker",
    default=None,
    help="Also drive due runs of the served workflows in this process. Default: on when workflows are given.",
)
@click.option(
    "--max-body",
    "max_body",
    type=click.IntRange(min=1024),
    default=1_048_576,
    show_default=True,
    help="Largest request body accepted, in bytes.",
)
@click.option("--secure-cookies", is_flag=True, help="Send the session cookie over HTTPS only (behind TLS).")
@click.option(
    "--triggers",
    "trigger_targets",
    multiple=True,
    metavar="TARGET",
    help="Mount the webhook triggers of TARGET (path/to/file.py:NAME or module:NAME naming a trigger or a list; "
    "repeat for several). Their workflows are served too. Other triggers are served by `orchestrate worker`.",
)
@log_level_option("info")
def serve_command(
    targets: tuple[str, ...],
    store: str,
    apps: tuple[str, ...],
    host: str,
    port: int,
    allowed_hosts: tuple[str, ...],
    no_auth: bool,
    worker: bool | None,
    max_body: int,
    secure_cookies: bool,
    trigger_targets: tuple[str, ...],
    log_level: str,
) -> int:
    """Serve the JSON API (/api/v1, /openapi.json), live events and the dashboard.

    TARGETs (FILE.yaml, path/to/file.py:NAME, module:NAME) are the workflows runs may be
    started of. Create a token first: `orchestrate tokens create --name you --role admin`.
    """
    import uvicorn

    from orchestrate.client import Client
    from orchestrate.server import ServerSettings, create_app
    from orchestrate.server.settings import LOOPBACK_HOSTS, is_loopback
    from orchestrate.server.tokens import list_tokens

    local = is_loopback(host)
    if no_auth and not local:
        raise click.UsageError(
            f"--no-auth serves anyone who can reach {host}: use it with --host 127.0.0.1 only, "
            "or create tokens with `orchestrate tokens create`"
        )
    if not local and not allowed_hosts:
        raise click.UsageError(
            f"listening on {host}: name the host names clients use with --allowed-host "
            "(e.g. --allowed-host orchestrate.example.com)"
        )
    setup_logging(log_level)
    workflows = [load_target(t) for t in (*targets, *apps)]
    hooks, others = _webhooks(trigger_targets)
    for hook in hooks:
        if not isinstance(hook.workflow, str) and all(hook.workflow is not wf for wf in workflows):
            workflows.append(hook.workflow)
    settings = ServerSettings(
        auth=not no_auth,
        allowed_hosts=(*LOOPBACK_HOSTS, *allowed_hosts) if local else allowed_hosts,
        max_body_bytes=max_body,
        secure_cookies=secure_cookies,
    )
    backend = open_store(store, create=True)
    client = Client(backend, workflows=workflows)

    async def check() -> int:
        async with Client(open_store(store, create=True)) as probe:
            return len(await list_tokens(probe.store))

    if not no_auth and not store.startswith("memory:") and run_async(check()) == 0:
        echo(
            "no API token exists yet: create one with "
            f"`orchestrate tokens create --name you --role admin --store {store}`",
            err=True,
        )
    from orchestrate.triggers.webhook import webhook_routes

    app = create_app(
        client,
        settings=settings,
        extra_routes=webhook_routes(client, hooks),
        worker=bool(workflows) if worker is None else worker,
    )
    names = ", ".join(f"{wf.name} ({wf.version})" for wf in workflows) or "no workflows"
    echo(f"serving {names} from {store} on http://{host}:{port} (auth {'off' if no_auth else 'on'})", err=True)
    for hook in hooks:
        echo(f"webhook {hook.name}: POST {hook.path}", err=True)
    if others:
        echo(
            f"not served here: {', '.join(t.name for t in others)}; run `orchestrate worker --triggers` for them",
            err=True,
        )
    config: Any = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=log_level.lower(),
        server_header=False,
        proxy_headers=False,
        access_log=log_level.lower() == "debug",
    )
    uvicorn.Server(config).run()
    return EXIT_OK


def _webhooks(targets: tuple[str, ...]) -> tuple[list[WebhookTrigger], list[Any]]:
    """The webhook triggers of ``targets``, and their other triggers (left to the worker)."""
    from orchestrate.cli.schedules import load_all

    found = load_all(targets)
    return [t for t in found if isinstance(t, WebhookTrigger)], [t for t in found if not isinstance(t, WebhookTrigger)]
