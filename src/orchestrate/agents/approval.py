"""Tool calls that need a person: an approver that parks the run on a review gate.

``Agent(..., approve=review_approver(roles=["support_lead"]))`` turns every call of a tool
marked ``requires_approval`` into a review item (payload: agent, tool, arguments). The
run parks, holding no worker, until a reviewer approves or rejects it; a rejected call is
reported to the model as not approved. The agent must run inside a run (a durable
function or a graph step), since parking needs one. Give the agent the run's context
(``agent.run(task, ctx=ctx)``): its turns are then durable steps, and after the decision
the run resumes at the call that waited, without asking the model again. (Without
``ctx`` the agent's turns run again on resume, so its model must be deterministic.)
The review is keyed by the call's step key and the hash of its arguments: a decision
holds for that exact call.
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
        from orchestrate._engine.state import current_run

        ctx = current_run.get()
        if ctx is None:
            raise DefinitionError(
                f"tool {call.tool!r} needs a person's approval, and asking one parks a run: "
                "run the agent inside a workflow (a durable function or a step)"
            )
        outcome = await ctx.review(
            {"agent": call.agent, "tool": call.tool, "args": dict(call.args)},
            gate=review_gate,
            key=f"{call.key}:{call.args_hash[:16]}" if call.key else None,
        )
        return bool(outcome.approved)

    approve.parks_run = True  # type: ignore[attr-defined]  # asked outside the agent's steps (it parks)
    return approve
