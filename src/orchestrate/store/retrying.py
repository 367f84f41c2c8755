"""``RetryingStore``: retry transient store failures, relying on idempotent writes.

Every write of the :class:`~orchestrate.store.base.Store` protocol is idempotent or
compare-and-set, so the engine may repeat a call whose outcome it does not know — the
database restarted, the connection dropped, the write committed but the acknowledgement
was lost. A repeated ``record_step`` returns the record the first call stored; a repeated
fenced status change that already happened is refused with ``LeaseLostError``, which the
engine answers by reading the run's state.

Only plain :class:`~orchestrate.errors.StoreError` is retried: its subclasses
(``LeaseLostError``, ``SchemaVersionError``) and domain errors are answers, not failures;
a value refused before it was sent (``PayloadTooLargeError``, ``SerializationError``)
would be refused again.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Awaitable, Callable
from typing import Any

from orchestrate.errors import StoreError
from orchestrate.observe import get_logger


class RetryingStore:
    """Wraps any store; its async methods are retried on transient ``StoreError``.

    Args:
        inner: the store to wrap.
        total_seconds: give up (re-raise) once a call has been failing this long.
        initial_delay: first pause between tries; doubles up to ``max_delay``.
        max_delay: longest pause between tries.
    """

    def __init__(
        self, inner: Any, *, total_seconds: float = 30.0, initial_delay: float = 0.05, max_delay: float = 1.0
    ) -> None:
        self.inner = inner
        self.total_seconds = total_seconds
        self.initial_delay = initial_delay
        self.max_delay = max_delay
        self.retries = 0  # calls repeated after a transient failure

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.inner, name)
        if not asyncio.iscoroutinefunction(attr) or name in ("open", "close"):
            return attr

        @functools.wraps(attr)
        async def call(*args: Any, **kwargs: Any) -> Any:
            fn = getattr(self.inner, name)
            try:
                return await fn(*args, **kwargs)  # the first try, without the retry loop's set-up
            except StoreError as exc:
                if type(exc) is not StoreError:
                    raise
                return await self._retry(name, fn, args, kwargs, exc)

        # Kept on the instance: later lookups skip ``__getattr__`` (and the wrapping), a
        # cost every store call of every step would pay. The inner method is still looked
        # up at call time.
        self.__dict__[name] = call
        return call

    async def _retry(
        self, name: str, fn: Callable[..., Awaitable[Any]], args: Any, kwargs: Any, error: StoreError
    ) -> Any:
        """Repeat a call that failed with ``error`` until it answers or ``total_seconds`` pass."""
        delay = self.initial_delay
        started = time.monotonic()
        while True:
            if time.monotonic() - started + delay > self.total_seconds:
                raise error
            self.retries += 1
            get_logger().warning("store_retry", method=name, error=str(error), retry_in=delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, self.max_delay)
            try:
                return await fn(*args, **kwargs)
            except StoreError as exc:
                if type(exc) is not StoreError:
                    raise
                error = exc

    def __repr__(self) -> str:
        return f"RetryingStore({self.inner!r})"
