"""Browser tests: the dashboard in real headless Chromium (Debian's, driven by Selenium and
``/usr/bin/chromedriver``) against the real server on uvicorn, with a SQLite store and an
embedded worker, so that decisions resume runs as they would in production.

Screenshots go to a temporary directory, or to ``$ORCHESTRATE_SCREENSHOTS`` when set
(``ORCHESTRATE_SCREENSHOTS=docs/images`` refreshes the ones the docs show).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
webdriver = pytest.importorskip("selenium.webdriver")

CHROMEDRIVER = os.environ.get("ORCHESTRATE_CHROMEDRIVER", "/usr/bin/chromedriver")
CHROMIUM = os.environ.get("ORCHESTRATE_CHROMIUM", "/usr/bin/chromium")

if not (Path(CHROMEDRIVER).exists() and Path(CHROMIUM).exists()):  # pragma: no cover - set-up installs them
    pytest.skip(f"Chromium and chromedriver are needed ({CHROMIUM}, {CHROMEDRIVER})", allow_module_level=True)

import uvicorn  # noqa: E402
from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException  # noqa: E402
from selenium.webdriver.chrome.options import Options  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support import expected_conditions as ec  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

from orchestrate import Client  # noqa: E402
from orchestrate.server import ServerSettings, create_app, create_token  # noqa: E402
from tests.browser.apps import REVIEWER_ROLE, SUPERVISOR_ROLE, WORKFLOWS  # noqa: E402

WAIT_SECONDS = 20.0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class LiveServer:
    """The server on uvicorn in a thread of its own, with its own event loop."""

    store_url: str
    port: int = field(default_factory=_free_port)
    tokens: dict[str, str] = field(default_factory=dict)
    loop: asyncio.AbstractEventLoop | None = None
    client: Client | None = None
    _server: uvicorn.Server | None = None
    _ready: threading.Event = field(default_factory=threading.Event)
    _error: BaseException | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        thread = threading.Thread(target=self._run, name="orchestrate-server", daemon=True)
        thread.start()
        self._thread = thread
        assert self._ready.wait(WAIT_SECONDS), "the server did not start"
        if self._error is not None:
            raise self._error
        deadline = time.monotonic() + WAIT_SECONDS
        while not (self._server and self._server.started):
            assert time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.02)

    def _run(self) -> None:
        asyncio.run(self._main())

    async def _main(self) -> None:
        try:
            self.loop = asyncio.get_running_loop()
            self.client = Client(self.store_url, workflows=WORKFLOWS)
            await self.client.engine.open()
            for name, roles in {
                "ana": ["operator", REVIEWER_ROLE],
                "lee": [REVIEWER_ROLE],
                "vic": ["viewer"],
                "ops": ["operator"],
                "sam": [SUPERVISOR_ROLE],
            }.items():
                token, _ = await create_token(self.client.store, name=name, roles=roles)
                self.tokens[name] = token
            app = create_app(self.client, settings=ServerSettings(poll_seconds=0.05), worker=True)
            config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="on")
            self._server = uvicorn.Server(config)
            self._server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
        except BaseException as exc:
            self._error = exc
            self._ready.set()
            raise
        self._ready.set()
        await self._server.serve()

    def call(self, coro: Any) -> Any:
        """Run a coroutine on the server's loop (the test's own view of the store)."""
        assert self.loop is not None
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(WAIT_SECONDS)

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        self._thread.join(WAIT_SECONDS)


@pytest.fixture
def server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[LiveServer]:
    """The server on a SQLite file, or (``indirect`` parameter ``"postgres"``) a fresh PostgreSQL schema."""
    if getattr(request, "param", "sqlite") == "postgres":
        from tests.postgres import in_schema

        urls = in_schema()
        url = next(urls)
    else:
        urls = None
        url = f"sqlite:///{tmp_path / 'orchestrate.db'}"
    live = LiveServer(url)
    live.start()
    try:
        yield live
    finally:
        live.stop()
        if urls is not None:
            next(urls, None)  # drops the schema


@pytest.fixture(scope="session")
def shots_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    wanted = os.environ.get("ORCHESTRATE_SCREENSHOTS")
    path = Path(wanted) if wanted else tmp_path_factory.mktemp("screenshots")
    path.mkdir(parents=True, exist_ok=True)
    return path


class Browser:
    """A headless Chromium session, with the waits the tests use."""

    def __init__(self, driver: Any, shots: Path) -> None:
        self.driver = driver
        self.shots = shots

    def wait(self, condition: Any, timeout: float = WAIT_SECONDS) -> Any:
        # The pages redraw as they update: an element found a moment ago may be replaced.
        ignored = (StaleElementReferenceException, NoSuchElementException)
        return WebDriverWait(self.driver, timeout, ignored_exceptions=ignored).until(condition)

    def find(self, css: str) -> Any:
        return self.wait(ec.presence_of_element_located((By.CSS_SELECTOR, css)))

    def visible(self, css: str) -> Any:
        return self.wait(ec.visibility_of_element_located((By.CSS_SELECTOR, css)))

    def click(self, css: str) -> None:
        def attempt(driver: Any) -> bool:
            found = driver.find_element(By.CSS_SELECTOR, css)
            if not (found.is_displayed() and found.is_enabled()):
                return False
            found.click()
            return True

        self.wait(attempt)

    def text_in(self, css: str, text: str) -> None:
        self.wait(ec.text_to_be_present_in_element((By.CSS_SELECTOR, css), text))

    def all(self, css: str) -> list[Any]:
        return list(self.driver.find_elements(By.CSS_SELECTOR, css))

    def sign_in(self, server: LiveServer, who: str, path: str = "/") -> None:
        self.driver.get(server.url + path)
        field_ = self.visible("#token")
        field_.send_keys(server.tokens[who])
        self.click("#sign-in button[type=submit]")
        self.visible("#nav")

    def keys(self, keys: str) -> None:
        from selenium.webdriver.common.action_chains import ActionChains

        ActionChains(self.driver).send_keys(keys).perform()

    def screenshot(self, name: str) -> Path:
        path = self.shots / f"dashboard-{name}.png"
        self.driver.save_screenshot(str(path))
        return path

    def console_errors(self) -> list[str]:
        return [e["message"] for e in self.driver.get_log("browser") if e.get("level") == "SEVERE"]


@pytest.fixture
def browser(tmp_path: Path, shots_dir: Path) -> Iterator[Browser]:
    profile = tmp_path / "chromium-profile"
    options = Options()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--force-color-profile=srgb",
        "--hide-scrollbars",
        "--window-size=1360,900",
        f"--user-data-dir={profile}",
    ):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield Browser(driver, shots_dir)
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)
