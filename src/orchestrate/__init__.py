"""orchestrate: AI workflows that survive production.

Every step with a timeout, a retry policy and a fallback; crash-proof checkpoints;
people approving what must not be automated; embedded on SQLite or scaled out on
PostgreSQL.
"""

from __future__ import annotations

from orchestrate._engine import defaults as _defaults  # noqa: F401 - installs Workflow.run's default engine
from orchestrate._engine.clock import Clock, SystemClock
from orchestrate._engine.context import RunContext
from orchestrate._engine.runner import Engine
from orchestrate._engine.state import StepContext
from orchestrate.client import Client, RunDetail
from orchestrate.decorators import AgentWorkflow, branch, fallback, gate, parallel, reduce
from orchestrate.errors import (
    ApprovalRequired,
    ConflictError,
    DeadlineExceededError,
    DefinitionError,
    InvalidInputError,
    NonDeterminismError,
    NonRetryableError,
    OrchestrateError,
    RejectedError,
    ReviewExpiredError,
    ReviewNotFoundError,
    ReviewPermissionError,
    RunFailedError,
    RunNotFoundError,
    StepFailedError,
    StepTimeoutError,
    WorkflowVersionNotFoundError,
)
from orchestrate.policies import (
    MISSING,
    Cache,
    ExponentialBackoff,
    Fallback,
    FixedRetry,
    Retry,
    StepPolicy,
    Timeout,
)
from orchestrate.review import Escalate, HumanReviewGate, ReviewOutcome, RouteTo, Tier, TieredGate, approval
from orchestrate.state import StepSchema, compress_after
from orchestrate.store import open_store
from orchestrate.types import RunId, RunStatus, StepKey, StepStatus
from orchestrate.workflow import (
    Branch,
    DurableFunction,
    Loop,
    Map,
    Orchestrator,
    Parallel,
    Step,
    SubWorkflow,
    Workflow,
    workflow,
)

__version__ = "0.1.0"

__all__ = [
    "AgentWorkflow",
    "ApprovalRequired",
    "Branch",
    "Cache",
    "Client",
    "Clock",
    "ConflictError",
    "DeadlineExceededError",
    "DefinitionError",
    "DurableFunction",
    "Engine",
    "Escalate",
    "ExponentialBackoff",
    "Fallback",
    "FixedRetry",
    "HumanReviewGate",
    "InvalidInputError",
    "Loop",
    "MISSING",
    "Map",
    "NonDeterminismError",
    "NonRetryableError",
    "OrchestrateError",
    "Orchestrator",
    "Parallel",
    "RejectedError",
    "Retry",
    "ReviewExpiredError",
    "ReviewNotFoundError",
    "ReviewOutcome",
    "ReviewPermissionError",
    "RouteTo",
    "RunContext",
    "RunDetail",
    "RunFailedError",
    "RunId",
    "RunNotFoundError",
    "RunStatus",
    "Step",
    "StepContext",
    "StepFailedError",
    "StepKey",
    "StepPolicy",
    "StepSchema",
    "StepStatus",
    "StepTimeoutError",
    "SubWorkflow",
    "SystemClock",
    "Tier",
    "TieredGate",
    "Timeout",
    "Workflow",
    "WorkflowVersionNotFoundError",
    "__version__",
    "approval",
    "branch",
    "compress_after",
    "fallback",
    "gate",
    "open_store",
    "parallel",
    "reduce",
    "workflow",
]
