"""The store's "require the server" setting, and who the server authenticated.

When a store requires the server, review decisions (approve, reject, edit, decide and
``review:`` signals) are taken only from a principal that ``orchestrate serve``
authenticated with a token: the reviewer's name and role come from the token, never
from a ``--by`` or ``--role`` that anyone can type. A decision made through
:class:`~orchestrate.client.Client` or the CLI without one is refused with
:class:`~orchestrate.errors.ServerRequiredError`.

The setting lives in the store, so it holds for every process that opens it: the SQL
stores keep it in ``orchestrate_meta`` under the key ``require_server`` (a JSON object:
whether it is on, who set it and when; no new table, no migration), the memory store in
this process's memory beside it. It is read at every decision, so turning it on or off
takes effect at once everywhere.

The server marks the calls it makes for an authenticated principal with
:func:`acting_as`; :func:`check_server` is what the decision paths call.
"""

from __future__ import annotations

import contextlib
import json
import weakref
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from orchestrate.errors import ServerRequiredError
from orchestrate.store._access_sql import _dialect, _Sql, unwrap

SETTING_KEY = "require_server"
"""The key of the setting in ``orchestrate_meta``."""

_GET = "SELECT value FROM orchestrate_meta WHERE key = ?"
_PUT = "INSERT INTO orchestrate_meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value"

_principal: ContextVar[str | None] = ContextVar("orchestrate_server_principal", default=None)


@dataclass(frozen=True)
class ServerRequirement:
    """Whether the store requires the server for review decisions, and who said so when.

    Attributes:
        on: decisions without a server-authenticated principal are refused.
        by: who last set it (``None``: never set).
        at: when it was last set (``None``: never set).
    """

    on: bool = False
    by: str | None = None
    at: float | None = None


_MEMORY: weakref.WeakKeyDictionary[Any, ServerRequirement] = weakref.WeakKeyDictionary()


@contextlib.contextmanager
def acting_as(principal: str) -> Iterator[None]:
    """Mark the calls made inside as made by ``principal``, authenticated by the server."""
    token = _principal.set(principal)
    try:
        yield
    finally:
        _principal.reset(token)


def server_principal() -> str | None:
    """The principal the server authenticated for the current call, or ``None`` outside the server."""
    return _principal.get()


async def get_requirement(store: Any) -> ServerRequirement:
    """The setting as kept in ``store`` (off when it was never set)."""
    base = unwrap(store)
    dialect = _dialect(base)
    if dialect is None:
        return _MEMORY.get(base, ServerRequirement())
    rows = await _Sql(base, dialect).fetch(_GET, (SETTING_KEY,))
    if not rows:
        return ServerRequirement()
    value = json.loads(rows[0][0])
    at = value.get("at")
    return ServerRequirement(on=bool(value.get("on")), by=value.get("by"), at=None if at is None else float(at))


async def set_requirement(store: Any, *, on: bool, by: str, now: float) -> ServerRequirement:
    """Turn the setting on or off in ``store``, recording who did it and when; return it."""
    setting = ServerRequirement(on=on, by=by, at=now)
    base = unwrap(store)
    dialect = _dialect(base)
    if dialect is None:
        _MEMORY[base] = setting
        return setting
    value = json.dumps({"on": on, "by": by, "at": now})
    await _Sql(base, dialect).execute(_PUT, (SETTING_KEY, value))
    return setting


async def check_server(store: Any, what: str) -> None:
    """Refuse ``what`` (a decision) when ``store`` requires the server and no principal was authenticated.

    Raises:
        ServerRequiredError: the store requires the server and this call did not come through it.
    """
    if _principal.get() is not None:
        return
    if (await get_requirement(store)).on:
        raise ServerRequiredError(
            f"{what} refused: this store requires the server for review decisions, so the reviewer "
            "comes from a token; decide through orchestrate serve with a reviewer token "
            "(an admin can lift this with `orchestrate tokens require-server off`)"
        )
