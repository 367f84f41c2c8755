"""Run a sync step function in a separate process that can be killed on timeout.

Threads cannot be stopped from outside: a sync step that times out in the default
thread mode keeps running in its thread until it returns (its result is discarded).
Steps declared with ``isolation="process"`` run in a fresh process instead; on timeout
the process is killed. The function and its arguments must be picklable (a module-level
function), and the result too.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import multiprocessing.connection
import pickle
from collections.abc import Callable
from typing import Any

from orchestrate.errors import IsolatedProcessError


def _child(
    conn: multiprocessing.connection.Connection, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
) -> None:
    try:
        result: tuple[bool, Any] = (True, fn(*args, **kwargs))
    except BaseException as exc:  # noqa: BLE001 - sent back to the parent
        result = (False, exc)
    try:
        conn.send(result)
    except (pickle.PicklingError, TypeError, AttributeError) as exc:
        conn.send((False, IsolatedProcessError(f"result could not be sent back: {exc}")))
    finally:
        conn.close()


async def call_in_process(fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """Call ``fn(*args, **kwargs)`` in a new process; kill it if the awaiting task is cancelled."""
    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe(duplex=False)
    process = ctx.Process(target=_child, args=(child, fn, args, kwargs), daemon=True)
    try:
        process.start()
    except (pickle.PicklingError, TypeError, AttributeError) as exc:
        raise IsolatedProcessError(
            f"cannot run {getattr(fn, '__qualname__', fn)!r} in a process: {exc}; "
            "process isolation needs a module-level function and picklable arguments"
        ) from exc
    finally:
        child.close()
    try:
        ok, value = await asyncio.to_thread(_receive, parent)
    except BaseException:
        process.kill()
        raise
    finally:
        await asyncio.to_thread(process.join, 5)
        parent.close()
    if not ok:
        raise value
    return value


def _receive(conn: multiprocessing.connection.Connection) -> tuple[bool, Any]:
    try:
        result: tuple[bool, Any] = conn.recv()
    except EOFError:
        return False, IsolatedProcessError("the step's process died before returning a result")
    return result
