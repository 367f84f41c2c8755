"""The dashboard in a real browser, against the real server: sign-in, runs, a run's timeline,
the review inbox (approve, reject, edit) resuming runs live, replay from the dead-letter
queue, cost, and a cross-site POST refused."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select

from orchestrate.types import RunStatus
from tests.browser.apps import batch, payout, quote, shipment, support, urgent
from tests.browser.conftest import Browser, LiveServer

TICKET = {"text": "where is my refund for order #4829?"}


def start(server: LiveServer, workflow: Any, value: Any) -> str:
    """Start a run and let the server's worker drive it until it parks or ends."""

    async def go() -> str:
        run_id = await server.client.start(workflow, value)
        run = await server.client.resume(run_id)
        # The server's worker may have claimed it first: wait until it parks or ends.
        while run.status in (RunStatus.PENDING, RunStatus.RUNNING):
            await asyncio.sleep(0.02)
            run = await server.client.get(run_id)
        return str(run_id)

    return str(server.call(go()))


def status_of(server: LiveServer, run_id: str) -> RunStatus:
    return server.call(server.client.get(run_id)).status


def output_of(server: LiveServer, run_id: str) -> Any:
    return server.call(server.client.get(run_id)).output


def no_page_errors(browser: Browser) -> None:
    """No script error and no Content-Security-Policy violation in the page's console."""
    bad = [
        message
        for message in browser.console_errors()
        if "Content Security Policy" in message or "Uncaught" in message or "SyntaxError" in message
    ]
    assert not bad, bad


def test_sign_in_refuses_a_bad_token_then_lists_and_filters_runs(server: LiveServer, browser: Browser) -> None:
    waiting = start(server, support, TICKET)
    dead = start(server, payout, {"order": "A-1", "card": "declined"})
    paid = start(server, payout, {"order": "A-2", "card": "visa"})
    assert status_of(server, dead) is RunStatus.DEAD

    browser.driver.get(server.url + "/")
    browser.screenshot("sign-in")
    browser.visible("#token").send_keys("not-a-token")
    browser.click("#sign-in button[type=submit]")
    browser.text_in("#sign-in .form-error", "not valid")

    browser.sign_in(server, "vic")
    browser.text_in("#who-name", "vic")
    assert not browser.all("#start-run")  # a viewer starts nothing
    browser.wait(lambda d: len(browser.all("#runs tr.run-row")) == 3)
    rows = {r.get_attribute("data-run-id"): r.get_attribute("data-status") for r in browser.all("#runs tr.run-row")}
    assert rows == {waiting: "waiting", dead: "dead", paid: "succeeded"}

    Select(browser.find("#f-status")).select_by_value("dead")
    browser.wait(lambda d: [r.get_attribute("data-run-id") for r in browser.all("#runs tr.run-row")] == [dead])
    assert "status=dead" in browser.driver.current_url

    Select(browser.find("#f-status")).select_by_value("")
    search = browser.find("#f-q")
    search.send_keys(paid[:10] + "\n")
    browser.wait(lambda d: [r.get_attribute("data-run-id") for r in browser.all("#runs tr.run-row")] == [paid])

    # A viewer reads a run but is offered no action on it.
    browser.driver.get(f"{server.url}/#/runs/{dead}")
    browser.text_in(".actions", "Read-only")
    assert not browser.all(".actions button")
    no_page_errors(browser)


def test_runs_page_shows_status_changes_without_a_reload(server: LiveServer, browser: Browser) -> None:
    waiting = start(server, support, TICKET)
    browser.sign_in(server, "ana")
    browser.find(f'#runs tr[data-run-id="{waiting}"][data-status="waiting"]')
    [item] = server.call(server.client.list_reviews(run_id=waiting))
    server.call(server.client.approve(item.review_id, by="lee", role="support_lead"))
    browser.find(f'#runs tr[data-run-id="{waiting}"][data-status="succeeded"]')
    start(server, payout, {"order": "A-9", "card": "declined"})
    start(server, payout, {"order": "A-10", "card": "visa"})
    browser.wait(lambda d: len(browser.all("#runs tr.run-row")) == 3)
    browser.screenshot("runs")

    # An operator starts a run from the page; the same idempotency key never starts a second.
    started = []
    for _ in range(2):
        browser.driver.get(f"{server.url}/#/runs")
        browser.click("#start-run")
        Select(browser.visible("#start-workflow")).select_by_value("payout")
        editor = browser.find("#start-input")
        editor.clear()
        editor.send_keys('{"order": "A-11", "card": "visa"}')
        browser.find("#start-key").send_keys("order-A-11")
        browser.click("#start-go")
        browser.wait(lambda d: "#/runs/" in d.current_url)
        browser.text_in("#run-status", "succeeded")
        started.append(browser.driver.current_url.rsplit("/", 1)[-1])
    assert started[0] == started[1]
    assert output_of(server, started[0]) == "receipt for A-11"
    no_page_errors(browser)


def test_a_timeline_shows_steps_attempts_and_the_wait_for_people(server: LiveServer, browser: Browser) -> None:
    dead = start(server, payout, {"order": "A-1", "card": "declined"})
    browser.sign_in(server, "ana", f"/#/runs/{dead}")
    browser.text_in("#run-status", "dead")
    rows = {g.get_attribute("data-step"): g for g in browser.all("svg.timeline g.step-row")}
    assert list(rows) == ["check", "charge"]
    assert rows["check"].find_element(By.CSS_SELECTOR, "rect.bar").get_attribute("class").split()[-1] == "st-succeeded"
    assert "st-failed" in rows["charge"].find_element(By.CSS_SELECTOR, "rect.bar").get_attribute("class")
    assert "2 attempts" in rows["charge"].text
    assert rows["charge"].find_elements(By.CSS_SELECTOR, ".mark.retry"), "the failed attempt is marked"
    # The graph shows the path: check and charge taken, receipt not reached.
    taken = {n.get_attribute("data-step") for n in browser.all("svg.graph g.node.taken")}
    assert {"check", "charge"} <= taken and "receipt" not in taken
    rows["charge"].find_element(By.CSS_SELECTOR, "rect.bar").click()
    detail = browser.visible('[data-step-detail="charge"]')
    assert "card declined for order A-1" in detail.text
    assert "attempt 1: ValueError" in detail.text

    waiting = start(server, support, TICKET)
    browser.driver.get(f"{server.url}/#/runs/{waiting}")
    browser.text_in("#run-status", "waiting")
    # The timeline of a waiting run is drawn again as its clock moves: read it in a wait.
    browser.wait(
        lambda d: (
            "waiting for people"
            in d.find_element(By.CSS_SELECTOR, 'svg.timeline rect[data-kind="human-wait"] title').get_attribute(
                "textContent"
            )
        )
    )
    browser.text_in(".run-page", "small-triage")  # the model's usage and cost
    no_page_errors(browser)


def test_a_timeline_shows_timeouts_the_fallback_and_its_flag(server: LiveServer, browser: Browser) -> None:
    run_id = start(server, quote, {"order": "Q-1"})
    assert output_of(server, run_id) == {"price": 12.5, "estimated": True}
    browser.sign_in(server, "ana", f"/#/runs/{run_id}")
    browser.text_in("#run-status", "succeeded")
    row = browser.find('svg.timeline g.step-row[data-step="price"]')
    for flag in ("2 attempts", "timed out", "fallback: value", "flag: pricing_review"):
        assert flag in row.text, (flag, row.text)
    assert "fallback" in row.find_element(By.CSS_SELECTOR, "rect.bar").get_attribute("class").split()
    assert len(row.find_elements(By.CSS_SELECTOR, ".mark.retry")) == 1  # the retry before the fallback
    assert row.find_elements(By.CSS_SELECTOR, ".mark.fallback")
    browser.text_in('#steps tr[data-step-row="price"]', "flag pricing_review")
    # The flag put an item in the pricing_review queue: people see it and close it, without edits.
    browser.driver.get(f"{server.url}/#/reviews")
    browser.text_in("#review-detail", "pricing_review")
    assert browser.all("#review-detail #approve") and not browser.all("#review-detail #edit")
    no_page_errors(browser)


def test_a_timeline_of_many_steps_draws_the_first_rows_then_all(server: LiveServer, browser: Browser) -> None:
    run_id = start(server, batch, [f"B-{i}" for i in range(205)])
    assert output_of(server, run_id) == 205
    browser.sign_in(server, "vic", f"/#/runs/{run_id}")
    browser.text_in("#timeline", "The first 200 of 205 steps")
    assert len(browser.all("svg.timeline g.step-row")) == 200
    browser.click("#timeline-all")
    browser.wait(lambda d: len(browser.all("svg.timeline g.step-row")) == 205)
    no_page_errors(browser)


def open_inbox_beside_run(server: LiveServer, browser: Browser, run_id: str) -> tuple[str, str]:
    """The run's page in one tab and the inbox in another; returns both tabs' handles."""
    browser.sign_in(server, "lee", f"/#/runs/{run_id}")
    browser.text_in("#run-status", "waiting")
    run_tab = browser.driver.current_window_handle
    browser.driver.switch_to.new_window("tab")
    browser.driver.get(f"{server.url}/#/reviews")
    browser.find("#inbox li[data-review-id].selected")
    return run_tab, browser.driver.current_window_handle


@pytest.mark.parametrize("server", ["sqlite", "postgres"], indirect=True)
def test_approve_from_the_inbox_resumes_the_run_live(server: LiveServer, browser: Browser) -> None:
    first = start(server, support, TICKET)
    start(server, support, {"text": "and my other order?"})
    run_tab, inbox_tab = open_inbox_beside_run(server, browser, first)
    items = [li.get_attribute("data-review-id") for li in browser.all("#inbox li.inbox-item")]
    assert len(items) == 2
    browser.text_in("#inbox li.selected .sla", "left")
    browser.keys("?")
    browser.text_in("#shortcuts", "approve")
    browser.keys("\ue00c")  # Escape closes the help
    browser.wait(lambda d: not browser.all(".backdrop"))
    browser.keys("j")
    browser.wait(lambda d: browser.find("#inbox li.selected").get_attribute("data-review-id") == items[1])
    browser.keys("k")
    browser.wait(lambda d: browser.find("#inbox li.selected").get_attribute("data-review-id") == items[0])
    # Move to the item of the run open in the other tab.
    [mine] = server.call(server.client.list_reviews(run_id=first))
    for _ in range(items.index(mine.review_id)):
        browser.keys("j")
    browser.wait(lambda d: browser.find("#inbox li.selected").get_attribute("data-review-id") == mine.review_id)
    browser.text_in("#review-detail", mine.review_id)
    selected_run = first
    browser.screenshot("inbox")

    browser.keys("a")
    browser.visible("#approve-comment").send_keys("checked the order")
    browser.click("#approve-go")
    browser.wait(lambda d: len(browser.all("#inbox li.inbox-item")) == 1)
    browser.wait(lambda d: status_of(server, selected_run) is RunStatus.SUCCEEDED)  # the worker resumed it

    browser.driver.switch_to.window(run_tab)
    browser.text_in("#run-status", "succeeded")  # the page followed the run, no reload
    browser.text_in(".run-page", "sent: We refunded your order #4829.")
    browser.screenshot("run")
    [decided] = server.call(server.client.list_reviews(run_id=selected_run, status="approved"))
    assert decided.decision is not None and decided.decision["by"] == "lee"
    assert decided.approvals[0]["comment"] == "checked the order"
    no_page_errors(browser)
    browser.driver.switch_to.window(inbox_tab)
    no_page_errors(browser)


def test_reject_needs_a_reason_and_fails_the_run_live(server: LiveServer, browser: Browser) -> None:
    run_id = start(server, support, TICKET)
    run_tab, _ = open_inbox_beside_run(server, browser, run_id)
    browser.click("#run-context summary")  # what the run was given, before deciding
    browser.text_in("#run-context", TICKET["text"])
    browser.text_in("#run-context", "classify")
    browser.keys("r")
    browser.visible("#reject-reason")
    browser.click("#reject-go")
    browser.text_in(".dialog .form-error", "needs a reason")
    assert status_of(server, run_id) is RunStatus.WAITING
    browser.find("#reject-reason").send_keys("the order was never paid")
    browser.click("#reject-go")
    browser.text_in("#inbox", "Nothing waits")
    browser.driver.switch_to.window(run_tab)
    browser.text_in("#run-status", "failed")
    browser.text_in(".run-page", "RejectedError")
    browser.driver.get(f"{server.url}/#/reviews?status=rejected")
    browser.text_in("#decision", "the order was never paid")
    browser.text_in("#decision", "lee")
    no_page_errors(browser)


def test_edit_validates_shows_the_diff_and_the_run_goes_on_with_the_edit(server: LiveServer, browser: Browser) -> None:
    run_id = start(server, support, TICKET)
    run_tab, _ = open_inbox_beside_run(server, browser, run_id)
    browser.keys("e")
    editor = browser.visible("#payload-json")
    editor.clear()
    editor.send_keys('{"reply": "oops"')
    browser.click("#edit-go")
    browser.text_in(".dialog .form-errors", "not valid JSON")
    assert status_of(server, run_id) is RunStatus.WAITING
    edited = {"intent": "refund", "reply": "We refunded 42.50 to your card.", "amount": 42.5, "confidence": 0.62}
    editor.clear()
    editor.send_keys(json.dumps(edited))
    browser.text_in("#edit-diff", "We refunded 42.50 to your card.")
    changed = [td.text for td in browser.all("#edit-diff td.mono")]
    assert changed == ["reply"]
    browser.screenshot("review-edit")
    browser.click("#edit-go")
    browser.driver.switch_to.window(run_tab)
    browser.text_in("#run-status", "succeeded")
    assert output_of(server, run_id) == "sent: We refunded 42.50 to your card. (42.5)"
    no_page_errors(browser)


@pytest.mark.parametrize("server", ["sqlite", "postgres"], indirect=True)
def test_replay_a_dead_run_from_a_step_with_an_edited_input(server: LiveServer, browser: Browser) -> None:
    dead = start(server, payout, {"order": "A-7", "card": "declined"})
    browser.sign_in(server, "ops", "/#/dlq")
    card = browser.find(f'.dlq-item[data-run-id="{dead}"]')
    assert "card declined for order A-7" in card.text
    card.find_element(By.XPATH, ".//button[contains(., 'Traceback')]").click()
    browser.text_in(f'.dlq-item[data-run-id="{dead}"] .dlq-detail', "A-7")
    traceback = browser.find(f'.dlq-item[data-run-id="{dead}"] pre.traceback').text
    assert "Traceback" in traceback and "in charge" in traceback and "ValueError: card declined" in traceback
    browser.screenshot("dlq")
    card.find_element(By.CSS_SELECTOR, "button.replay").click()
    assert Select(browser.visible("#replay-step")).first_selected_option.get_attribute("value") == "charge"
    browser.click("#replay-edit")
    editor = browser.visible("#replay-input")
    editor.clear()
    editor.send_keys(json.dumps({"order": "A-7", "card": "visa", "checked": True}))
    browser.click("#replay-go")
    browser.wait(lambda d: "#/runs/" in d.current_url and dead not in d.current_url)
    new_id = browser.driver.current_url.rsplit("/", 1)[-1]
    browser.text_in("#run-status", "succeeded")
    assert output_of(server, new_id) == "receipt for A-7"
    replayed = server.call(server.client.get(new_id))
    assert replayed.parent_run_id == dead
    browser.driver.get(f"{server.url}/#/dlq")
    browser.text_in("#dlq", "empty")
    no_page_errors(browser)


def test_cost_per_workflow_and_model(server: LiveServer, browser: Browser) -> None:
    start(server, support, TICKET)
    start(server, support, {"text": "second"})
    start(server, payout, {"order": "A-3", "card": "visa"})
    browser.sign_in(server, "vic", "/#/cost")
    browser.text_in("#cost-total", "$0.00084")
    bars = browser.all("#chart-workflows svg title")
    assert [b.get_attribute("textContent") for b in bars][:2] == ["support_reply: $0.00084", "payout: $0"]
    assert "small-triage" in browser.find("#chart-models").text
    # Over time: today's column holds the day's cost, per model.
    [today] = [t.get_attribute("textContent") for t in browser.all("#chart-time svg rect title")]
    assert today.endswith("small-triage: $0.00084"), today
    browser.screenshot("cost")
    no_page_errors(browser)


def test_an_escalation_reaches_the_supervisors_inbox_live(server: LiveServer, browser: Browser) -> None:
    browser.sign_in(server, "sam", "/#/reviews")
    browser.text_in("#inbox", "Nothing waits")
    run_id = start(server, urgent, TICKET)
    # Nobody answers within the gate's second: the worker escalates, and the inbox shows it.
    escalated = '#inbox li.inbox-item.p-urgent[data-level="1"]'
    # The list is drawn again as events come: read it in a wait.
    browser.wait(lambda d: {"escalated", "supervisor"} <= set(d.find_element(By.CSS_SELECTOR, escalated).text.split()))
    # Another team's item is listed too; "only items I may decide" leaves it out.
    start(server, support, TICKET)
    browser.wait(lambda d: len(browser.all("#inbox li.inbox-item")) == 2)
    browser.click("#mine-only")
    browser.wait(lambda d: [li.get_attribute("data-level") for li in browser.all("#inbox li.inbox-item")] == ["1"])
    browser.text_in("#review-detail", "level 1")
    browser.text_in("#review-detail", run_id[:12])
    browser.keys("a")
    browser.click("#approve-go")
    browser.text_in("#inbox", "Nothing waits")
    browser.wait(lambda d: status_of(server, run_id) is RunStatus.SUCCEEDED)
    no_page_errors(browser)


def test_an_operator_sends_the_signal_a_run_waits_for(server: LiveServer, browser: Browser) -> None:
    run_id = start(server, shipment, {"order": "A-12"})
    browser.sign_in(server, "ops", f"/#/runs/{run_id}")
    browser.text_in("#run-status", "waiting")
    browser.text_in(".run-head", "waiting on signal:carrier_pickup")
    browser.click(".actions button.primary")
    assert browser.visible("#signal-key").get_attribute("value") == "carrier_pickup"
    editor = browser.find("#signal-value")
    editor.clear()
    editor.send_keys('{"at": "Memphis hub"}')
    browser.click("#signal-go")
    browser.text_in("#run-status", "succeeded")
    assert output_of(server, run_id) == "order A-12 picked up at Memphis hub"
    no_page_errors(browser)


def test_the_edit_form_follows_a_json_schema(server: LiveServer, browser: Browser) -> None:
    browser.sign_in(server, "lee", "/#/reviews")
    schema = {
        "type": "object",
        "required": ["reply", "amount"],
        "properties": {
            "reply": {"type": "string", "minLength": 5, "title": "Reply"},
            "amount": {"type": "number", "minimum": 0, "maximum": 100},
            "tier": {"enum": ["auto", "review", "senior"]},
            "urgent": {"type": "boolean"},
            "tags": {"type": "array", "items": {"type": "string"}},
        },
    }
    payload = {"reply": "We refunded you.", "amount": 42.5, "tier": "review", "urgent": False, "tags": [], "id": 7}
    first = browser.driver.execute_async_script(
        """const [schema, payload, done] = arguments;
        import("/ui/js/form.js").then((m) => {
          const form = m.schemaForm(schema, payload);
          form.el.id = "schema-form-under-test";
          document.getElementById("main").append(form.el);
          window.formUnderTest = form;
          done(form.read());
        });""",
        schema,
        payload,
    )
    assert first == {"ok": True, "value": payload}  # the form gives back what it was given
    amount = browser.find("#schema-form-under-test #field-amount")
    amount.clear()
    amount.send_keys("500")
    Select(browser.find("#schema-form-under-test #field-tier")).select_by_visible_text("senior")
    browser.find("#schema-form-under-test #field-urgent").click()
    refused = browser.driver.execute_script("return window.formUnderTest.read()")
    assert refused == {"ok": False}
    browser.text_in("#schema-form-under-test .field-error", "at most 100")
    amount.clear()
    amount.send_keys("50")
    tags = browser.find("#schema-form-under-test #field-tags")
    tags.clear()
    tags.send_keys('["refund", 4]')
    assert browser.driver.execute_script("return window.formUnderTest.read()") == {"ok": False}
    browser.text_in("#schema-form-under-test", "tags[1]: must be a string")
    tags.clear()
    tags.send_keys('["refund"]')
    accepted = browser.driver.execute_script("return window.formUnderTest.read()")
    assert accepted == {
        "ok": True,
        "value": {**payload, "amount": 50, "tier": "senior", "urgent": True, "tags": ["refund"]},
    }
    changes = browser.driver.execute_async_script(
        """const [before, after, done] = arguments;
        import("/ui/js/form.js").then((m) => done(m.diff(before, after)));""",
        payload,
        accepted["value"],
    )
    assert sorted(c["path"] for c in changes) == ["amount", "tags", "tier", "urgent"]
    no_page_errors(browser)


def test_no_page_shows_a_secret(server: LiveServer, browser: Browser) -> None:
    from orchestrate.models import Secret

    canary = Secret("canary-7f3a9c51e2d84b06", name="payments_key")
    # The secret's value is the order id: it is in the input, in a step's output and in the error.
    dead = start(server, payout, {"order": canary.reveal(), "card": "declined"})
    waiting = start(server, support, {"text": f"my key is {canary.reveal()}"})
    browser.sign_in(server, "ana")
    masked = []
    for fragment, ready, details in (
        ("#/runs", f'#runs tr[data-run-id="{dead}"]', None),
        (f"#/runs/{dead}", "#steps", "#steps tr.step-row"),
        (f"#/runs/{waiting}", "#steps", "#steps tr.step-row"),
        ("#/dlq", f'.dlq-item[data-run-id="{dead}"]', ".dlq-item .actions button.link"),
        ("#/reviews?status=all", "#review-detail .payload", None),
    ):
        browser.driver.get(f"{server.url}/{fragment}")
        browser.find(ready)
        if details:  # open what is folded: step outputs and errors, tracebacks and inputs
            for index in range(len(browser.all(details))):
                browser.all(details)[index].click()
            browser.find("tr.step-detail, .dlq-detail pre")
        page = browser.driver.page_source
        assert canary.reveal() not in page, fragment
        masked.append("[REDACTED:payments_key]" in page)
    assert all(masked[1:4]), masked  # where the value was, its mask is shown instead
    no_page_errors(browser)


class _Attacker(BaseHTTPRequestHandler):
    """Another site: its page posts a form to the dashboard's API with the reader's browser."""

    target = ""

    def do_GET(self) -> None:
        page = f"""<!doctype html><title>win a prize</title>
<form id="f" method="post" action="{self.target}" enctype="text/plain">
<input name='{{"reason":"' value='csrf"}}'></form>
<script>document.getElementById("f").submit()</script>"""
        body = page.encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def attacker() -> Iterator[ThreadingHTTPServer]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Attacker)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield httpd
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_a_post_without_the_csrf_token_is_refused(
    server: LiveServer, browser: Browser, attacker: ThreadingHTTPServer
) -> None:
    run_id = start(server, support, TICKET)
    browser.sign_in(server, "ana", f"/#/runs/{run_id}")
    browser.text_in("#run-status", "waiting")

    # Another origin (localhost is not 127.0.0.1) submits a form to the API: refused.
    _Attacker.target = f"{server.url}/api/v1/runs/{run_id}/cancel"
    browser.driver.get(f"http://localhost:{attacker.server_address[1]}/")
    browser.wait(lambda d: d.current_url.startswith(server.url))
    refused = browser.find("body").text
    assert '"status":401' in refused.replace(" ", "") or '"status":403' in refused.replace(" ", ""), refused
    assert status_of(server, run_id) is RunStatus.WAITING

    # The dashboard's own origin, with the session cookie but without the CSRF header: refused.
    browser.driver.get(f"{server.url}/#/runs/{run_id}")
    browser.text_in("#run-status", "waiting")
    answer = browser.driver.execute_async_script(
        """const done = arguments[arguments.length - 1];
        fetch(arguments[0], {method: "POST", headers: {"Content-Type": "application/json"}, body: "{}"})
          .then(async (r) => done({status: r.status, body: await r.text()}));""",
        f"/api/v1/runs/{run_id}/cancel",
    )
    assert answer["status"] == 403 and "CSRF" in answer["body"]
    assert status_of(server, run_id) is RunStatus.WAITING

    # The dashboard's cancel button sends the token: the same request goes through.
    browser.click(".actions button.danger")
    browser.visible("#cancel-reason").send_keys("customer withdrew")
    browser.click(".dialog button.danger")
    browser.text_in("#run-status", "cancelled")
    assert status_of(server, run_id) is RunStatus.CANCELLED
    no_page_errors(browser)
