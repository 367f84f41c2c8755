"""The public API is curated: sorted, importable, no underscore names."""

from __future__ import annotations

import orchestrate


def test_all_is_sorted_and_exported():
    names = orchestrate.__all__
    assert names == sorted(names)
    for name in names:
        assert hasattr(orchestrate, name), name
        assert not name.startswith("_") or name == "__version__"


def test_the_seeds_imports_work():
    from orchestrate import (  # noqa: F401
        AgentWorkflow,
        Branch,
        ExponentialBackoff,
        Fallback,
        FixedRetry,
        HumanReviewGate,
        Orchestrator,
        Parallel,
        Step,
        Workflow,
        approval,
        branch,
        fallback,
        gate,
        parallel,
        reduce,
    )


def test_pinned_public_names():
    assert set(orchestrate.__all__) >= {
        "Client",
        "Engine",
        "RunContext",
        "StepContext",
        "Retry",
        "Timeout",
        "Cache",
        "Map",
        "Loop",
        "SubWorkflow",
        "workflow",
        "RunStatus",
        "StepStatus",
        "OrchestrateError",
        "RunFailedError",
        "ApprovalRequired",
    }
