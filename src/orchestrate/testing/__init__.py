"""Test doubles and checks for code built on orchestrate.

* :class:`FakeClock` — time that moves only when the test says so;
* :class:`FaultyStore` — a store wrapper that fails chosen calls, before the write or
  after it was committed ("the acknowledgement was lost");
* :class:`FakeModel` / :class:`FunctionModel` — models that script replies, latencies,
  429s with Retry-After (:class:`RateLimited`), timeouts (:class:`TimedOut`), 5xx
  (:class:`ServerFailure`), garbage and duplicate answers (:class:`Duplicate`);
  :class:`FakeEmbedder` gives deterministic embeddings;
* :mod:`orchestrate.testing.store_suite` — the conformance suite every ``Store`` backend
  must pass (it needs pytest, so import it explicitly).
"""

from __future__ import annotations

from orchestrate.testing.clock import FakeClock
from orchestrate.testing.faulty import FaultMode, FaultyStore, InjectedFault
from orchestrate.testing.models import (
    Duplicate,
    Fail,
    FakeEmbedder,
    FakeModel,
    FakeModelExhaustedError,
    FunctionModel,
    RateLimited,
    Reply,
    ServerFailure,
    TimedOut,
    call_counts_per_window,
)

__all__ = [
    "Duplicate",
    "Fail",
    "FakeClock",
    "FakeEmbedder",
    "FakeModel",
    "FakeModelExhaustedError",
    "FaultMode",
    "FaultyStore",
    "FunctionModel",
    "InjectedFault",
    "RateLimited",
    "Reply",
    "ServerFailure",
    "TimedOut",
    "call_counts_per_window",
]
