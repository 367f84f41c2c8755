"""Who is asking: tokens, dashboard sessions, CSRF, roles.

A request is authenticated by ``Authorization: Bearer <token>`` or by the dashboard's
session cookie. A cookie is sent by the browser on its own, so every unsafe method made
with it must also carry the session's CSRF token in ``X-CSRF-Token`` (a page on another
origin cannot read it). The cookie is ``HttpOnly`` and ``SameSite=Strict`` besides.

Roles: ``viewer`` < ``operator`` < ``admin``; any other role is a reviewer role, named
like a gate's roles, and reads like a viewer. A reviewer's identity and role come from
its token, never from a request's body.
"""

from __future__ import annotations

import secrets
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from orchestrate.store._access import (
    AccessStore,
    SessionRecord,
    TokenRecord,
    check_roles,
    new_token,
    same_hash,
    token_hash,
)

VIEWER = "viewer"
OPERATOR = "operator"
ADMIN = "admin"
LEVELS: dict[str, int] = {VIEWER: 1, OPERATOR: 2, ADMIN: 3}
"""The ranked roles; a role not here is a reviewer role (read access, plus its gates)."""

SESSION_COOKIE = "orchestrate_session"
CSRF_HEADER = "x-csrf-token"
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


class AuthError(Exception):
    """The request is not authenticated (401) or not allowed (403); the message says why."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Principal:
    """Who a request acts as.

    Attributes:
        name: the token's principal name.
        roles: its roles.
        via: ``token`` (bearer), ``session`` (dashboard cookie) or ``local`` (auth off).
        csrf: the session's CSRF token (sessions only).
    """

    name: str
    roles: tuple[str, ...]
    via: Literal["token", "session", "local"] = "token"
    csrf: str | None = None

    @property
    def level(self) -> int:
        """The highest rank among the roles (a reviewer role ranks as a viewer)."""
        return max((LEVELS.get(role, 1) for role in self.roles), default=0)

    def at_least(self, role: str) -> bool:
        """Whether the principal ranks at least as ``role`` (``viewer``, ``operator``, ``admin``)."""
        return self.level >= LEVELS[role]

    @property
    def reviewer_roles(self) -> tuple[str, ...]:
        """The roles that are no rank: the gate roles this principal decides in."""
        return tuple(role for role in self.roles if role not in LEVELS)

    @property
    def every_role(self) -> bool:
        """The local principal of a server without auth: it decides in any role."""
        return self.via == "local"


LOCAL = Principal("local", (ADMIN,), "local")
"""Every request of a server without auth acts as this principal."""


@dataclass
class Sessions:
    """Dashboard sessions, kept in the store (see :class:`~orchestrate.store._access.SessionRecord`).

    A session is kept under the SHA-256 of its cookie value, so a restart signs nobody
    out and several server processes serve one dashboard; it refers to the token it was
    opened with: revoking the token ends the session at its next request.
    """

    access: AccessStore
    seconds: float

    async def open(self, record: TokenRecord, hashed_token: str, *, now: float) -> tuple[str, str]:
        """A new session for the token: ``(cookie value, csrf token)``."""
        await self.access.delete_expired_sessions(now)
        cookie = secrets.token_urlsafe(32)
        csrf = secrets.token_urlsafe(32)
        expires = now + self.seconds
        if record.expires_at is not None:
            expires = min(expires, record.expires_at)
        await self.access.add_session(
            SessionRecord(token_hash(cookie), hashed_token, record.name, list(record.roles), csrf, now, expires)
        )
        return cookie, csrf

    async def find(self, cookie: str, *, now: float) -> SessionRecord | None:
        """The live session of ``cookie``, or ``None``."""
        found = await self.access.session_by_hash(token_hash(cookie))
        if found is None or found.expires_at <= now:
            return None
        return found

    async def close(self, cookie: str) -> None:
        """End the session of ``cookie``."""
        await self.access.delete_session(token_hash(cookie))


async def from_token(access: AccessStore, token: str, *, now: float) -> TokenRecord:
    """The usable token record of ``token``.

    Raises:
        AuthError: 401 naming why: unknown, revoked or expired.
    """
    record = await access.token_by_hash(token_hash(token))
    if record is None:
        raise AuthError(401, "the API token is not valid; create one with `orchestrate tokens create`")
    if record.revoked_at is not None:
        raise AuthError(401, f"the API token {record.token_id} was revoked; ask an admin for a new one")
    if record.expires_at is not None and now >= record.expires_at:
        raise AuthError(401, f"the API token {record.token_id} expired; ask an admin for a new one")
    return record


async def authenticate(
    access: AccessStore,
    sessions: Sessions,
    *,
    method: str,
    authorization: str | None,
    cookie: str | None,
    csrf: str | None,
    now: float | None = None,
) -> Principal:
    """The principal of a request.

    Raises:
        AuthError: 401 without valid credentials, 403 for a session's unsafe request
            without its CSRF token.
    """
    now = time.time() if now is None else now
    if authorization:
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise AuthError(401, "send the API token in an Authorization header with the Bearer scheme")
        record = await from_token(access, token.strip(), now=now)
        return Principal(record.name, tuple(record.roles), "token")
    if cookie:
        session = await sessions.find(cookie, now=now)
        if session is None:
            raise AuthError(401, "the session ended; sign in again")
        held = await access.token_by_hash(session.token_hash)
        if held is None or not held.usable(now):
            await sessions.close(cookie)
            raise AuthError(401, "the session's token was revoked or expired; sign in again")
        if method.upper() in UNSAFE_METHODS and not (csrf and same_hash(csrf, session.csrf)):
            raise AuthError(403, "missing or wrong CSRF token: send the session's token in the X-CSRF-Token header")
        return Principal(session.name, tuple(session.roles), "session", session.csrf)
    raise AuthError(401, "authentication required: send an API token (Authorization header, Bearer scheme) or sign in")


async def create_token(
    access: AccessStore,
    *,
    name: str,
    roles: Sequence[str],
    expires_in: float | None = None,
    now: float | None = None,
) -> tuple[str, TokenRecord]:
    """Create a token for ``name`` with ``roles``; return ``(token, record)``.

    The token is returned once and stored only hashed.

    Raises:
        InvalidInputError: no name, no role or a bad role name, a non-positive expiry.
    """
    from orchestrate.errors import InvalidInputError

    if not isinstance(name, str) or not name.strip() or len(name) > 200:
        raise InvalidInputError("a token needs the name of who uses it (1 to 200 characters)")
    clean = check_roles(roles)
    if expires_in is not None and not expires_in > 0:
        raise InvalidInputError(f"a token's expiry must be a positive duration, got {expires_in!r}")
    now = time.time() if now is None else now
    token = new_token()
    record = TokenRecord(
        token_id=uuid.uuid4().hex[:12],
        name=name.strip(),
        roles=clean,
        token_hash=token_hash(token),
        created_at=now,
        expires_at=None if expires_in is None else now + expires_in,
    )
    await access.add_token(record)
    return token, record
