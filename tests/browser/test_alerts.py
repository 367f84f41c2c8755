"""Alerts & quality in a real browser: an alert a monitor's evaluation stored appears, an
operator acknowledges it from the page and its state changes in the store; a viewer sees it
without the action; a step's health is drawn per window; feedback is given on a run's page."""

from __future__ import annotations

from typing import Any

from orchestrate import Fallback, Step, Workflow
from orchestrate.observe.alerts import AlertEvaluator
from orchestrate.observe.monitors import Monitor, Threshold
from tests.browser.conftest import Browser, LiveServer
from tests.browser.test_dashboard import no_page_errors


def fraud_check(application: dict[str, Any]) -> dict[str, Any]:
    if application["model_down"]:
        raise TimeoutError("the fraud model did not answer")
    return {"decision": "approve", "confidence": application["confidence"]}


loans = Workflow(
    "loans", [Step("fraud_check", fraud_check, fallback=Fallback.value({"decision": "manual", "confidence": 0.5}))]
)
MONITOR = Monitor("fraud_check", "fallback_rate", Threshold(above=0.4), window=10, action="fallback")


def fire(server: LiveServer) -> tuple[list[str], str]:
    """Forty loans, the model down for most of the last fifteen, and the alert the monitor
    stores: the runs' ids and the alert's id."""

    async def go() -> tuple[list[str], str]:
        assert server.client is not None
        ids = []
        for i in range(40):
            application = {"model_down": i >= 25 and i % 4 != 0, "confidence": round(0.95 - 0.006 * i, 3)}
            ids.append((await server.client.run(loans, application)).run_id)
        evaluator = AlertEvaluator(server.client.store, [MONITOR], sinks=[])
        (alert,) = await evaluator.evaluate()
        return ids, alert.alert_id

    found: tuple[list[str], str] = server.call(go())
    return found


def alert_state(server: LiveServer, alert_id: str) -> tuple[str, str | None]:
    assert server.client is not None
    (alert,) = [a for a in server.call(server.client.alerts()) if a.alert_id == alert_id]
    return alert.state.value, alert.acked_by


def test_an_operator_acknowledges_a_firing_alert_from_the_page(server: LiveServer, browser: Browser) -> None:
    _, alert_id = fire(server)
    browser.sign_in(server, "ops", "/#/alerts?window=10")
    row = f'#alerts tr[data-alert-id="{alert_id}"]'
    browser.text_in(f"{row} .status", "firing")
    browser.text_in(row, "fraud_check.fallback_rate")
    browser.text_in(row, "fallback (holding)")
    # The step of the newest alert is charted, one point per window of ten executions.
    browser.text_in("#quality-title", "Quality of fraud_check")
    assert len(browser.all("#chart-fallbacks svg circle")) == 4
    points = [p.get_attribute("textContent") for p in browser.all("#chart-fallbacks svg circle title")]
    assert points[0] == "fallbacks, window 1: 0%" and points[-1] != points[0]
    assert len(browser.all("#chart-confidence svg circle")) == 4
    assert len(browser.all("#chart-latency svg path.line")) == 2  # p50 and p95
    browser.screenshot("alerts")
    browser.click(f"{row} button.ack")
    browser.text_in(f"{row} .status", "acknowledged")
    browser.text_in(row, "acknowledged by ops")
    assert alert_state(server, alert_id) == ("acknowledged", "ops")
    assert not browser.all(f"{row} button.ack")
    no_page_errors(browser)


def test_a_viewer_sees_alerts_without_the_action(server: LiveServer, browser: Browser) -> None:
    _, alert_id = fire(server)
    browser.sign_in(server, "vic", "/#/alerts?state=firing")
    browser.text_in(f'#alerts tr[data-alert-id="{alert_id}"] .status', "firing")
    assert not browser.all("#alerts button.ack")
    assert alert_state(server, alert_id) == ("firing", None)
    no_page_errors(browser)


def test_feedback_is_given_on_the_run_page(server: LiveServer, browser: Browser) -> None:
    ids, _ = fire(server)
    browser.sign_in(server, "ops", f"/#/runs/{ids[0]}")
    browser.text_in("#feedback-list", "No feedback on this run yet.")
    browser.visible("#feedback-outcome").send_keys("repaid")
    browser.visible("#feedback-score").send_keys("1")
    browser.click("#feedback-form button[type=submit]")
    browser.text_in("#feedback", "repaid")
    browser.text_in("#feedback", "ops")
    assert server.client is not None
    (entry,) = server.call(server.client.list_feedback(run_id=ids[0]))
    assert (entry.by, entry.outcome, entry.score) == ("ops", "repaid", 1.0)
    no_page_errors(browser)
