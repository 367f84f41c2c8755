"""Test doubles and checks for code built on orchestrate.

* :class:`FakeClock` — time that moves only when the test says so;
* :class:`FaultyStore` — a store wrapper that fails chosen calls, before the write or
  after it was committed ("the acknowledgement was lost");
* :mod:`orchestrate.testing.store_suite` — the conformance suite every ``Store`` backend
  must pass (it needs pytest, so import it explicitly).
"""

from __future__ import annotations

from orchestrate.testing.clock import FakeClock
from orchestrate.testing.faulty import FaultMode, FaultyStore, InjectedFault

__all__ = [
    "FakeClock",
    "FaultMode",
    "FaultyStore",
    "InjectedFault",
]
