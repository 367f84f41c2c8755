"""Who holds a run: worker ids that say which process they are, and the lease heartbeat.

A worker's id names its host, pid and pid namespace, so that a run held by a process of
this host that died is taken over at once instead of when its lease runs out
(:func:`owner_is_dead`). While a run is driven, :func:`heartbeat` renews its lease on the
engine's clock every third of the lease.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import socket
import uuid
from typing import Any

from orchestrate._engine.clock import Clock, SystemClock
from orchestrate.errors import StoreError
from orchestrate.store.base import RunRecord, Store


def _host_identity() -> str:
    """What tells this process's pids apart from another host's or container's.

    The hostname alone does not: containers often share one, and each has its own pid
    namespace, where another container's live worker has a pid that does not exist. The
    kernel's boot id (one per machine boot) and the inode of this process's pid
    namespace do; where they cannot be read, the identity is unique to this process, so
    no other process is ever judged dead from its pid, only from its lease.
    """
    parts = []
    try:
        with open("/proc/sys/kernel/random/boot_id") as fh:
            parts.append(fh.read().strip())
        parts.append(os.readlink("/proc/self/ns/pid").strip("pid:[]"))
    except OSError:
        return uuid.uuid4().hex
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:12]


_HOST = _host_identity()


def owner_id() -> str:
    """A new worker id: ``host:pid:host identity:random``."""
    return f"{socket.gethostname()}:{os.getpid()}:{_HOST}:{uuid.uuid4().hex[:8]}"


def owner_is_dead(owner: str | None) -> bool:
    """Whether a lease owner is a process of this host and pid namespace that no longer exists.

    An owner elsewhere (another machine, another container's pid namespace, or an id
    without this host identity) is never judged from its pid: its lease says when it
    stopped renewing.
    """
    if not owner:
        return False
    host, _, rest = owner.partition(":")
    pid_text, _, rest = rest.partition(":")
    identity = rest.partition(":")[0]
    if host != socket.gethostname() or identity != _HOST or not pid_text.isdigit():
        return False
    pid = int(pid_text)
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


async def heartbeat(
    run: RunRecord,
    task: asyncio.Task[Any],
    *,
    store: Store,
    clock: Clock,
    owner: str,
    lease_seconds: float,
    log: Any,
    first: bool = True,
) -> None:
    """Renew ``run``'s lease every third of the lease, as ``clock`` tells (now first, with ``first``).

    When the lease was taken over, ``task`` (the run's) is cancelled: the new holder
    owns the run. While the store is unreachable the run goes on and the renewal is tried
    again; if the lease runs out meanwhile, the fence refuses this worker's next write.
    """
    interval = lease_seconds / 3
    if not first:
        await _follow(clock, interval)
    while True:
        try:
            ok = await store.renew_lease(
                run.run_id, owner=owner, fence=run.fence, now=clock.now(), lease_seconds=lease_seconds
            )
        except StoreError as exc:
            log.warning("lease_renew_failed", run_id=run.run_id, error=str(exc))
            await _follow(clock, interval)
            continue
        if not ok:
            log.warning("lease_lost", run_id=run.run_id, workflow=run.workflow, fence=run.fence)
            task.cancel()
            return
        await _follow(clock, interval)


_FOLLOW_SECONDS = 0.05
"""How often a heartbeat on another clock than the system's looks at it."""


async def _follow(clock: Clock, seconds: float) -> None:
    """Wait until ``clock`` has moved ``seconds`` on, without moving it.

    The system clock is slept on. Another clock (``FakeClock``) is watched instead: a
    sleeper on a clock that jumps to its next sleeper's deadline whenever the loop is
    idle (``auto_advance``) would move it through every real wait of the run it keeps
    (a thread, a database) and expire what the test is about to check.
    """
    if type(clock) is SystemClock:
        await asyncio.sleep(seconds)
        return
    until = clock.now() + seconds
    while clock.now() < until:
        await asyncio.sleep(_FOLLOW_SECONDS)
