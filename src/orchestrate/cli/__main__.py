"""``python -m orchestrate.cli``: the same as the ``orchestrate`` command."""

from __future__ import annotations

from orchestrate.cli.main import main

main()
