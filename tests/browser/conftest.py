"""A real headless Chromium (Debian's `chromium`, driven through its `chromedriver`) against
real broker processes on the test run's PostgreSQL.

Nothing here downloads a browser: the binaries are the system's, and Selenium Manager is told
to stay offline. Screenshots go to a temporary directory, or, with TQ_UPDATE_SCREENSHOTS=1,
to docs/images/ (the pictures of docs/dashboard.md).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.chrome.webdriver import WebDriver
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from tq_broker.embedded import EmbeddedPostgres

from ..conftest import create_database, drop_database
from ..support.processes import REPO_ROOT, BrokerProcess
from ..support.system_tools import require_programs

ADMIN = "dashboard-browser-admin-secret-0123456789"
WAIT_SECONDS = 30.0
SCREENSHOTS = REPO_ROOT / "docs" / "images"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/browser" in str(item.path):
            item.add_marker(pytest.mark.browser)


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[WebDriver]:
    programs = require_programs(
        "chromium", "chromedriver", debian_packages="chromium chromium-driver"
    )
    os.environ["SE_OFFLINE"] = "true"  # Selenium Manager must never fetch a browser or driver
    options = Options()
    options.binary_location = programs["chromium"]
    for argument in (
        "--headless=new",
        "--no-sandbox",  # as root in CI
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1400,1000",
        f"--user-data-dir={tmp_path / 'profile'}",
    ):
        options.add_argument(argument)
    # The performance log lists every request and WebSocket the page opens (their URLs).
    options.set_capability("goog:loggingPrefs", {"performance": "ALL"})
    driver = webdriver.Chrome(
        service=Service(executable_path=programs["chromedriver"]), options=options
    )
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def screenshot(tmp_path: Path, browser: WebDriver) -> Callable[[str], Path]:
    target = SCREENSHOTS if os.environ.get("TQ_UPDATE_SCREENSHOTS") == "1" else tmp_path

    def take(name: str) -> Path:
        target.mkdir(parents=True, exist_ok=True)
        path = target / f"dashboard-{name}.png"
        assert browser.save_screenshot(str(path)), f"no screenshot of {name}"
        return path

    return take


@contextlib.contextmanager
def running_broker(
    pg: EmbeddedPostgres, env: dict[str, str], *args: str
) -> Iterator[tuple[BrokerProcess, str]]:
    """A broker process on a fresh database of its own; (the broker, the database's name)."""
    name = create_database(pg)
    log = Path(tempfile.mkdtemp(prefix="tq-browser-")) / "broker.log"
    broker = BrokerProcess(["--database-url", pg.url(name), *args], log, env=env)
    try:
        with broker.running():
            yield broker, name
    finally:
        drop_database(pg, name)


@pytest.fixture(scope="module")
def secured_broker(pg: EmbeddedPostgres) -> Iterator[BrokerProcess]:
    """Auth on, the admin key ADMIN, and the demo worker (noop, echo, sleep, fail)."""
    env = {
        "TQ_AUTH": "on",
        "TQ_ADMIN_API_KEY": ADMIN,
        "TQ_RATE_LIMIT_PER_SECOND": "10000",
        "TQ_RATE_LIMIT_BURST": "20000",
        "TQ_METRICS_REFRESH_SECONDS": "0.5",
    }
    with running_broker(pg, env, "--demo-worker") as (broker, _):
        yield broker


@pytest.fixture
def admin_api(secured_broker: BrokerProcess) -> Iterator[httpx.Client]:
    headers = {"Authorization": f"Bearer {ADMIN}"}
    with httpx.Client(base_url=secured_broker.url, headers=headers, timeout=30) as client:
        yield client


def wait_for(driver: WebDriver, what: str, condition: Callable[[WebDriver], object]) -> object:
    return WebDriverWait(driver, WAIT_SECONDS).until(condition, message=f"waiting for {what}")


def sign_in(driver: WebDriver, broker: BrokerProcess, key: str) -> None:
    driver.get(f"{broker.url}/")
    wait_for(driver, "the sign-in form", lambda d: d.find_element(By.ID, "sign-in").is_displayed())
    driver.find_element(By.ID, "api-key").send_keys(key)
    driver.find_element(By.ID, "sign-in-button").click()
    wait_for(driver, "the navigation", lambda d: d.find_element(By.ID, "nav").is_displayed())


def go(driver: WebDriver, hash_route: str) -> None:
    """Move within the page (the same tab keeps its session storage)."""
    driver.execute_script("location.hash = arguments[0]", hash_route)
