"""The Grafana dashboard's queries and the alert expressions, evaluated by a real Prometheus
(Debian's `prometheus`) that scrapes a real broker, with its demo worker, after a known
workload: every panel shows data, and the queue panels show the right numbers."""

from __future__ import annotations

import base64
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tq_broker.embedded import EmbeddedPostgres

from ..conftest import create_database, drop_database
from ..support.processes import BrokerProcess, free_port, stop_process
from ..support.system_tools import require_programs
from .test_alert_rules import RULES, dashboard_queries

WAIT_SECONDS = 90.0


@pytest.fixture
def broker(pg: EmbeddedPostgres) -> Iterator[tuple[BrokerProcess, int]]:
    name = create_database(pg)
    metrics_port = free_port()
    log = Path(tempfile.mkdtemp(prefix="tq-monitoring-")) / "broker.log"
    env = {"TQ_METRICS_PORT": str(metrics_port), "TQ_METRICS_REFRESH_SECONDS": "0.5"}
    process = BrokerProcess(["--database-url", pg.url(name), "--demo-worker"], log, env=env)
    try:
        with process.running():
            yield process, metrics_port
    finally:
        drop_database(pg, name)


@pytest.fixture
def prometheus(broker: tuple[BrokerProcess, int], tmp_path: Path) -> Iterator[str]:
    binary = require_programs("prometheus", debian_packages="prometheus")["prometheus"]
    port = free_port()
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "scrape_configs": [
            {"job_name": "taskqueue", "static_configs": [{"targets": [f"127.0.0.1:{broker[1]}"]}]}
        ],
    }
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    with open(tmp_path / "prometheus.log", "wb") as log:
        process = subprocess.Popen(
            [
                binary,
                f"--config.file={tmp_path / 'prometheus.yml'}",
                f"--storage.tsdb.path={tmp_path / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + WAIT_SECONDS
        while True:
            assert process.poll() is None, (tmp_path / "prometheus.log").read_text()[-3000:]
            try:
                if httpx.get(f"{url}/-/ready", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "Prometheus never became ready"
            time.sleep(0.2)
        yield url
    finally:
        stop_process(process)


def query(prometheus: str, expr: str) -> list[dict[str, Any]]:
    answer = httpx.get(f"{prometheus}/api/v1/query", params={"query": expr}, timeout=10).json()
    assert answer["status"] == "success", (expr, answer)
    return list(answer["data"]["result"])


def scalar(prometheus: str, expr: str) -> float | None:
    result = query(prometheus, expr)
    return float(result[0]["value"][1]) if result else None


def test_every_dashboard_query_shows_data_from_a_real_broker(
    broker: tuple[BrokerProcess, int], prometheus: str
) -> None:
    api = httpx.Client(base_url=broker[0].url, timeout=30)
    tasks = [{"task_type": "echo", "payload": base64.b64encode(b"hi").decode()}] * 10
    tasks += [{"task_type": "fail", "max_retries": 0}] * 2  # the demo worker always raises
    tasks += [{"task_type": "nobody_runs_this"}] * 3
    tasks += [{"task_type": "later", "schedule_at": "2999-01-01T00:00:00Z"}]
    assert api.post("/api/v1/tasks/batch", json={"tasks": tasks}).status_code == 201

    # Wait until Prometheus has seen the outcome, and a minute's rate has a few samples.
    deadline = time.monotonic() + WAIT_SECONDS
    while True:
        dead = scalar(prometheus, "sum(tq_tasks_dead_letter)")
        completed = scalar(prometheus, 'sum(tq_tasks_total{status="completed"})')
        samples = scalar(prometheus, "count_over_time(tq_leader[1m])")
        if dead == 2 and completed == 10 and samples is not None and samples >= 5:
            break
        assert time.monotonic() < deadline, (dead, completed, samples)
        time.sleep(0.5)

    empty = [q for q in dashboard_queries() if not query(prometheus, q)]
    assert not empty, f"dashboard panels without data: {empty}"
    assert scalar(prometheus, "sum(tq_tasks_pending)") == 4  # 3 ready + 1 scheduled
    assert scalar(prometheus, "sum(tq_tasks_scheduled)") == 1
    assert scalar(prometheus, "sum(tq_tasks_in_progress)") == 0
    assert scalar(prometheus, "sum(tq_workers_connected)") == 1
    assert scalar(prometheus, "sum(tq_leader)") == 1
    by_type = {
        r["metric"]["task_type"]: float(r["value"][1])
        for r in query(prometheus, "sum by (task_type) (tq_tasks_pending_by_type)")
    }
    assert by_type == {"nobody_runs_this": 3, "later": 1}
    oldest = scalar(prometheus, 'max(tq_oldest_pending_age_seconds{task_type="nobody_runs_this"})')
    assert oldest is not None and oldest > 0

    # The alert expressions are valid against real series too (firing or not).
    for group in yaml.safe_load(RULES.read_text())["groups"]:
        for rule in group["rules"]:
            query(prometheus, rule["expr"])
    growing = next(
        r["expr"]
        for g in yaml.safe_load(RULES.read_text())["groups"]
        for r in g["rules"]
        if r.get("alert") == "TaskQueueDeadLettersGrowing"
    )
    assert [r["metric"]["task_type"] for r in query(prometheus, growing)] == ["fail"]
