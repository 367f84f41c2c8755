"""What every route shares: the server's state, who is asking, what they may do, the audit."""

from __future__ import annotations

import base64
import binascii
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Annotated, Any, TypeVar

from fastapi import Depends, Request

from orchestrate.client import Client
from orchestrate.errors import InvalidInputError, OrchestrateError
from orchestrate.server._auth import (
    CSRF_HEADER,
    LEVELS,
    LOCAL,
    SESSION_COOKIE,
    UNSAFE_METHODS,
    AuthError,
    Principal,
    Sessions,
    authenticate,
)
from orchestrate.server._changes import Changes
from orchestrate.server._http import status_of
from orchestrate.server.settings import ServerSettings
from orchestrate.store._access import AccessStore, AuditEntry, payload_hash
from orchestrate.store._access_policy import acting_as

T = TypeVar("T")


@dataclass
class ServerState:
    """The one object a server's routes share."""

    client: Client
    settings: ServerSettings
    access: AccessStore
    sessions: Sessions
    changes: Changes = field(default_factory=Changes)
    drive: Callable[[str], None] | None = None
    """Drive a run that became due in this process now (set when the app has a worker)."""

    def wake_run(self, run_id: str) -> None:
        """A run became due through this server: its streams read now, the embedded worker drives it now."""
        self.changes.notify()
        if self.drive is not None:
            self.drive(run_id)


def state_of(request: Request) -> ServerState:
    """The server's state."""
    found: ServerState = request.app.state.orchestrate
    return found


async def principal(request: Request) -> Principal:
    """Who the request acts as (401/403 when it cannot be told)."""
    state = state_of(request)
    if not state.settings.auth:
        return LOCAL
    await state.client.engine.open()  # the tokens are in the store (no-op once open)
    return await authenticate(
        state.access,
        state.sessions,
        method=request.method,
        authorization=request.headers.get("authorization"),
        cookie=request.cookies.get(SESSION_COOKIE),
        csrf=request.headers.get(CSRF_HEADER),
    )


def require(role: str) -> Callable[..., Awaitable[Principal]]:
    """A dependency: the principal, refused (403) unless it ranks at least as ``role``."""
    if role not in LEVELS:
        raise ValueError(role)

    async def check(request: Request, who: Annotated[Principal, Depends(principal)]) -> Principal:
        if not who.at_least(role):
            message = f"{who.name} ({', '.join(who.roles)}) may not do this: it needs the {role} role"
            if request.method in UNSAFE_METHODS:
                await record(state_of(request), who, f"refused {request.method} {request.url.path}", None, None, 403)
            raise AuthError(403, message)
        return who

    return check


async def record(state: ServerState, who: Principal, action: str, target: str | None, body: Any, outcome: int) -> None:
    """Append one entry to the audit trail."""
    await state.access.append_audit(
        AuditEntry(
            principal=who.name,
            at=time.time(),
            action=action,
            target=target,
            payload_hash=payload_hash(body),
            outcome=outcome,
        )
    )


async def audited(
    state: ServerState, who: Principal, action: str, target: str | None, body: Any, call: Callable[[], Awaitable[T]]
) -> T:
    """Run the mutation ``call`` and audit it, whatever its outcome.

    A principal authenticated by a token or a session is marked as such for the call (a
    store that requires the server takes review decisions only from one); ``local``, the
    principal of a server without auth, is not.
    """
    try:
        if who.via == "local":
            result = await call()
        else:
            with acting_as(who.name):
                result = await call()
    except OrchestrateError as exc:
        await record(state, who, action, target, body, status_of(exc))
        raise
    except AuthError as exc:
        await record(state, who, action, target, body, exc.status)
        raise
    state.changes.notify()
    await record(state, who, action, target, body, 200)
    return result


def encode_cursor(value: Any) -> str:
    """An opaque cursor for ``value`` (JSON)."""
    return base64.urlsafe_b64encode(json.dumps(value, separators=(",", ":")).encode()).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> Any:
    """The value of a cursor from :func:`encode_cursor` (``None`` for none).

    Raises:
        InvalidInputError: the cursor was not made by this server.
    """
    if not cursor:
        return None
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        return json.loads(base64.urlsafe_b64decode(padded.encode("ascii")))
    except (ValueError, binascii.Error, UnicodeError):
        raise InvalidInputError(f"invalid cursor {cursor[:40]!r}: pass next_cursor from the previous page") from None


def page_limit(state: ServerState, limit: int) -> int:
    """``limit`` if the server allows it.

    Raises:
        InvalidInputError: below 1 or above the server's ``page_limit``.
    """
    if limit < 1 or limit > state.settings.page_limit:
        raise InvalidInputError(f"limit must be between 1 and {state.settings.page_limit}, got {limit}")
    return limit
