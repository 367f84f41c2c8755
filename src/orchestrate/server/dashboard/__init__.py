"""The web dashboard: a single page for operators and reviewers, served by ``orchestrate serve``.

The page is plain HTML, CSS and JavaScript modules shipped inside the package (no build step,
no CDN, no external font), so it works offline and under the server's strict
Content-Security-Policy (``default-src 'self'``): no inline script or style, no ``style=``
attribute in the HTML. It talks only to the JSON API under ``/api/v1`` with the session
cookie, and sends the session's CSRF token on every unsafe request.

The server includes :func:`routes`: ``GET /`` answers the page and ``/ui/...`` its files.
"""

from __future__ import annotations

from pathlib import Path

from starlette.requests import Request
from starlette.responses import FileResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

__all__ = ["STATIC_DIR", "routes"]

STATIC_DIR = Path(__file__).resolve().parent / "static"
"""Where the dashboard's files are (package data)."""

_PAGE_HEADERS = {"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"}


async def _index(request: Request) -> Response:
    """The page itself; the views are chosen client-side from the URL's fragment (``#/runs``)."""
    return FileResponse(STATIC_DIR / "index.html", headers=_PAGE_HEADERS)


async def _ui_root(request: Request) -> Response:
    """``/ui`` without its slash: the page lives at ``/``."""
    return RedirectResponse("/", status_code=307)


def routes() -> list[BaseRoute]:
    """The dashboard's routes, to include in the server's application.

    Returns:
        ``GET /`` (the page), ``GET /ui`` (a redirect to it) and ``/ui/...`` (its scripts,
        style sheet and icon, read from :data:`STATIC_DIR`).
    """
    return [
        Route("/", _index, methods=["GET", "HEAD"], name="dashboard"),
        Route("/ui", _ui_root, methods=["GET", "HEAD"]),
        Mount("/ui", app=StaticFiles(directory=STATIC_DIR, html=True), name="dashboard_static"),
    ]
