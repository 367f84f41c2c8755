"""Tool calls that need a person: an approver that parks the run on a review gate.

``Agent(..., approve=review_approver(roles=["support_lead"]))`` turns every call of a tool
marked ``requires_approval`` into a review item (payload: agent, tool, arguments). The
run parks, holding no worker, until a reviewer approves or rejects it; a rejected call is
reported to the model as not approved. The agent must run inside a run (a durable
function or a graph step), since parking needs one. After the decision the run resumes
and the agent's turn runs again; the review, already decided, answers at once — so give
the agent a deterministic model, or make its turn a step of its own.
"""

from __future__ import annotations

from typing import Any

from orchestrate.agents.agent import Approver, ToolCall
from orchestrate.errors import DefinitionError
from orchestrate.review.gate import HumanReviewGate


def review_approver(gate: HumanReviewGate | None = None, **options: Any) -> Approver:
    """An :data:`~orchestrate.agents.Approver` that asks people through a review gate.

    Args:
        gate: the gate (roles, required approvals, SLA...); or give its options as keywords.
    """
    review_gate = gate if gate is not None else HumanReviewGate(**options)

    async def approve(call: ToolCall) -> bool:
        from orchestrate._engine.context import current_run

        ctx = current_run.get()
        if ctx is None:
            raise DefinitionError(
                f"tool {call.tool!r} needs a person's approval, and asking one parks a run: "
                "run the agent inside a workflow (a durable function or a step)"
            )
        outcome = await ctx.review({"agent": call.agent, "tool": call.tool, "args": dict(call.args)}, gate=review_gate)
        return bool(outcome.approved)

    return approve
