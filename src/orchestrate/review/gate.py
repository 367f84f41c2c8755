"""``HumanReviewGate``: park a run after a step until a person approves, edits or rejects.

The run waits (status ``waiting``, holding no worker) for the signal ``review:<step>``;
``Client.decide(run_id, step, approved=..., payload=..., reason=...)`` delivers it. An
approval continues with the step's output, or with the edited ``payload``; a rejection
fails the run with :class:`~orchestrate.errors.RejectedError`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from orchestrate.errors import DefinitionError
from orchestrate.policies import Seconds, to_seconds

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class HumanReviewGate:
    """A review gate on a step's output.

    Args:
        roles: roles allowed to decide (empty: anyone).
        required_approvals: roles that must each approve (e.g. ``["medical_reviewer",
            "quality_assurance"]``).
        timeout: seconds to wait for a decision; ``None`` waits indefinitely.
        escalate_on_timeout: on timeout, escalate instead of failing the run.
        priority: ``"low"``, ``"normal"``, ``"high"`` or ``"urgent"``.
    """

    roles: tuple[str, ...] = ()
    required_approvals: tuple[str, ...] = ()
    timeout: float | None = None
    escalate_on_timeout: bool = False
    priority: str = "normal"

    def __init__(
        self,
        *,
        roles: Sequence[str] = (),
        required_approvals: Sequence[str] = (),
        timeout: Seconds | None = None,
        escalate_on_timeout: bool = False,
        priority: str = "normal",
    ) -> None:
        if isinstance(roles, str) or isinstance(required_approvals, str):
            raise DefinitionError("HumanReviewGate roles and required_approvals are lists of role names")
        if priority not in ("low", "normal", "high", "urgent"):
            raise DefinitionError(f"HumanReviewGate priority must be low/normal/high/urgent, got {priority!r}")
        object.__setattr__(self, "roles", tuple(roles))
        object.__setattr__(self, "required_approvals", tuple(required_approvals))
        object.__setattr__(self, "timeout", to_seconds(timeout, what="HumanReviewGate timeout"))
        object.__setattr__(self, "escalate_on_timeout", escalate_on_timeout)
        object.__setattr__(self, "priority", priority)


APPROVERS: dict[str, Callable[..., Any]] = {}
"""Approval handlers by role, registered with :func:`approval`."""


def approval(*, role: str) -> Callable[[F], F]:
    """Register ``fn`` as the approval handler of ``role``::

    @approval(role="medical_reviewer")
    def reviewer_approve(diagnosis: dict) -> bool: ...
    """
    if not isinstance(role, str) or not role:
        raise DefinitionError("approval(role=...) needs a role name")

    def register(fn: F) -> F:
        APPROVERS[role] = fn
        fn.__orchestrate_role__ = role  # type: ignore[attr-defined]
        return fn

    return register
