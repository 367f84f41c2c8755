"""Run one chain N times, for counting the instructions per step with callgrind.

``python -m bench.instructions CASE STORE RUNS`` (CASE: ``int``, ``def``, ``def_timeout``, ``def_inline``,
``payload``, ``payload10k``, ``payload_def``, ``typed``;
STORE: ``memory`` or ``sqlite``) runs a 10-step chain RUNS times with the garbage collector
off, so that the instructions callgrind counts do not depend on where a collection falls.
The instructions per step of a case are the difference between two counts (say 130 and
30 runs) divided by the 1,000 steps between them::

    valgrind --tool=callgrind --callgrind-out-file=/dev/null python -m bench.instructions int memory 130
    valgrind --tool=callgrind --callgrind-out-file=/dev/null python -m bench.instructions int memory 30

Unlike timings, the counts do not move when other processes share the machine.
"""

from __future__ import annotations

import asyncio
import gc
import sys
import tempfile
from typing import Any

from bench.chain import (
    PAYLOAD,
    PAYLOAD_10K,
    Ticket,
    async_workflow,
    def_workflow,
    payload_def_workflow,
    payload_workflow,
    sync_workflow,
    typed_workflow,
)
from orchestrate import Engine
from orchestrate.store import InMemoryStore, open_store

CASES: dict[str, tuple[Any, Any]] = {
    "int": (async_workflow, 0),
    "def": (def_workflow, 0),
    "def_timeout": (lambda: def_workflow(timeout=30), 0),
    # Under callgrind every call is ~50x slower, so ``isolation="auto"`` finds no call quick
    # and keeps them in threads: the count of its inline path is this case's.
    "def_inline": (lambda: sync_workflow("inline"), 0),
    "payload": (payload_workflow, PAYLOAD),
    "payload10k": (payload_workflow, PAYLOAD_10K),
    "payload_def": (payload_def_workflow, PAYLOAD),
    "typed": (typed_workflow, Ticket("T-4829", 0.93, ("delayed", "priority"), 0)),
}


async def _main(case: str, store: str, runs: int) -> None:
    make, value = CASES[case]
    wf = make()
    with tempfile.TemporaryDirectory() as tmp:
        backend = InMemoryStore() if store == "memory" else open_store(f"sqlite:///{tmp}/x.db?synchronous=normal")
        async with Engine(backend, workflows=[wf]) as engine:
            for _ in range(runs):
                await engine.run(wf, value)


def main(argv: list[str]) -> int:
    """Entry point: ``CASE STORE RUNS``."""
    if len(argv) != 3 or argv[0] not in CASES or argv[1] not in ("memory", "sqlite"):
        print(f"usage: python -m bench.instructions {'|'.join(CASES)} memory|sqlite RUNS", file=sys.stderr)
        return 2
    gc.disable()
    asyncio.run(_main(argv[0], argv[1], int(argv[2])))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
