"""A workflow whose poisoned runs kill their own worker process, for the poison-run tests.

Workers serve it through the real command line (``orchestrate worker --app
poison_app.py:mixed``). A run's input says what its steps do:

* ``{"n": 0}`` — a healthy run: three short steps;
* ``{"n": 0, "poison": true}`` — step ``s2`` calls ``os._exit(1)`` on every execution, as a
  segfault or an OOM kill would end the process: no exception, no record, no log line;
* ``{"n": 0, "big": true}`` — step ``s2`` returns 3 MiB of text (over the store's payload
  limit): the step fails, the run ends in the dead-letter queue, the worker lives;
* ``{"n": 0, "echo": true}`` — step ``s2`` logs the value of a ``Secret`` (the canary)
  and puts it in the message of an error its first attempt raises; it must never reach
  the store in clear.

Every execution of a step appends ``run_id step pid time`` to the file ``$POISON_LEDGER``
(``O_APPEND``, one write per line), so a test counts executions across processes.
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any

from orchestrate import Retry, Step, StepContext, Workflow
from orchestrate.models import Secret

CANARY = Secret("canary-7f3a9c1e-never-stored", name="canary")
"""The secret some steps echo; the tests look for its text in every table."""


def _ledger(run_id: str, step: str) -> None:
    path = os.environ.get("POISON_LEDGER")
    if path:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, f"{run_id} {step} {os.getpid()} {time.time()}\n".encode())
        finally:
            os.close(fd)


def make_step(name: str) -> Any:
    def step(value: dict[str, Any], ctx: StepContext) -> dict[str, Any]:
        _ledger(ctx.run_id, name)
        time.sleep(float(value.get("pause", 0.02)))
        if name == "s2":
            if value.get("poison"):
                os._exit(1)  # the whole process goes, mid-step
            if value.get("big"):
                return {**value, "blob": "x" * (3 * 2**20)}
            if value.get("echo"):
                secret = CANARY.reveal()
                logging.getLogger("poison_app").warning("calling the API with %s", secret)
                if ctx.attempt == 1:
                    raise ConnectionError(f"API refused key {secret}")
        return {**value, "n": value["n"] + 1}

    step.__name__ = name
    return step


mixed = Workflow(
    "mixed",
    [Step(f"s{i}", make_step(f"s{i}"), retry=Retry(max_attempts=2, initial_delay=0.1, jitter=0.0)) for i in (1, 2, 3)],
    version="1",
)
