"""The ``orchestrate`` command line: a thin layer over :class:`orchestrate.Client`.

``main`` is the console entry point; ``cli`` is the click group (for ``CliRunner``
and for packages adding commands); :func:`~orchestrate.cli.timeline.render_timeline`
prints a run's timeline with rich.
"""

from __future__ import annotations

from orchestrate.cli.main import cli, main
from orchestrate.cli.timeline import render_timeline

__all__ = ["cli", "main", "render_timeline"]
