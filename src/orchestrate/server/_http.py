"""HTTP plumbing: problem+json errors, redacted JSON, security headers, Host and size checks."""

from __future__ import annotations

import json
import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from orchestrate._redact import redact, redact_data
from orchestrate.errors import (
    ConflictError,
    InvalidInputError,
    OrchestrateError,
    PayloadTooLargeError,
    ReviewNotFoundError,
    ReviewPermissionError,
    RunNotFoundError,
    RunStateError,
    SerializationError,
    StoreError,
    WorkflowNotFoundError,
)
from orchestrate.server._auth import AuthError
from orchestrate.server.settings import ServerSettings

log = logging.getLogger("orchestrate.server")

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
"""The Content-Security-Policy of every response: nothing inline, nothing from elsewhere."""

SECURITY_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"cross-origin-resource-policy", b"same-origin"),
    (b"permissions-policy", b"camera=(), microphone=(), geolocation=()"),
)

PROBLEM = "application/problem+json"

_STATUS: tuple[tuple[type[OrchestrateError], int], ...] = (
    (RunNotFoundError, 404),
    (ReviewNotFoundError, 404),
    (WorkflowNotFoundError, 404),
    (ReviewPermissionError, 403),
    (ConflictError, 409),
    (RunStateError, 409),
    (PayloadTooLargeError, 413),
    (InvalidInputError, 400),
    (SerializationError, 400),
    (StoreError, 503),
)

_TITLES = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    409: "Conflict",
    413: "Content Too Large",
    415: "Unsupported Media Type",
    422: "Unprocessable Content",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


def status_of(exc: OrchestrateError) -> int:
    """The HTTP status of an orchestrate error (400 for those not listed)."""
    for kind, status in _STATUS:
        if isinstance(exc, kind):
            return status
    return 400


class RedactedJSONResponse(JSONResponse):
    """JSON with every secret masked, string by string (the body stays valid JSON)."""

    def render(self, content: Any) -> bytes:
        """The body: ``content`` masked, as compact UTF-8 JSON."""
        return json.dumps(
            redact_data(content), ensure_ascii=False, allow_nan=False, separators=(",", ":"), default=str
        ).encode("utf-8", "backslashreplace")


def problem(
    status: int, detail: str, *, kind: str | None = None, headers: dict[str, str] | None = None
) -> JSONResponse:
    """A problem+json response (RFC 9457) whose ``detail`` is the one line the CLI would print."""
    title = _TITLES.get(status, "Error")
    body = {
        "type": f"urn:orchestrate:problem:{kind}" if kind else "about:blank",
        "title": title,
        "status": status,
        "detail": " ".join(redact(detail).split()),
    }
    return RedactedJSONResponse(body, status_code=status, media_type=PROBLEM, headers=headers)


def _validation_detail(exc: RequestValidationError) -> str:
    parts = []
    for error in exc.errors()[:5]:
        where = ".".join(str(p) for p in error.get("loc", ()) if p != "body") or "body"
        parts.append(f"{where}: {error.get('msg', 'invalid')}")
    return "invalid request: " + "; ".join(parts)


def install_errors(app: FastAPI) -> None:
    """Turn every error into problem+json: orchestrate's with the CLI's message, the rest without internals."""

    @app.exception_handler(OrchestrateError)
    async def on_orchestrate(_request: Request, exc: OrchestrateError) -> JSONResponse:
        return problem(status_of(exc), str(exc) or type(exc).__name__, kind=type(exc).__name__)

    @app.exception_handler(AuthError)
    async def on_auth(_request: Request, exc: AuthError) -> JSONResponse:
        headers = {"WWW-Authenticate": 'Bearer realm="orchestrate"'} if exc.status == 401 else None
        kind = "unauthenticated" if exc.status == 401 else "forbidden"
        return problem(exc.status, str(exc), kind=kind, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def on_validation(_request: Request, exc: RequestValidationError) -> JSONResponse:
        return problem(422, _validation_detail(exc), kind="invalid-request")

    @app.exception_handler(StarletteHTTPException)
    async def on_http(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        detail = exc.detail if isinstance(exc.detail, str) else _TITLES.get(exc.status_code, "error")
        return problem(exc.status_code, detail, headers=getattr(exc, "headers", None))


class GuardMiddleware:
    """Outermost layer: Host check, body size limit, security headers on every response."""

    def __init__(self, app: ASGIApp, *, settings: ServerSettings) -> None:
        self.app = app
        self.settings = settings

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or ())
        host = headers.get(b"host", b"").decode("latin-1")
        if not self.settings.host_allowed(host):
            await self._refuse(scope, receive, send, 400, f"host {host!r} is not served here (allowed_hosts)")
            return
        limit = self.settings.max_body_bytes
        declared = headers.get(b"content-length")
        if declared is not None:
            try:
                size = int(declared)
            except ValueError:
                await self._refuse(scope, receive, send, 400, "invalid Content-Length header")
                return
            if size > limit:
                await self._refuse(scope, receive, send, 413, f"the request body is over {limit} bytes")
                return
        started = False
        refused = False
        seen = 0

        async def limited_receive() -> Message:
            nonlocal seen, refused, started
            if refused:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    # Answer now and tell the app the client left: it stops reading, and
                    # whatever it still sends is dropped.
                    refused = True
                    if not started:
                        started = True
                        await self._refuse(scope, receive, send, 413, f"the request body is over {limit} bytes")
                    return {"type": "http.disconnect"}
            return message

        async def secured_send(message: Message) -> None:
            nonlocal started
            if refused:
                return
            if message["type"] == "http.response.start":
                started = True
                names = {name.lower() for name, _ in message.get("headers", ())}
                extra = [(n, v) for n, v in SECURITY_HEADERS if n not in names]
                if b"cache-control" not in names:
                    extra.append((b"cache-control", b"no-store"))
                message = {**message, "headers": [*message.get("headers", ()), *extra]}
            await send(message)

        try:
            await self.app(scope, limited_receive, secured_send)
        except Exception as exc:  # noqa: BLE001 - the last line of defence: a 500, never a traceback
            if refused:
                return
            # Not an error orchestrate expected: one line in the log, a 500 without internals.
            log.error(
                "unexpected %s in %s %s: %s", type(exc).__name__, scope["method"], scope["path"], redact(str(exc))
            )
            if not started:
                detail = f"unexpected {type(exc).__name__}; the server's log has the details"
                await self._refuse(scope, receive, send, 500, detail)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send, status: int, detail: str) -> None:
        response = problem(status, detail)
        response.headers.update({name.decode(): value.decode() for name, value in SECURITY_HEADERS})
        await response(scope, receive, send)
