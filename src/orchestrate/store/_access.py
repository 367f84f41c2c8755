"""API tokens, dashboard sessions and the audit trail of the HTTP server, kept in the store.

Tokens are stored hashed (SHA-256 of a 256-bit random token: the token itself is never
written anywhere; it is printed once, when created). Sessions are kept under the SHA-256
of their cookie, so a restart signs nobody out and several server processes serve one
dashboard. The audit trail is append-only: nothing here updates or deletes an entry,
and in the SQL stores triggers refuse it.

:func:`orchestrate.store._access_sql.access_for` gives the :class:`AccessStore` of a
store: the memory store keeps them in this process's memory beside it (a ``memory://``
server's tokens and sessions end with the process); the SQL stores keep them in
``orchestrate_tokens``, ``orchestrate_sessions`` and ``orchestrate_audit`` (schemas 6, 7).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from orchestrate.errors import InvalidInputError

TOKEN_PREFIX = "orc_"
"""Every API token starts with this, so that scanners and people can tell one."""


def new_token() -> str:
    """A fresh API token: the prefix and 256 random bits."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def token_hash(token: str) -> str:
    """What the store keeps of ``token``: its SHA-256, hex."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def same_hash(a: str, b: str) -> bool:
    """Constant-time comparison of two hashes."""
    return hmac.compare_digest(a.encode(), b.encode())


def payload_hash(payload: Any) -> str | None:
    """SHA-256 of ``payload``'s canonical JSON (``None`` for no payload): what the audit keeps of a body."""
    if payload is None:
        return None
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


@dataclass
class TokenRecord:
    """An API token as stored (never the token itself).

    Attributes:
        token_id: a short public id, to list and revoke it by.
        name: the principal the token acts as (a person or a service).
        roles: its roles: ``viewer``, ``operator``, ``admin`` and reviewer roles.
        token_hash: SHA-256 of the token.
        created_at: when it was created.
        expires_at: when it stops working (``None``: never).
        revoked_at: when it was revoked (``None``: it was not).
    """

    token_id: str
    name: str
    roles: list[str]
    token_hash: str
    created_at: float
    expires_at: float | None = None
    revoked_at: float | None = None

    def usable(self, now: float) -> bool:
        """Whether the token works at ``now``: not revoked, not expired."""
        return self.revoked_at is None and (self.expires_at is None or now < self.expires_at)


@dataclass
class AuditEntry:
    """One mutation made through the server: who, when, what, on what, with which body.

    Attributes:
        principal: who (the token's name).
        at: when.
        action: what (``run.cancel``, ``review.approve``, ``token.revoke``...).
        target: on what (a run id, a review id...).
        payload_hash: SHA-256 of the request's JSON body (the body itself is not kept).
        outcome: the response's HTTP status.
        id: its place in the trail (assigned by the store).
    """

    principal: str
    at: float
    action: str
    target: str | None = None
    payload_hash: str | None = None
    outcome: int = 200
    id: int = 0


@dataclass
class SessionRecord:
    """A dashboard session as stored (never its cookie).

    Attributes:
        session_hash: SHA-256 of the session cookie's value.
        token_hash: the hash of the token it was opened with (revoking that ends it).
        name: the principal.
        roles: its roles when the session was opened.
        csrf: the token unsafe requests of this session must carry in ``X-CSRF-Token``.
        created_at: when it was opened.
        expires_at: when it ends.
    """

    session_hash: str
    token_hash: str
    name: str
    roles: list[str]
    csrf: str
    created_at: float
    expires_at: float


class AccessStore(Protocol):
    """Tokens, dashboard sessions and the audit trail."""

    async def add_token(self, record: TokenRecord) -> None:
        """Insert a new token (its id and hash are new)."""

    async def token_by_hash(self, hashed: str) -> TokenRecord | None:
        """The token whose hash is ``hashed``, or ``None``."""

    async def list_tokens(self) -> list[TokenRecord]:
        """Every token, oldest first."""

    async def revoke_token(self, token_id: str, *, now: float) -> TokenRecord | None:
        """Revoke the token (it stops working at once); ``None`` when no token has that id."""

    async def add_session(self, record: SessionRecord) -> None:
        """Store a new session."""

    async def session_by_hash(self, hashed: str) -> SessionRecord | None:
        """The session whose cookie hashes to ``hashed``, or ``None``."""

    async def delete_session(self, hashed: str) -> None:
        """End the session (no error when there is none)."""

    async def delete_expired_sessions(self, now: float) -> int:
        """End the sessions expired at ``now``; how many."""

    async def append_audit(self, entry: AuditEntry) -> None:
        """Append to the audit trail."""

    async def list_audit(self, *, after: int = 0, limit: int = 100) -> list[AuditEntry]:
        """Entries after id ``after``, oldest first."""


def check_roles(roles: Sequence[str]) -> list[str]:
    """``roles`` as stored: non-empty names without ``|`` or spaces, each once."""
    if isinstance(roles, str) or not roles:
        raise InvalidInputError("a token needs at least one role (viewer, operator, admin or a reviewer role)")
    clean: list[str] = []
    for role in roles:
        if not isinstance(role, str) or not role or "|" in role or role != role.strip() or " " in role:
            raise InvalidInputError(f"invalid role {role!r}: use a name without spaces or '|'")
        if role not in clean:
            clean.append(role)
    return clean


class MemoryAccessStore:
    """Tokens and audit entries in this process's memory (for ``memory://`` stores and tests)."""

    def __init__(self) -> None:
        self._tokens: dict[str, TokenRecord] = {}
        self._sessions: dict[str, SessionRecord] = {}
        self._audit: list[AuditEntry] = []

    async def add_token(self, record: TokenRecord) -> None:
        """Insert a new token."""
        if record.token_id in self._tokens:
            raise InvalidInputError(f"token {record.token_id!r} exists")
        self._tokens[record.token_id] = _copy_token(record)

    async def token_by_hash(self, hashed: str) -> TokenRecord | None:
        """The token whose hash is ``hashed``."""
        for record in self._tokens.values():
            if same_hash(record.token_hash, hashed):
                return _copy_token(record)
        return None

    async def list_tokens(self) -> list[TokenRecord]:
        """Every token, oldest first."""
        return [_copy_token(r) for r in sorted(self._tokens.values(), key=lambda r: (r.created_at, r.token_id))]

    async def revoke_token(self, token_id: str, *, now: float) -> TokenRecord | None:
        """Revoke the token."""
        record = self._tokens.get(token_id)
        if record is None:
            return None
        if record.revoked_at is None:
            record.revoked_at = now
        return _copy_token(record)

    async def add_session(self, record: SessionRecord) -> None:
        """Store a new session."""
        self._sessions[record.session_hash] = _copy_session(record)

    async def session_by_hash(self, hashed: str) -> SessionRecord | None:
        """The session whose cookie hashes to ``hashed``."""
        found = self._sessions.get(hashed)
        return _copy_session(found) if found is not None else None

    async def delete_session(self, hashed: str) -> None:
        """End the session."""
        self._sessions.pop(hashed, None)

    async def delete_expired_sessions(self, now: float) -> int:
        """End the sessions expired at ``now``."""
        gone = [k for k, s in self._sessions.items() if s.expires_at <= now]
        for key in gone:
            del self._sessions[key]
        return len(gone)

    async def append_audit(self, entry: AuditEntry) -> None:
        """Append to the audit trail."""
        stored = AuditEntry(**entry.__dict__)
        stored.id = len(self._audit) + 1
        self._audit.append(stored)

    async def list_audit(self, *, after: int = 0, limit: int = 100) -> list[AuditEntry]:
        """Entries after id ``after``, oldest first."""
        return [AuditEntry(**e.__dict__) for e in self._audit[after : after + limit]]


def _copy_token(record: TokenRecord) -> TokenRecord:
    return TokenRecord(**{**record.__dict__, "roles": list(record.roles)})


def _copy_session(record: SessionRecord) -> SessionRecord:
    return SessionRecord(**{**record.__dict__, "roles": list(record.roles)})
