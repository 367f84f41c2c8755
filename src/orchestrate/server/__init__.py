"""The HTTP server: a JSON API over :class:`~orchestrate.Client`, live events and the dashboard.

``orchestrate serve`` runs it on uvicorn; :func:`create_app` builds the application for
tests (``httpx.ASGITransport``) or another ASGI server. Secure by default: every route
but the health checks needs an API token (:func:`create_token`, ``orchestrate tokens
create``) or a dashboard session, roles decide what a token may do, and the server
answers only to the loopback host names unless told otherwise (extra ``server``).
"""

from __future__ import annotations

from orchestrate.server.app import create_app
from orchestrate.server.settings import ServerSettings
from orchestrate.server.tokens import create_token, list_tokens, revoke_token

__all__ = ["ServerSettings", "create_app", "create_token", "list_tokens", "revoke_token"]
