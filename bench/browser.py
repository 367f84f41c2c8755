"""Decision → browser updated: how long a reviewer's decision takes to show on an open dashboard.

    python -m bench.browser [--decisions N] [--mode wake|poll]

The server is ``orchestrate serve``'s app on uvicorn in its own process (as in
:mod:`bench.server`), with its embedded worker, on a SQLite file, auth on. A headless
Chromium (Debian's, driven by Selenium and ``/usr/bin/chromedriver``) is signed in to the
dashboard and shows a run's page while the run waits at its gate. Then another client
posts ``POST /api/v1/reviews/{id}/approve``; the worker resumes the run, the run's event
stream delivers ``run_succeeded``, and the page redraws its status.

Each sample counts from just before the approval is sent to, in the page:

* **DOM**: a ``MutationObserver`` sees ``#run-status`` read ``succeeded``;
* **painted**: the first animation frame after that (the update is on screen).

Both clocks are the machine's wall clock (``time.time()`` here, ``Date.now()`` in the
page), so the figures are in whole milliseconds. ``--mode poll`` turns off the
in-process wake (the worker and the streams find the decision by polling), for comparison.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import sys
import tempfile
import time
from typing import Any

import httpx

from bench.server import Server, _pcts, _tokens

CHROMEDRIVER = os.environ.get("ORCHESTRATE_CHROMEDRIVER", "/usr/bin/chromedriver")
CHROMIUM = os.environ.get("ORCHESTRATE_CHROMIUM", "/usr/bin/chromium")
WAIT = 30.0

# Installed on the run's page: notes when the status first reads "succeeded" (DOM), then
# the next frame (painted). The page may replace #run-status as it redraws: the observer
# watches the whole body and looks the element up each time.
_WATCH = """
window.__seen = null; window.__painted = null;
const check = () => {
  const el = document.querySelector('#run-status');
  if (window.__seen === null && el && el.textContent.includes('succeeded')) {
    window.__seen = Date.now();
    requestAnimationFrame(() => { window.__painted = Date.now(); });
  }
};
if (window.__observer) window.__observer.disconnect();
window.__observer = new MutationObserver(check);
window.__observer.observe(document.body, {subtree: true, childList: true, characterData: true});
check();
"""


def _driver(profile: str) -> Any:
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--no-first-run",
        "--window-size=1360,900",
        f"--user-data-dir={profile}",
    ):
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)


def _wait(driver: Any, condition: Any) -> Any:
    from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
    from selenium.webdriver.support.ui import WebDriverWait

    ignored = (StaleElementReferenceException, NoSuchElementException)
    return WebDriverWait(driver, WAIT, poll_frequency=0.02, ignored_exceptions=ignored).until(condition)


def _status_is(text: str) -> Any:
    from selenium.webdriver.common.by import By

    return lambda d: text in d.find_element(By.CSS_SELECTOR, "#run-status").text


def _parked(http: httpx.Client, ops: dict[str, str], n: int) -> tuple[str, str]:
    """A run started through the API and parked at its gate: ``(run_id, review_id)``."""
    started = http.post("/api/v1/runs", json={"workflow": "reply", "input": f"t{n}"}, headers=ops)
    started.raise_for_status()
    run_id = started.json()["run_id"]
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        items = http.get("/api/v1/reviews", params={"run_id": run_id}, headers=ops).json()["items"]
        if items:
            return run_id, items[0]["review_id"]
        time.sleep(0.01)
    raise RuntimeError(f"run {run_id} did not reach its gate")


def measure(mode: str, decisions: int) -> tuple[list[float], list[float]]:
    """``decisions`` samples of (DOM updated, painted) in ms, one run each."""
    from selenium.webdriver.common.by import By

    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{tmp}/browser.db"
        tokens = asyncio.run(_tokens(url, ana=["operator", "viewer"], rev=["editor"]))
        ops = {"Authorization": f"Bearer {tokens['ana']}"}
        rev = {"Authorization": f"Bearer {tokens['rev']}"}
        profile = os.path.join(tmp, "chromium")
        with Server(url, mode=mode, worker=True) as server, httpx.Client(base_url=server.base, timeout=WAIT) as http:
            driver = _driver(profile)
            try:
                driver.get(server.base + "/")
                _wait(driver, lambda d: d.find_element(By.CSS_SELECTOR, "#token").is_displayed())
                driver.find_element(By.CSS_SELECTOR, "#token").send_keys(tokens["ana"])
                driver.find_element(By.CSS_SELECTOR, "#sign-in button[type=submit]").click()
                _wait(driver, lambda d: d.find_element(By.CSS_SELECTOR, "#nav").is_displayed())
                dom: list[float] = []
                painted: list[float] = []
                for n in range(decisions + 2):  # the first two warm the page and the server up
                    run_id, review_id = _parked(http, ops, n)
                    driver.get(f"{server.base}/#/runs/{run_id}")
                    _wait(driver, _status_is("waiting"))
                    time.sleep(0.15)  # let the page open its event stream and settle
                    driver.execute_script(_WATCH)
                    sent = time.time() * 1000
                    http.post(f"/api/v1/reviews/{review_id}/approve", json={}, headers=rev).raise_for_status()
                    seen, shown = _wait(
                        driver,
                        lambda d: (lambda v: v if v[1] is not None else False)(
                            d.execute_script("return [window.__seen, window.__painted];")
                        ),
                    )
                    if n >= 2:
                        dom.append(float(seen) - sent)
                        painted.append(float(shown) - sent)
            finally:
                driver.quit()
                shutil.rmtree(profile, ignore_errors=True)
    return dom, painted


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print its table."""
    parser = argparse.ArgumentParser(prog="python -m bench.browser", description=__doc__.split("\n")[0])
    parser.add_argument("--decisions", type=int, default=100, help="samples (one run each); default 100")
    parser.add_argument("--mode", choices=["wake", "poll", "both"], default="both")
    args = parser.parse_args(argv)
    if not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)):
        print(f"needs Chromium and chromedriver ({CHROMIUM}, {CHROMEDRIVER})", file=sys.stderr)
        return 2
    modes = ["wake", "poll"] if args.mode == "both" else [args.mode]
    print(f"decision -> browser updated, SQLite, embedded worker, {args.decisions} decisions per mode")
    print("| mode | measure | p50 ms | p95 ms | p99 ms |")
    print("|---|---|---|---|---|")
    for mode in modes:
        dom, painted = measure(mode, args.decisions)
        for label, samples in (("DOM updated", dom), ("painted", painted)):
            p50, p95, p99 = _pcts(samples)
            print(f"| {mode} | {label} | {p50:.0f} | {p95:.0f} | {p99:.0f} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
