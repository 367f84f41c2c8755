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
from orchestrate.store._access import TokenRecord
from orchestrate.store._access_sql import access_for

__all__ = ["TokenRecord", "create_token", "list_tokens", "revoke_token"]


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
