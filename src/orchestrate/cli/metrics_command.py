"""Prometheus metrics from the CLI: ``worker --metrics-port N`` and ``orchestrate metrics``.

Both need the ``metrics`` extra (prometheus-client). With ``PROMETHEUS_MULTIPROC_DIR``
set (to a directory shared by the workers of a host, emptied when the deployment
restarts), every endpoint serves the sum over all the host's workers, and
``orchestrate metrics`` serves it without driving runs.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable
from typing import Any, TypeVar

import click

from orchestrate.cli._common import EXIT_OK

F = TypeVar("F", bound=Callable[..., Any])

_PORT = click.IntRange(min=0, max=65535)


def metrics_port_option(fn: F) -> F:
    """``--metrics-port``: serve Prometheus metrics of this process's runs on that port."""
    return click.option(
        "--metrics-port",
        type=_PORT,
        default=None,
        envvar="ORCHESTRATE_METRICS_PORT",
        metavar="PORT",
        help="Serve Prometheus metrics on this port at /metrics (extra 'metrics'; env ORCHESTRATE_METRICS_PORT).",
    )(fn)


def _prometheus() -> Any:
    try:
        from orchestrate.observe import prometheus
    except ImportError as exc:
        raise click.UsageError(f"{exc} (or drop --metrics-port)") from None
    return prometheus


def start_metrics(port: int | None, *, addr: str = "0.0.0.0") -> None:
    """Serve ``/metrics`` on ``port`` and count this process's runs into it (nothing if ``None``).

    Raises:
        click.UsageError: prometheus-client is not installed.
        click.ClickException: the port cannot be bound.
    """
    if port is None:
        return
    prometheus = _prometheus()
    try:
        prometheus.serve_metrics(port, addr=addr)
    except OSError as exc:
        raise click.ClickException(f"cannot serve metrics on {addr}:{port}: {exc.strerror or exc}") from None
    mode = f", summed over {os.environ[prometheus.MULTIPROC_ENV]}" if os.environ.get(prometheus.MULTIPROC_ENV) else ""
    click.echo(f"metrics on http://{addr}:{port}/metrics{mode}", err=True)


@click.command("metrics", short_help="Serve the Prometheus metrics of this host's workers.")
@click.option("--port", type=_PORT, default=9100, show_default=True, help="The port to serve /metrics on.")
@click.option("--addr", default="0.0.0.0", show_default=True, help="The address to bind.")
def metrics(port: int, addr: str) -> int:
    """Serve, until interrupted, the metrics the workers of this host write to
    PROMETHEUS_MULTIPROC_DIR (prometheus-client's multiprocess mode): one scrape target
    for many workers.
    """
    prometheus = _prometheus()
    if not os.environ.get(prometheus.MULTIPROC_ENV):
        raise click.UsageError(
            f"set {prometheus.MULTIPROC_ENV} to the directory the workers share "
            "(a worker alone serves its own metrics with --metrics-port)"
        )
    try:
        prometheus.serve_metrics(port, addr=addr, observe=False)
    except OSError as exc:
        raise click.ClickException(f"cannot serve metrics on {addr}:{port}: {exc.strerror or exc}") from None
    click.echo(f"metrics of {os.environ[prometheus.MULTIPROC_ENV]} on http://{addr}:{port}/metrics", err=True)
    stopped = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stopped.set())
    stopped.wait()
    return EXIT_OK
