"""Seed 000's loan pipeline, and the fraud model that went stale: caught this time.

    python examples/loans/main.py [--runs 1000] [--svg loans_drift.svg] [--seed 7]

"The fraud detection model was trained on 2022 data. Fraud patterns shifted in 2023. The
orchestrator kept passing data through the outdated model because it had no feedback
loop." Here the five steps (identity → income → credit → fraud check → risk) run on the
embedded SQLite store, and the fraud step's input distribution shifts mid-stream: 2023
applicants earn more, and a new fraud ring (new accounts, inflated incomes, amounts that
look modest next to them) slips past ``fraud_detector_v4``, which only knows 2022's
pattern (large amounts for the income).

A :class:`~orchestrate.observe.monitors.DriftMonitor` on the income the model sees (PSI
against the first 200 applications) is evaluated from the store by an
:class:`~orchestrate.observe.alerts.AlertEvaluator`, every 25 runs, as a worker does. Its
``action="review"``: from the moment the alert fires, every loan's fraud check goes to an
analyst before the risk step decides (the analyst knows the new pattern and declines those
loans). The team ships ``fraud_detector_v5``, trained on 2023 data, and re-baselines the
monitor on the new normal; the alert resolves once a fresh window scores below the
threshold, the fraud team acknowledges it, and loans flow straight through again. Each
fraud-check record carries its drift score (``client.step_results("fraud_check")``),
which the chart plots. Everything is scripted and offline; the numbers are deterministic
for a seed.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from loans_plot import Marks, drift_svg  # next to this file

from orchestrate import Client, RunStatus, Step, Workflow
from orchestrate.observe import configure_logging
from orchestrate.observe.alerts import AlertEvaluator, AlertRecord
from orchestrate.observe.drift import Drift
from orchestrate.observe.monitors import DriftMonitor

SHIFT_AT = 450
"""The run from which applications follow 2023's patterns."""
RETRAIN_AFTER = 200
"""Runs between the alert and the new model with the re-baselined monitor."""
EVERY = 25
"""Runs between the evaluator's passes (a worker's ``--monitor-interval``)."""
DRIFT = Drift("psi", 0.25, reference=200, window=150, every=25)
MONITOR = DriftMonitor("fraud_check", DRIFT, field="features.income", workflow="loans", action="review")


# --- scripted components --------------------------------------------------------------------


@dataclass(frozen=True)
class FraudModel:
    """A scripted fraud model: the amount against the income; v5 also knows 2023's new accounts."""

    name: str
    knows_new_accounts: bool = False

    def assess(self, application: dict[str, Any]) -> dict[str, Any]:
        ratio = application["amount"] / application["income"]
        score = min(1.0, max(0.0, (ratio - 0.15) / 0.6))
        if self.knows_new_accounts and application["account_age_days"] < 180 and ratio > 0.3:
            score = max(score, 0.9)
        return {
            "applicant": application["applicant"],
            "model": self.name,
            "score": round(score, 4),
            "decision": "decline" if score >= 0.6 else "approve",
            "confidence": round(min(0.99, 0.55 + abs(score - 0.6)), 3),
            "credit_score": application["credit_score"],
            "features": {k: application[k] for k in ("income", "amount", "account_age_days")},
        }


MODEL = {"current": FraudModel("fraud_detector_v4")}


def applications(seed: int, runs: int) -> list[dict[str, Any]]:
    """The stream: 2022's applicants until :data:`SHIFT_AT`, 2023's after (with a new fraud ring)."""
    rng = random.Random(seed)
    out = []
    for i in range(runs):
        later = i >= SHIFT_AT
        fraud = rng.random() < (0.08 if later else 0.04)
        if fraud and later:  # synthetic identities: new accounts, inflated incomes
            income, amount, age = rng.gauss(115_000, 10_000), rng.gauss(48_000, 6_000), rng.gauss(40, 20)
        elif fraud:  # 2022: large amounts for the income
            income, amount, age = rng.gauss(55_000, 10_000), rng.gauss(42_000, 5_000), rng.gauss(900, 300)
        else:
            income = rng.gauss(72_000 if later else 60_000, 14_000 if later else 12_000)
            amount, age = rng.gauss(20_000 if later else 18_000, 6_000), rng.gauss(2_000, 600)
        out.append(
            {
                "applicant": f"A-{i:05d}",
                "income": round(max(income, 15_000.0), 2),
                "amount": round(max(amount, 1_000.0), 2),
                "account_age_days": max(int(age), 1),
                "credit_score": int(min(850, max(300, rng.gauss(690, 60)))),
                "fraud": fraud,  # the truth, known later (the feedback loop); no step reads it
            }
        )
    return out


def analyst_declines(check: dict[str, Any]) -> bool:
    """The fraud analyst's rule for a loan routed to her: 2023's ring is new accounts asking for a lot."""
    features = check["features"]
    return bool(features["account_age_days"] < 180 and features["amount"] / features["income"] > 0.3)


# --- the workflow ---------------------------------------------------------------------------


def identity(application: dict[str, Any]) -> dict[str, Any]:
    return {**application, "identity": "verified"}


def income(application: dict[str, Any]) -> dict[str, Any]:
    return {**application, "income_verified": True}


def credit(application: dict[str, Any]) -> dict[str, Any]:
    return {**application, "credit_band": "prime" if application["credit_score"] >= 660 else "subprime"}


def fraud_check(application: dict[str, Any]) -> dict[str, Any]:
    return MODEL["current"].assess(application)


def risk(check: dict[str, Any]) -> dict[str, Any]:
    if check["decision"] == "decline":
        decision, reason = "declined", "fraud"
    elif check["credit_score"] < 580:
        decision, reason = "declined", "credit"
    else:
        decision, reason = "approved", "risk within limits"
    return {"applicant": check["applicant"], "decision": decision, "reason": reason}


loans = Workflow(
    "loans",
    [
        Step("identity", identity),
        Step("income", income),
        Step("credit", credit),
        Step("fraud_check", fraud_check),
        Step("risk", risk),
    ],
    version="1",
)


# --- the simulation -------------------------------------------------------------------------


@dataclass
class Report:
    """What happened, in runs."""

    runs: int
    shift_at: int = SHIFT_AT
    fired_at: int | None = None
    fired: AlertRecord | None = None
    retrained_at: int | None = None
    resolved_at: int | None = None
    reviewed: int = 0
    frauds_reviewed: int = 0
    caught_by_analyst: int = 0
    missed_before_alert: int = 0
    missed_after_resolved: int = 0
    frauds_after_resolved: int = 0
    points: list[tuple[int, float]] = field(default_factory=list)

    def lines(self) -> list[str]:
        """The report, a line a fact."""
        out = [f"loans: {self.runs} runs; applications follow 2023's patterns from run {self.shift_at}"]
        if self.fired is None or self.fired_at is None:
            return [*out, "no drift alert fired"]
        out.append(
            f"drift alert {self.fired.alert_id} fired at run {self.fired_at} "
            f"({self.fired_at - self.shift_at} runs after the shift): {self.fired.reason}"
        )
        out.append(f"frauds fraud_detector_v4 let through before the alert: {self.missed_before_alert}")
        out.append(
            f"loans routed to an analyst while the alert held: {self.reviewed}; frauds she caught: "
            f"{self.caught_by_analyst} of {self.frauds_reviewed}"
        )
        if self.retrained_at is not None:
            out.append(f"fraud_detector_v5 deployed and the monitor re-baselined at run {self.retrained_at}")
        if self.resolved_at is not None:
            out.append(
                f"alert resolved at run {self.resolved_at}; frauds let through since: "
                f"{self.missed_after_resolved} of {self.frauds_after_resolved}"
            )
        return out


async def simulate(store_url: str, *, runs: int = 1000, seed: int = 7) -> Report:
    """Run the stream through the workflow, the evaluator and the analyst; return what happened."""
    MODEL["current"] = FraudModel("fraud_detector_v4")
    report = Report(runs=runs)
    stream = applications(seed, runs)
    async with Client(store_url, workflows=[loans]) as client:
        evaluator = AlertEvaluator(client.store, [MONITOR], sinks=[])
        diversions = evaluator.attach(client.engine, ttl_seconds=3600.0)  # read again after each pass
        detector_name = MONITOR.name
        for i, application in enumerate(stream):
            run_id = f"loan-{i:05d}"
            record = await client.run("loans", application, run_id=run_id)
            if record.status is RunStatus.WAITING:  # the alert's action: the fraud check goes to a person
                (item,) = await client.list_reviews(run_id=run_id)
                report.reviewed += 1
                report.frauds_reviewed += application["fraud"]
                if analyst_declines(item.payload):
                    report.caught_by_analyst += application["fraud"]
                    await client.edit(item.review_id, {**item.payload, "decision": "decline"}, by="fraud-analyst")
                else:
                    await client.approve(item.review_id, by="fraud-analyst")
                record = await client.resume(run_id)
            approved = record.output["decision"] == "approved" if record.output else False
            if application["fraud"] and approved and i >= SHIFT_AT:
                if report.fired_at is None:
                    report.missed_before_alert += 1
                elif report.resolved_at is not None:
                    report.missed_after_resolved += 1
            if application["fraud"] and report.resolved_at is not None:
                report.frauds_after_resolved += 1
            if (i + 1) % EVERY:
                continue
            for alert in await evaluator.evaluate():
                if alert.state == "firing" and report.fired is None:
                    report.fired, report.fired_at = alert, i + 1
                elif alert.state == "resolved":  # the fraud team takes it: loans flow straight through again
                    report.resolved_at = i + 1
                    await client.acknowledge_alert(alert.alert_id, by="fraud-team")
            diversions.invalidate()
            if report.fired_at is not None and report.retrained_at is None and i + 1 >= report.fired_at + RETRAIN_AFTER:
                MODEL["current"] = FraudModel("fraud_detector_v5", knows_new_accounts=True)
                evaluator.detectors.detector(detector_name, workflow="loans").rebaseline()
                report.retrained_at = i + 1
        results = await client.step_results("fraud_check", last=runs * 2, workflow="loans")
    index = {f"loan-{i:05d}": i for i in range(runs)}
    report.points = sorted(
        (index[r.run_id], r.drift_score)
        for r in results
        if r.step_key == "fraud_check" and r.drift_score is not None and r.run_id in index
    )
    return report


def main(argv: list[str] | None = None) -> Report:
    """Run the example, print the report and write the chart."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--svg", type=Path, default=Path("loans_drift.svg"), help="Where the chart goes.")
    args = parser.parse_args(argv)
    configure_logging("error")  # the report says what happened; each diverted step logs a warning
    with tempfile.TemporaryDirectory() as tmp:
        report = asyncio.run(simulate(f"sqlite:///{Path(tmp) / 'loans.db'}", runs=args.runs, seed=args.seed))
    marks = Marks(
        runs=report.runs,
        threshold=DRIFT.threshold,
        shift_at=report.shift_at,
        fired_at=report.fired_at,
        resolved_at=report.resolved_at,
        rebaselined_at=report.retrained_at,
    )
    args.svg.write_text(drift_svg(report.points, marks, title="Loans: the fraud step's input drift (PSI on income)"))
    for line in report.lines():
        print(line)
    print(f"chart: {args.svg}")
    return report


if __name__ == "__main__":
    main()
