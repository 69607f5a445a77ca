"""tq-broker --log-format json: every line of a real broker process, uvicorn's included, is one
JSON object; a bad format is refused before anything starts."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import httpx

from ..support.processes import BrokerProcess, bin_path


def test_json_logs_cover_our_lines_and_uvicorns_access_and_error_lines(
    database_url: str, tmp_path: Path
) -> None:
    log_path = tmp_path / "broker.log"
    broker = BrokerProcess(
        ["--database-url", database_url],
        log_path,
        env={"TQ_LOG_FORMAT": "json", "TQ_ACCESS_LOG": "true"},
    )
    with broker.running():
        created = httpx.post(
            f"{broker.url}/api/v1/tasks?token=tq_abcd_secretsecretsecret1234",
            json={"task_type": "noop"},
        )
        assert created.status_code == 201
    lines = [line for line in log_path.read_text().splitlines() if line.strip()]
    records = [json.loads(line) for line in lines]  # every line parses: nothing else was written
    loggers = {r["logger"] for r in records}
    assert {"tq_broker", "uvicorn.error", "uvicorn.access"} <= loggers, loggers
    access = [r for r in records if r["logger"] == "uvicorn.access"]
    assert any("POST /api/v1/tasks" in r["message"] for r in access)
    assert all("secretsecret" not in line for line in lines)  # redaction still applies
    assert all({"ts", "level", "message"} <= set(r) for r in records)


def test_text_is_the_default_and_a_bad_log_format_exits_2(tmp_path: Path) -> None:
    result = subprocess.run(
        [bin_path("tq-broker"), "migrate", "--log-format", "xml"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "--log-format" in result.stderr
    result = subprocess.run(
        [bin_path("tq-broker"), "migrate", "--database-url", "postgresql://127.0.0.1:1/none"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={"TQ_LOG_FORMAT": "yaml", "PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 2
    assert "TQ_LOG_FORMAT" in result.stderr
