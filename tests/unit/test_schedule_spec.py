"""A TaskSchedule's spec as the broker's schedule fields, and its broker schedule's name."""

from __future__ import annotations

from typing import Any

import pytest

from tq_client.schedules import CreateScheduleRequest, MissedFires
from tq_operator.schedule_spec import (
    InvalidScheduleSpec,
    parse_schedule_spec,
    schedule_name,
)
from tq_operator.spec import SecretKeyRef

BROKER = {"url": "http://broker:8080/", "apiKeySecretRef": {"name": "tq-key"}}


def test_a_full_spec_becomes_a_valid_create_request() -> None:
    parsed = parse_schedule_spec(
        {
            "broker": BROKER,
            "cron": "0 3 * * *",
            "timezone": "Europe/Berlin",
            "taskType": "report",
            "payloadText": "héllo",
            "priority": 200,
            "timeoutSeconds": 60,
            "maxRetries": 0,
            "paused": True,
            "missedFires": "skip",
        }
    )
    assert parsed.broker_url == "http://broker:8080"
    assert parsed.api_key_secret == SecretKeyRef("tq-key", "api-key")
    request = CreateScheduleRequest(name=schedule_name("prod", "nightly"), **parsed.fields)
    assert request.name == "k8s-prod-nightly"
    assert request.payload == "héllo".encode()
    assert (request.cron, request.interval_seconds) == ("0 3 * * *", None)
    assert (request.priority, request.timeout_seconds, request.max_retries) == (200, 60, 0)
    assert (request.paused, request.missed_fires) == (True, MissedFires.SKIP)


def test_defaults_and_a_base64_payload() -> None:
    parsed = parse_schedule_spec(
        {"broker": {"url": "http://b"}, "intervalSeconds": 30, "taskType": "t", "payload": "aGk="}
    )
    assert parsed.api_key_secret is None
    fields = parsed.fields
    assert (fields["interval_seconds"], fields["cron"], fields["timezone"]) == (30, None, "UTC")
    assert fields["payload"] == b"hi"
    assert fields["missed_fires"] is MissedFires.FIRE_ONCE


@pytest.mark.parametrize(
    "spec",
    [
        {"broker": BROKER, "taskType": "t"},
        {"broker": BROKER, "taskType": "t", "cron": "* * * * *", "intervalSeconds": 5},
        {"broker": BROKER, "cron": "* * * * *"},
        {"taskType": "t", "cron": "* * * * *"},
        {"broker": BROKER, "taskType": "t", "cron": "* * * * *", "payload": "not base64!"},
        {"broker": BROKER, "taskType": "t", "cron": "* * * * *", "missedFires": "all"},
    ],
)
def test_specs_no_schema_admits_are_invalid(spec: dict[str, Any]) -> None:
    with pytest.raises(InvalidScheduleSpec):
        parse_schedule_spec(spec)


def test_the_longest_kubernetes_names_fit_the_brokers_schedule_names() -> None:
    name = schedule_name("n" * 63, "x" * 253)
    assert CreateScheduleRequest(name=name, interval_seconds=1, task_type="t").name == name
