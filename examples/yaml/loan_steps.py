"""Scripted steps of ``loans.yaml``: a loan application checked, scored and reviewed.

Deterministic stand-ins for a bureau, a fraud model and a scoring model, so that the
workflow runs offline. The YAML file names them by import path (``loan_steps:identity``);
this module sits next to it.
"""

from __future__ import annotations

from typing import Any


def identity(application: dict[str, Any]) -> dict[str, Any]:
    """The applicant is who they say: a name and an id are given."""
    return {"verified": bool(application.get("name")) and bool(application.get("id"))}


def fraud_check(application: dict[str, Any]) -> dict[str, Any]:
    """A fraud score (a scripted model: large amounts to new customers look risky)."""
    amount = float(application.get("amount", 0))
    score = 0.9 if amount > 50_000 and application.get("new_customer") else 0.1
    return {"score": score, "flagged": score > 0.5}


def documents_of(application: dict[str, Any]) -> list[dict[str, Any]]:
    """The payslips and statements attached to the application."""
    return list(application.get("documents") or [])


def income_of(document: dict[str, Any]) -> float:
    """The yearly income one payslip or statement shows."""
    return float(document.get("monthly", 0)) * 12


def score(value: list[float] | dict[str, Any]) -> dict[str, Any]:
    """A credit score from the incomes, and the model's confidence in it.

    The loop calls it first with the incomes, then with its own last answer: each pass
    looks again and is more confident (a scripted stand-in for a model that re-checks).
    """
    previous = value if isinstance(value, dict) else {"incomes": value, "passes": 0}
    incomes = previous["incomes"] or [0.0]
    passes = previous["passes"] + 1
    income = sum(incomes) / len(incomes)
    return {
        "incomes": incomes,
        "passes": passes,
        "score": round(min(1.0, income / 100_000), 3),
        "confidence": round(min(1.0, 0.6 + 0.2 * passes), 2),
    }


def decide(scored: dict[str, Any]) -> dict[str, Any]:
    """Approve above 0.6, else decline; a credit officer reviews it."""
    return {"decision": "approve" if scored["score"] > 0.6 else "decline", "score": scored["score"]}
