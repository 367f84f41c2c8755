"""HTTP webhooks: a signed POST starts a run, once per idempotency key.

A :class:`WebhookTrigger` describes one endpoint; :func:`webhook_routes` turns triggers
into Starlette routes that ``orchestrate serve`` mounts (or any Starlette/FastAPI app).
A request is accepted only if

* its body is at most ``max_bytes`` (else ``413``, read no further);
* it carries the timestamp header, within ``replay_window_seconds`` of the server's
  clock, past or future (else ``401``): a captured request cannot be replayed later;
* its signature header is ``sha256=`` and the hex HMAC-SHA256, keyed with the trigger's
  secret, of ``<timestamp>.<body>``, compared in constant time (else ``401``);
* it carries the idempotency key header (else ``400``).

Then the run is created under an id derived from the trigger and the key: ``202`` with
``{"run_id", "status": "created"}``; the same key again answers ``200`` with
``"status": "duplicate"`` and the same run id. A body that does not decode, or that the
workflow refuses as input, is recorded as a dead run (the dead-letter queue) and answered
``422``. Errors are ``application/problem+json``. Needs the ``server`` extra (Starlette).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from orchestrate.errors import InvalidInputError, StoreError
from orchestrate.models.secrets import Secret
from orchestrate.observe import get_logger
from orchestrate.triggers.base import Decoder, EventOutcome, TriggerError, check_name, start_for_event
from orchestrate.types import RunStatus

if TYPE_CHECKING:
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import BaseRoute

    from orchestrate.client import Client
    from orchestrate.workflow import AnyWorkflow

SIGNATURE_HEADER = "X-Orchestrate-Signature"
TIMESTAMP_HEADER = "X-Orchestrate-Timestamp"
KEY_HEADER = "Idempotency-Key"
MAX_KEY_LENGTH = 200


class WebhookTrigger:
    """One webhook endpoint that starts a workflow.

    Args:
        name: the trigger's name (part of every run id; the default path's last part).
        workflow: the workflow each request starts.
        secret: the shared HMAC key (at least 16 characters), best as a
            :class:`~orchestrate.models.Secret` so that it never prints.
        path: the route (default ``/hooks/<name>``).
        max_bytes: the largest body accepted.
        replay_window_seconds: how far the timestamp header may be from now.
        decode: body → the run's input (default: JSON).
        queue: the queue the runs wait in.
        signature_header: the header with ``sha256=<hex>``.
        timestamp_header: the header with the POSIX seconds the sender signed.
        key_header: the header with the idempotency key.

    Raises:
        InvalidInputError: a bad name, a short secret or a bad limit.
    """

    def __init__(
        self,
        name: str,
        *,
        workflow: AnyWorkflow | str,
        secret: str | Secret,
        path: str | None = None,
        max_bytes: int = 1_048_576,
        replay_window_seconds: float = 300.0,
        decode: Decoder | None = None,
        queue: str = "default",
        signature_header: str = SIGNATURE_HEADER,
        timestamp_header: str = TIMESTAMP_HEADER,
        key_header: str = KEY_HEADER,
    ) -> None:
        self.name = check_name(name)
        self.workflow = workflow
        secret = secret if isinstance(secret, Secret) else Secret(secret, name=f"webhook:{name}")
        if len(secret.reveal()) < 16:
            raise InvalidInputError(f"webhook {name!r}: the secret must be at least 16 characters")
        self._key = secret.reveal().encode()
        self.path = path or f"/hooks/{name}"
        if not self.path.startswith("/"):
            raise InvalidInputError(f"webhook {name!r}: path must start with '/', got {self.path!r}")
        if isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes < 1:
            raise InvalidInputError(f"webhook {name!r}: max_bytes must be an int >= 1, got {max_bytes!r}")
        if not isinstance(replay_window_seconds, int | float) or replay_window_seconds <= 0:
            raise InvalidInputError(f"webhook {name!r}: replay_window_seconds must be > 0")
        self.max_bytes = max_bytes
        self.replay_window_seconds = float(replay_window_seconds)
        self.decode = decode
        self.queue = queue
        self.signature_header = signature_header
        self.timestamp_header = timestamp_header
        self.key_header = key_header

    def __repr__(self) -> str:
        return f"WebhookTrigger({self.name!r}, path={self.path!r})"

    def signature(self, body: bytes, timestamp: int | str) -> str:
        """The signature header's value for ``body`` sent at ``timestamp`` (what senders compute)."""
        digest = hmac.new(self._key, f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
        return f"sha256={digest}"

    def headers(self, body: bytes, *, key: str, timestamp: float) -> dict[str, str]:
        """The headers a sender adds: timestamp, signature and idempotency key."""
        stamp = str(int(timestamp))
        return {
            self.timestamp_header: stamp,
            self.signature_header: self.signature(body, stamp),
            self.key_header: key,
            "Content-Type": "application/json",
        }

    def verify(self, body: bytes, *, timestamp: str | None, signature: str | None, now: float) -> str | None:
        """Why the request is refused (``None``: it is authentic and fresh)."""
        if not timestamp or not timestamp.isdigit():
            return f"missing or malformed {self.timestamp_header} header (POSIX seconds)"
        if not signature or not hmac.compare_digest(signature.encode(), self.signature(body, timestamp).encode()):
            return f"the {self.signature_header} header does not match the body"
        if abs(now - int(timestamp)) > self.replay_window_seconds:
            return f"{self.timestamp_header} is outside the replay window of {self.replay_window_seconds:g} s"
        return None


def webhook_routes(client: Client, triggers: Iterable[WebhookTrigger]) -> list[BaseRoute]:
    """Starlette routes, one ``POST`` route per trigger, creating runs through ``client``.

    Returns:
        Routes to mount (``create_app(..., extra_routes=webhook_routes(client, hooks))``).

    Raises:
        InvalidInputError: two triggers share a name or a path.
        TriggerError: Starlette is not installed (the ``server`` extra).
    """
    try:
        from starlette.routing import Route
    except ImportError:
        raise TriggerError("webhooks need the server extra: pip install 'orchestrate-ai[server]'") from None
    found = list(triggers)
    for attr in ("name", "path"):
        values = [getattr(t, attr) for t in found]
        if len(set(values)) != len(values):
            raise InvalidInputError(f"webhook {attr}s must be unique, got {values!r}")
    routes: list[BaseRoute] = []
    for trigger in found:

        async def endpoint(request: Request, trigger: WebhookTrigger = trigger) -> Response:
            return await _handle(client, trigger, request)

        routes.append(Route(trigger.path, endpoint, methods=["POST"], name=f"webhook:{trigger.name}"))
    return routes


async def _handle(client: Client, trigger: WebhookTrigger, request: Request) -> Response:
    from starlette.responses import JSONResponse

    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > trigger.max_bytes):
        return _problem(413, "Payload Too Large", f"the body is over {trigger.max_bytes} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > trigger.max_bytes:
            return _problem(413, "Payload Too Large", f"the body is over {trigger.max_bytes} bytes")
        chunks.append(chunk)
    body = b"".join(chunks)
    refused = trigger.verify(
        body,
        timestamp=request.headers.get(trigger.timestamp_header),
        signature=request.headers.get(trigger.signature_header),
        now=client.engine.clock.now(),
    )
    if refused is not None:
        get_logger().warning("webhook_refused", trigger=trigger.name, reason=refused)
        return _problem(401, "Unauthorized", refused)
    key = request.headers.get(trigger.key_header)
    if not key or len(key) > MAX_KEY_LENGTH or not key.isprintable():
        return _problem(
            400,
            "Bad Request",
            f"the {trigger.key_header} header is required: 1 to {MAX_KEY_LENGTH} printable characters",
        )
    try:
        started = await start_for_event(
            client,
            trigger=trigger.name,
            workflow=trigger.workflow,
            key=key,
            body=body,
            decode=trigger.decode,
            queue=trigger.queue,
        )
    except StoreError:
        get_logger().warning("webhook_store_unavailable", trigger=trigger.name)
        return _problem(503, "Service Unavailable", "the store is unavailable; send the request again", retry=True)
    outcome = started.outcome
    if outcome is EventOutcome.DUPLICATE:
        run = await client.engine.store.get_run(started.run_id)
        if run is not None and run.status is RunStatus.DEAD and (run.error or {}).get("reason") == "poison":
            outcome = EventOutcome.POISON
    if outcome is EventOutcome.POISON:
        return _problem(
            422,
            "Unprocessable Content",
            f"the body cannot be the input of the workflow; recorded as dead run {started.run_id}",
            run_id=started.run_id,
        )
    status = 202 if outcome is EventOutcome.CREATED else 200
    return JSONResponse({"run_id": started.run_id, "status": outcome.value}, status_code=status)


def _problem(status: int, title: str, detail: str, *, retry: bool = False, **extra: Any) -> Response:
    from starlette.responses import JSONResponse

    headers = {"Retry-After": "1"} if retry else None
    return JSONResponse(
        {"type": "about:blank", "title": title, "status": status, "detail": detail, **extra},
        status_code=status,
        media_type="application/problem+json",
        headers=headers,
    )
