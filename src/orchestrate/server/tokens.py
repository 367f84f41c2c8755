"""API tokens of a store: create (the token is shown once), list, revoke.

What ``orchestrate tokens`` does, for Python: the server checks every request's token
against the same store.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from orchestrate.errors import InvalidInputError
from orchestrate.server._auth import create_token as _create
from orchestrate.store._access import AuditEntry, TokenRecord
from orchestrate.store._access_policy import ServerRequirement, get_requirement, set_requirement
from orchestrate.store._access_sql import access_for

__all__ = [
    "ServerRequirement",
    "TokenRecord",
    "create_token",
    "list_tokens",
    "require_server",
    "revoke_token",
    "server_requirement",
]


async def create_token(
    store: Any, *, name: str, roles: Sequence[str], expires_in: float | None = None
) -> tuple[str, TokenRecord]:
    """Create a token acting as ``name`` with ``roles`` in ``store`` (an opened store).

    Args:
        store: the store the server uses.
        name: who uses it (the principal recorded in the audit and on decisions).
        roles: ``viewer``, ``operator``, ``admin`` and reviewer roles named like gates' roles.
        expires_in: seconds until it stops working (``None``: never).

    Returns:
        ``(token, record)``: the token, to hand over once (only its hash is stored), and
        its record.

    Raises:
        InvalidInputError: no name, no role, a bad role name, a non-positive expiry.
    """
    return await _create(access_for(store), name=name, roles=roles, expires_in=expires_in)


async def list_tokens(store: Any) -> list[TokenRecord]:
    """Every token of ``store``, oldest first (hashes only)."""
    return await access_for(store).list_tokens()


async def revoke_token(store: Any, token_id: str) -> TokenRecord:
    """Revoke the token ``token_id``: it, and the sessions opened with it, stop working at once.

    Raises:
        InvalidInputError: no token has that id.
    """
    found = await access_for(store).revoke_token(token_id, now=time.time())
    if found is None:
        raise InvalidInputError(f"no token {token_id!r}; see `orchestrate tokens list`")
    return found


async def server_requirement(store: Any) -> ServerRequirement:
    """Whether ``store`` requires the server for review decisions (and who set it, when)."""
    return await get_requirement(store)


async def require_server(store: Any, on: bool, *, by: str) -> ServerRequirement:
    """Make ``store`` take review decisions only through the server (``on``), or from anyone again.

    While it is on, approve, reject, edit, decide and ``review:`` signals made through
    :class:`~orchestrate.client.Client` or the CLI are refused with
    :class:`~orchestrate.errors.ServerRequiredError`; ``orchestrate serve`` decides for the
    principal of the request's token. The change is written to the audit trail as
    ``settings.require_server`` by ``by``.

    Args:
        store: an opened store.
        on: require the server (``True``) or not.
        by: who changes it (recorded in the audit and the setting).

    Raises:
        InvalidInputError: ``by`` is empty.
    """
    if not isinstance(by, str) or not by.strip():
        raise InvalidInputError("say who changes the setting (by=...)")
    now = time.time()
    setting = await set_requirement(store, on=bool(on), by=by, now=now)
    await access_for(store).append_audit(
        AuditEntry(principal=by, at=now, action="settings.require_server", target="on" if on else "off")
    )
    return setting
