"""The process's default engines: what ``Workflow.run()`` and the decorators run on.

One engine per store (a URL, with the shorthands ``sqlite``, ``memory`` and
``postgresql``, or a ``Store`` object), made on first use and kept for the life of the
process. Importing this module installs :func:`default_engine` in the definitions' seam
(:mod:`orchestrate._definitions.seam`), so that ``Workflow.run`` reaches an engine
without the definitions importing one.
"""

from __future__ import annotations

import os
from typing import Any

from orchestrate._definitions import seam
from orchestrate._engine.runner import Engine
from orchestrate.store import open_store

_DEFAULT_ENGINES: dict[str, Engine] = {}

_SHORTHANDS = {
    "sqlite": "sqlite:///.orchestrate/orchestrate.db",
    "memory": "memory://",
    "postgresql": "postgresql:///orchestrate",
    "postgres": "postgresql:///orchestrate",
}


async def default_engine(state_store: Any = None) -> Engine:
    """The process-wide engine for a store URL (shorthands ``sqlite``, ``memory``, ``postgresql``).

    ``ORCHESTRATE_STORE`` overrides the default URL.
    """
    if state_store is not None and not isinstance(state_store, str):
        key = f"object:{id(state_store)}"
        engine = _DEFAULT_ENGINES.get(key)
        if engine is None:
            engine = _DEFAULT_ENGINES[key] = Engine(state_store)
        return await engine.open()
    url = state_store or os.environ.get("ORCHESTRATE_STORE") or "sqlite"
    url = _SHORTHANDS.get(url, url)
    engine = _DEFAULT_ENGINES.get(url)
    if engine is None:
        engine = _DEFAULT_ENGINES[url] = Engine(open_store(url))
    return await engine.open()


seam.install(default_engine)
