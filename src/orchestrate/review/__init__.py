"""People in the loop: review gates that park a run until a person decides."""

from __future__ import annotations

from orchestrate.review.gate import APPROVERS, HumanReviewGate, approval

__all__ = ["APPROVERS", "HumanReviewGate", "approval"]
