"""The dashboard as a person uses it, in a real headless Chromium against a real broker process:
sign in with a key, watch a task arrive live, open it, cancel it, requeue dead letters in bulk
with one confirm and one request, be refused with a read-only key, open without a key when
auth is off, and load the task table over 100,000 tasks."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from prometheus_client.parser import text_string_to_metric_families
from selenium.common.exceptions import NoSuchElementException
from selenium.webdriver.chrome.webdriver import WebDriver
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions

from tq_broker.embedded import EmbeddedPostgres

from ..support.processes import BrokerProcess
from .conftest import ADMIN, go, running_broker, sign_in, wait_for

PAGE_SIZE = 50  # the dashboard's table page (app.js)


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def present(driver: WebDriver, css: str) -> bool:
    try:
        driver.find_element(By.CSS_SELECTOR, css)
    except NoSuchElementException:
        return False
    return True


def text_of(driver: WebDriver, css: str) -> str:
    return str(driver.find_element(By.CSS_SELECTOR, css).text)


def opened_urls(driver: WebDriver) -> list[str]:
    """Every URL the page fetched or opened a WebSocket to, from Chromium's own log; requests
    the page's Content-Security-Policy blocked before they left the browser are left out."""
    requested: dict[str, str] = {}
    blocked: set[str] = set()
    sockets = []
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        params = message["params"]
        if message["method"] == "Network.webSocketCreated":
            sockets.append(params["url"])
        elif message["method"] == "Network.requestWillBeSent":
            requested[params["requestId"]] = params["request"]["url"]
        elif message["method"] == "Network.loadingFailed" and params.get("blockedReason"):
            blocked.add(params["requestId"])
    return sockets + [url for rid, url in requested.items() if rid not in blocked]


def dead_letters(api: httpx.Client, task_type: str, count: int) -> list[str]:
    """`count` tasks that failed their only attempt (the admin key acts as a worker)."""
    batch = {"tasks": [{"task_type": task_type, "max_retries": 0} for _ in range(count)]}
    ids = [t["task_id"] for t in api.post("/api/v1/tasks/batch", json=batch).json()["tasks"]]
    worker = f"worker-browser-1-{task_type}"
    registered = {"worker_id": worker, "task_types": [task_type], "concurrency": count}
    assert api.post("/api/v1/workers", json=registered).status_code == 201
    claimed = api.post("/api/v1/tasks/claim", json={"worker_id": worker, "max_tasks": count})
    failures = [
        {
            "task_id": t["task_id"],
            "lease_token": t["lease_token"],
            "error": 'Traceback (most recent call last):\n  File "app.py", line 9\nValueError: bad',
        }
        for t in claimed.json()["tasks"]
    ]
    assert len(failures) == count
    assert api.post("/api/v1/tasks/fail", json={"worker_id": worker, "tasks": failures}).is_success
    assert api.delete(f"/api/v1/workers/{worker}").status_code == 204
    return ids


def requests_to(broker: BrokerProcess, route: str) -> float:
    """POSTs the broker answered on `route`, from its own Prometheus counter."""
    total = 0.0
    for family in text_string_to_metric_families(httpx.get(f"{broker.url}/metrics").text):
        for sample in family.samples:
            labels = sample.labels
            if sample.name == "tq_http_requests_total" and labels.get("route") == route:
                total += sample.value if labels.get("method") == "POST" else 0
    return total


def test_sign_in_watch_a_task_arrive_live_open_it_and_cancel_it(
    browser: WebDriver,
    secured_broker: BrokerProcess,
    admin_api: httpx.Client,
    screenshot: Callable[[str], Path],
) -> None:
    sign_in(browser, secured_broker, ADMIN)
    assert browser.execute_script("return sessionStorage.getItem('tq.apiKey')") == ADMIN
    wait_for(browser, "the overview", lambda d: present(d, "#overview"))

    go(browser, "#/tasks?task_type=manual")
    wait_for(
        browser,
        "the live feed",
        lambda d: "on" in d.find_element(By.ID, "live").get_attribute("class"),
    )
    submitted = admin_api.post(
        "/api/v1/tasks",
        json={"task_type": "manual", "payload": b64('{"to": "ada@example.com"}'), "priority": 150},
    ).json()["task_id"]
    row = f'tr[data-task-id="{submitted}"]'
    wait_for(browser, "the new task's row", lambda d: present(d, row))  # no polling: the feed
    assert text_of(browser, f"{row} td.status") == "pending"
    screenshot("tasks")

    browser.find_element(By.CSS_SELECTOR, f"{row} a").click()
    wait_for(browser, "the task's page", lambda d: present(d, "#task-detail"))
    payload = browser.find_element(By.ID, "payload")
    assert payload.get_attribute("data-format") == "json"
    assert '"to": "ada@example.com"' in payload.text
    assert text_of(browser, '[data-field="priority"]') == "150"
    screenshot("task")

    browser.find_element(By.ID, "cancel").click()
    wait_for(
        browser,
        "the cancelled status",
        lambda d: present(d, '#task-detail[data-status="cancelled"]'),
    )
    assert admin_api.get(f"/api/v1/tasks/{submitted}").json()["status"] == "cancelled"
    assert not present(browser, "#cancel")

    urls = opened_urls(browser)
    sockets = [u for u in urls if u.startswith("ws")]
    assert sockets and all("ticket=tqt_" in u for u in sockets), sockets
    assert not [u for u in urls if ADMIN in u], "the key appeared in a URL"


def test_dead_letters_are_requeued_in_bulk_with_one_confirm_and_one_request(
    browser: WebDriver,
    secured_broker: BrokerProcess,
    admin_api: httpx.Client,
    screenshot: Callable[[str], Path],
) -> None:
    ids = dead_letters(admin_api, "flaky", 3)
    others = dead_letters(admin_api, "other", 1)
    for n in range(5):  # the demo worker completes these: the chart has something to show
        admin_api.post("/api/v1/tasks", json={"task_type": "echo", "payload": b64(f"hi {n}")})
    admin_api.post("/api/v1/tasks", json={"task_type": "nobody_runs_this"})
    sign_in(browser, secured_broker, ADMIN)
    wait_for(
        browser,
        "the unserved task type highlighted",
        lambda d: present(d, 'tr.unserved[data-task-type="nobody_runs_this"]'),
    )
    screenshot("overview")
    go(browser, "#/workers")
    wait_for(browser, "the demo worker", lambda d: present(d, "#worker-rows tr"))
    demo = text_of(browser, "#worker-rows tr")
    assert "echo" in demo and "noop" in demo, demo  # its task types, from the broker
    screenshot("workers")

    go(browser, "#/dead-letters?task_type=flaky")
    wait_for(
        browser,
        "three dead letters",
        lambda d: len(d.find_elements(By.CSS_SELECTOR, "#dead-rows tr")) == 3,
    )
    screenshot("dead-letters")
    before = requests_to(secured_broker, "/api/v1/tasks/requeue")
    browser.find_element(By.ID, "requeue-all").click()
    alert = wait_for(browser, "the confirmation", expected_conditions.alert_is_present())
    assert "dead letters of type flaky" in alert.text  # type: ignore[attr-defined]
    alert.accept()  # type: ignore[attr-defined]
    wait_for(browser, "the answer", lambda d: "Requeued 3" in d.find_element(By.ID, "toast").text)
    wait_for(browser, "the emptied list", lambda d: present(d, "#no-dead-letters"))
    statuses = {i: admin_api.get(f"/api/v1/tasks/{i}").json()["status"] for i in ids + others}
    assert statuses == {**dict.fromkeys(ids, "pending"), others[0]: "dead_letter"}
    assert requests_to(secured_broker, "/api/v1/tasks/requeue") - before == 1


def test_a_read_only_key_sees_no_actions_and_the_broker_refuses_them(
    browser: WebDriver,
    secured_broker: BrokerProcess,
    admin_api: httpx.Client,
    screenshot: Callable[[str], Path],
) -> None:
    reader = admin_api.post(
        "/api/v1/keys", json={"name": "viewer", "permissions": ["read_tasks"]}
    ).json()["key"]
    waiting = admin_api.post("/api/v1/tasks", json={"task_type": "manual"}).json()["task_id"]
    dead = dead_letters(admin_api, "readonly", 1)[0]

    sign_in(browser, secured_broker, reader)
    assert "read_tasks" in text_of(browser, "#who")

    go(browser, f"#/tasks/{waiting}")
    wait_for(browser, "the task's page", lambda d: present(d, "#task-detail"))
    assert not present(browser, "#cancel")
    assert "cancel_tasks" in text_of(browser, "#not-allowed")
    go(browser, f"#/tasks/{dead}")
    wait_for(
        browser,
        "the dead letter's page",
        lambda d: present(d, '#task-detail[data-status="dead_letter"]'),
    )
    assert not present(browser, "#requeue")
    assert "Traceback" in text_of(browser, "#error")
    attempts = browser.find_elements(By.CSS_SELECTOR, "#attempts tbody tr")
    assert len(attempts) == 1 and "ValueError: bad" in attempts[0].text  # the one attempt
    screenshot("dead-letter-read-only")
    go(browser, "#/dead-letters?task_type=readonly")
    wait_for(browser, "the dead letters", lambda d: present(d, "#dead-rows tr"))
    assert not present(browser, "#requeue-all")
    assert "admin" in text_of(browser, "#not-allowed")

    # Hidden is not the protection: the same calls from the page are refused by the broker.
    answers = browser.execute_async_script(
        """
        const done = arguments[arguments.length - 1];
        const auth = {Authorization: `Bearer ${sessionStorage.getItem("tq.apiKey")}`};
        const call = (path, method, body) => fetch(path, {method, body,
            headers: {...auth, "Content-Type": "application/json"}})
          .then(async (r) => [r.status, (await r.json()).error]);
        Promise.all([
          call("/api/v1/tasks/requeue", "POST", "{}"),
          call(`/api/v1/tasks/${arguments[0]}`, "DELETE"),
        ]).then(done);
        """,
        waiting,
    )
    assert answers[0][0] == 403 and "admin" in answers[0][1]
    assert answers[1][0] == 403 and "cancel_tasks" in answers[1][1]
    assert admin_api.get(f"/api/v1/tasks/{waiting}").json()["status"] == "pending"
    assert admin_api.get(f"/api/v1/tasks/{dead}").json()["status"] == "dead_letter"


def test_a_wrong_key_is_refused_at_sign_in(
    browser: WebDriver, secured_broker: BrokerProcess
) -> None:
    browser.get(f"{secured_broker.url}/ui/")
    wait_for(browser, "the sign-in form", lambda d: d.find_element(By.ID, "sign-in").is_displayed())
    browser.find_element(By.ID, "api-key").send_keys("tq_wrong_" + "x" * 40)
    browser.find_element(By.ID, "sign-in-button").click()
    wait_for(browser, "the refusal", lambda d: "unknown or revoked" in text_of(d, "#sign-in-error"))
    assert browser.execute_script("return sessionStorage.getItem('tq.apiKey')") is None
    assert not browser.find_element(By.ID, "nav").is_displayed()


@pytest.fixture(scope="module")
def open_broker(pg: EmbeddedPostgres) -> Iterator[BrokerProcess]:
    with running_broker(pg, {"TQ_AUTH": "off"}) as (broker, _):
        yield broker


def test_with_auth_off_the_dashboard_just_opens(
    browser: WebDriver, open_broker: BrokerProcess
) -> None:
    browser.get(f"{open_broker.url}/")
    wait_for(browser, "the overview", lambda d: present(d, "#overview"))
    assert not browser.find_element(By.ID, "sign-in").is_displayed()
    assert text_of(browser, "#who") == "authentication off"
    httpx.post(f"{open_broker.url}/api/v1/tasks", json={"task_type": "open"})
    go(browser, "#/tasks")
    wait_for(browser, "the task", lambda d: present(d, "#task-rows tr"))


def test_swagger_ui_and_redoc_render_the_api_from_the_broker_alone(
    browser: WebDriver, open_broker: BrokerProcess
) -> None:
    """Offline: every request the two pages make goes to the broker itself."""
    browser.get(f"{open_broker.url}/docs")
    wait_for(browser, "Swagger UI's operations", lambda d: present(d, ".opblock"))
    assert "/api/v1/tasks/requeue" in browser.page_source  # rendered from /openapi.json
    browser.get(f"{open_broker.url}/redoc")
    wait_for(browser, "ReDoc's menu", lambda d: "Submit a task" in d.page_source)
    web = [u for u in opened_urls(browser) if u.startswith(("http", "ws"))]  # not chrome://
    foreign = [u for u in web if not u.startswith(open_broker.url)]
    assert not foreign, foreign


def test_the_task_table_loads_one_page_over_100k_tasks(
    browser: WebDriver, pg: EmbeddedPostgres, screenshot: Callable[[str], Path]
) -> None:
    """The budget: the page asks for one page of rows and never a count, so what it transfers
    does not grow with the queue. The time is printed, not asserted."""
    with running_broker(pg, {"TQ_AUTH": "off"}) as (broker, dbname):
        with psycopg.connect(pg.conninfo(dbname), autocommit=True) as conn:
            conn.execute(
                """
                INSERT INTO tq_tasks (task_id, task_type, payload, priority, timeout_seconds,
                                      max_retries, created_at)
                SELECT gen_random_uuid(), 'bulk_' || (n % 20), '\\x00', n % 256, 300, 3,
                       now() - n * interval '1 millisecond'
                FROM generate_series(1, 100000) AS n
                """
            )
            conn.execute("ANALYZE tq_tasks")
        started = time.perf_counter()
        browser.get(f"{broker.url}/ui/#/tasks")
        wait_for(
            browser,
            "a page of rows",
            lambda d: len(d.find_elements(By.CSS_SELECTOR, "#task-rows tr")) == PAGE_SIZE,
        )
        table_seconds = time.perf_counter() - started
        api_calls: list[dict[str, Any]] = browser.execute_script(
            "return performance.getEntriesByType('resource')"
            ".filter(e => e.name.includes('/api/'))"
            ".map(e => ({name: e.name, bytes: e.transferSize}))"
        )
        assert not browser.find_element(By.ID, "older").get_attribute("disabled")
        assert browser.find_element(By.ID, "newer").get_attribute("disabled")
        listed = [c for c in api_calls if "/api/v1/tasks?" in c["name"]]
        assert len(listed) == 1 and "limit=51" in listed[0]["name"], api_calls
        assert sum(c["bytes"] for c in api_calls) < 64 * 1024, api_calls
        screenshot("tasks-100k")

        started = time.perf_counter()
        go(browser, "#/overview")
        wait_for(browser, "the counts", lambda d: present(d, "#count-pending"))
        overview_seconds = time.perf_counter() - started
        assert text_of(browser, "#count-pending .value") == "100,000"
        assert len(browser.find_elements(By.CSS_SELECTOR, "#task-types tbody tr")) == 20
        print(
            f"\n100k tasks: first page of the task table in {table_seconds:.2f} s, "
            f"overview in {overview_seconds:.2f} s, {len(api_calls)} API calls"
        )
