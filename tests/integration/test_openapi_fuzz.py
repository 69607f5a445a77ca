"""Schemathesis generates requests from the OpenAPI document of a running broker; every answer
must be documented and none may be a 5xx."""

from __future__ import annotations

import subprocess
from pathlib import Path

from ..support.processes import BrokerProcess, bin_path

ADMIN = "fuzz-admin-key-0123456789abcdef0123456789"

# Checks whose expectation the contract deliberately does not meet:
DELIBERATE_DEPARTURES = [
    # JSON Schema calls 170.0 an integer; the contract rejects floats for integer fields.
    "positive_data_acceptance",
    # DELETE cancels: the task stays readable (status "cancelled") rather than becoming a 404.
    "use_after_free",
]


def test_no_generated_request_gets_a_server_error_or_an_undocumented_answer(
    database_url: str, tmp_path: Path
) -> None:
    env = {
        "TQ_AUTH": "on",
        "TQ_ADMIN_API_KEY": ADMIN,
        "TQ_RATE_LIMIT_PER_SECOND": "100000",
        "TQ_RATE_LIMIT_BURST": "100000",
        # It sends thousands of requests without a key from one address on purpose; the
        # throttle of wrong keys has its own test (test_hardening.py).
        "TQ_AUTH_FAILURES_BURST": "1000000",
        # A generated ?wait=10 would wait 10 s, past the fuzzer's response-time limit.
        "TQ_TASK_WAIT_MAX_SECONDS": "1",
    }
    broker = BrokerProcess(
        ["--database-url", database_url], tmp_path / "broker.log", env=env
    ).start()
    try:
        result = subprocess.run(
            [
                bin_path("schemathesis"),
                "run",
                f"{broker.url}/openapi.json",
                "--checks",
                "all",
                "--exclude-checks",
                ",".join(DELIBERATE_DEPARTURES),
                "--header",
                f"Authorization: Bearer {ADMIN}",
                "--max-examples",
                "40",
                "--generation-deterministic",
                "--no-color",
            ],
            capture_output=True,
            text=True,
            timeout=600,
        )
    finally:
        broker.stop()
    failures = result.stdout[result.stdout.find("FAILURES") :]
    assert result.returncode == 0, failures[:8000] + result.stderr[-2000:]
