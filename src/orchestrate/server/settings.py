"""``ServerSettings``: how ``orchestrate serve`` listens, whom it lets in and what it accepts."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass

from orchestrate.errors import InvalidInputError

LOOPBACK_HOSTS: tuple[str, ...] = ("127.0.0.1", "localhost", "::1", "[::1]")
"""The ``Host`` header values accepted by default: the server answers only to this machine."""


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a name or an address to listen on) is this machine only."""
    name = host.strip("[]")
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class ServerSettings:
    """What the HTTP server accepts. Frozen and validated: a bad value is refused at once.

    Args:
        auth: require a token (or a dashboard session) on every route but the health
            checks. ``False`` is for a server on the loopback address only: every request
            acts as the local admin ``local``, and ``orchestrate serve`` refuses to listen
            anywhere else without auth.
        allowed_hosts: ``Host`` header values accepted (ports aside); ``"*"`` accepts
            any. Default: the loopback names, so a DNS-rebinding page cannot reach the
            server through a name of its own.
        max_body_bytes: largest request body accepted (413 above it).
        session_seconds: how long a dashboard session lasts.
        secure_cookies: mark the session cookie ``Secure`` (send it over HTTPS only);
            turn on behind TLS.
        poll_seconds: how often live event streams look for new events.
        self_approval: whether a reviewer may approve a review of a run they started
            through the API (``False``: refused, four eyes).
        page_limit: the largest ``limit`` a listing takes.
        stream_seconds: how long a live event stream stays open; the browser's
            ``EventSource`` then reconnects with ``Last-Event-ID`` and misses nothing.
        stream_lag_seconds: on PostgreSQL, how long a live stream keeps looking for an
            event whose id it passed before the event committed (ids are handed out
            before commit, not in commit order); a write slower than this to commit is
            taken for rolled back.
    """

    auth: bool = True
    allowed_hosts: tuple[str, ...] = LOOPBACK_HOSTS
    max_body_bytes: int = 1_048_576
    session_seconds: float = 8 * 3600.0
    secure_cookies: bool = False
    poll_seconds: float = 0.05
    self_approval: bool = False
    page_limit: int = 500
    stream_seconds: float = 300.0
    stream_lag_seconds: float = 30.0

    def __init__(
        self,
        *,
        auth: bool = True,
        allowed_hosts: Sequence[str] = LOOPBACK_HOSTS,
        max_body_bytes: int = 1_048_576,
        session_seconds: float = 8 * 3600.0,
        secure_cookies: bool = False,
        poll_seconds: float = 0.05,
        self_approval: bool = False,
        page_limit: int = 500,
        stream_seconds: float = 300.0,
        stream_lag_seconds: float = 30.0,
    ) -> None:
        if isinstance(allowed_hosts, str):
            allowed_hosts = [allowed_hosts]
        hosts = tuple(h.strip().lower() for h in allowed_hosts)
        if not hosts or any(not h for h in hosts):
            raise InvalidInputError("allowed_hosts needs at least one host name (or '*')")
        for name, value, low in (
            ("max_body_bytes", max_body_bytes, 1),
            ("page_limit", page_limit, 1),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise InvalidInputError(f"{name} must be an int >= {low}, got {value!r}")
        for name, seconds in (
            ("session_seconds", session_seconds),
            ("poll_seconds", poll_seconds),
            ("stream_seconds", stream_seconds),
            ("stream_lag_seconds", stream_lag_seconds),
        ):
            if isinstance(seconds, bool) or not isinstance(seconds, int | float) or not seconds > 0:
                raise InvalidInputError(f"{name} must be a positive number of seconds, got {seconds!r}")
        object.__setattr__(self, "auth", bool(auth))
        object.__setattr__(self, "allowed_hosts", hosts)
        object.__setattr__(self, "max_body_bytes", max_body_bytes)
        object.__setattr__(self, "session_seconds", float(session_seconds))
        object.__setattr__(self, "secure_cookies", bool(secure_cookies))
        object.__setattr__(self, "poll_seconds", float(poll_seconds))
        object.__setattr__(self, "self_approval", bool(self_approval))
        object.__setattr__(self, "page_limit", page_limit)
        object.__setattr__(self, "stream_seconds", float(stream_seconds))
        object.__setattr__(self, "stream_lag_seconds", float(stream_lag_seconds))

    def host_allowed(self, header: str) -> bool:
        """Whether a request's ``Host`` header names this server."""
        if "*" in self.allowed_hosts:
            return True
        host = header.strip().lower()
        if host.startswith("["):
            host = host[: host.find("]") + 1] if "]" in host else host
        elif host.count(":") == 1:
            host = host.split(":", 1)[0]
        return host in self.allowed_hosts
