"""People in the loop: review gates that park a run until people decide.

Declare a gate on a graph step (``Step(..., gate=HumanReviewGate(...))``), with the
seeds' ``@gate``/``@approval`` decorators, in a durable function (``await
ctx.review(payload, ...)``), or by returning ``Fallback("human_review_queue", doc)``
from a step (see :func:`review_queue`). The run parks (``waiting``, holding no worker)
on a review item in the store; reviewers decide through
:meth:`orchestrate.Client.approve`, :meth:`~orchestrate.Client.reject`,
:meth:`~orchestrate.Client.edit` or ``orchestrate reviews ...``.
"""

from __future__ import annotations

from orchestrate.errors import ReviewExpiredError, ReviewNotFoundError, ReviewPermissionError
from orchestrate.review.gate import (
    APPROVERS,
    Default,
    Escalate,
    HumanReviewGate,
    ReviewOutcome,
    RouteTo,
    Tier,
    TieredGate,
    approval,
    review_queue,
)
from orchestrate.store.base import ReviewRecord, ReviewStatus

__all__ = [
    "APPROVERS",
    "Default",
    "Escalate",
    "HumanReviewGate",
    "ReviewNotFoundError",
    "ReviewExpiredError",
    "ReviewOutcome",
    "ReviewPermissionError",
    "ReviewRecord",
    "ReviewStatus",
    "RouteTo",
    "Tier",
    "TieredGate",
    "approval",
    "review_queue",
]
