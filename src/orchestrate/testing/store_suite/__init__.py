"""The conformance suite for :class:`~orchestrate.store.Store` backends.

Every backend runs the same tests: subclass :class:`StoreConformance` in a test module
and provide a ``store`` fixture that yields an *opened, empty* store::

    import pytest
    from orchestrate.testing.store_suite import StoreConformance

    class TestMyStore(StoreConformance):
        @pytest.fixture
        async def store(self, tmp_path):
            store = MyStore(f"my://{tmp_path}")
            await store.open()
            yield store
            await store.close()

The tests are async and need pytest-asyncio (``asyncio_mode = "auto"``, or mark the
subclass with ``pytest.mark.asyncio``). For pytest's detailed assertion messages, call
``pytest.register_assert_rewrite("orchestrate.testing.store_suite")`` in a
``conftest.py`` before the suite is imported.

The suite checks behaviour, not implementation: runs, leases and fencing, insert-if-absent
step records, retry progress, events, the cache, JSON round-trips, concurrent claims,
review items (insert-if-absent, queue order, role filters, compare-and-set decisions that
deliver the run's signal in the same transaction), and payload limits: a backend has a
``payload_limits`` attribute (:class:`~orchestrate.store.PayloadLimits`), which the suite
sets to small limits, and refuses values whose JSON is over them before writing anything.

The suite is :class:`StoreConformance`, made of one part per concern, each in its own
module: runs (:class:`RunsConformance`), claims and leases (:class:`ClaimsConformance`),
step records, events and the cache (:class:`StepsConformance`), review items
(:class:`ReviewsConformance`), payload limits (:class:`PayloadsConformance`), claiming
many runs at once and wake-up hints (:class:`ClaimingConformance`, for a store that
declares :attr:`~orchestrate.store.base.Capability.CLAIMING`), shared rate windows and
breakers (:class:`LimitsConformance`, for :attr:`~orchestrate.store.base.Capability.LIMITS`),
and opening a store that holds data (:class:`MigrationsConformance`): give it a
``reopen`` fixture (another store on the same data) and a ``set_schema_version`` fixture
(write a version where your backend keeps it), or those tests are skipped::

    class TestMyStore(StoreConformance):
        ...

        @pytest.fixture
        def reopen(self, tmp_path):
            async def reopen():
                other = MyStore(f"my://{tmp_path}")
                await other.open()
                return other

            return reopen
"""

from __future__ import annotations

import pytest

from orchestrate.store.base import Store
from orchestrate.testing.store_suite._claiming import ClaimingConformance
from orchestrate.testing.store_suite._claims import ClaimsConformance
from orchestrate.testing.store_suite._limits import LimitsConformance
from orchestrate.testing.store_suite._migrations import MigrationsConformance, Reopen, SetSchemaVersion
from orchestrate.testing.store_suite._payloads import PayloadsConformance
from orchestrate.testing.store_suite._reviews import ReviewsConformance
from orchestrate.testing.store_suite._runs import RunsConformance
from orchestrate.testing.store_suite._steps import StepsConformance
from orchestrate.testing.store_suite._support import (
    LEASE,
    ODD_VALUE,
    T0,
    claimed,
    make_review,
    make_run,
    make_step,
    parked,
)

__all__ = [
    "LEASE",
    "ODD_VALUE",
    "T0",
    "ClaimingConformance",
    "ClaimsConformance",
    "LimitsConformance",
    "MigrationsConformance",
    "PayloadsConformance",
    "Reopen",
    "ReviewsConformance",
    "RunsConformance",
    "SetSchemaVersion",
    "StepsConformance",
    "StoreConformance",
    "claimed",
    "make_review",
    "make_run",
    "make_step",
    "parked",
]


class StoreConformance(
    RunsConformance,
    ClaimsConformance,
    StepsConformance,
    ReviewsConformance,
    PayloadsConformance,
    ClaimingConformance,
    LimitsConformance,
    MigrationsConformance,
):
    """Tests every ``Store`` backend must pass. Subclasses provide the ``store`` fixture."""

    @pytest.fixture
    def store(self) -> Store:
        """Override with a fixture yielding an opened, empty store of your backend."""
        raise NotImplementedError(f"{type(self).__name__} must define a `store` fixture yielding an opened store")
