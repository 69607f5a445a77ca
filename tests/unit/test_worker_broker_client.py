"""How broker answers translate for the worker: errors, 409 batches, tolerant parsing."""

from __future__ import annotations

import uuid

import httpx
import pytest

from tq_client.protocol import LeaseOutcome, RegisterWorkerResponse
from tq_worker.backoff import Backoff
from tq_worker.broker_client import (
    BrokerRejected,
    BrokerUnavailable,
    WorkerGone,
    _raise_for_status,
    error_message,
    parse,
    retry_after,
    retry_delay,
)


def response(status: int, json: object = None, text: str | None = None) -> httpx.Response:
    if text is not None:
        return httpx.Response(status, text=text)
    return httpx.Response(status, json=json)


@pytest.mark.parametrize("status", [500, 502, 503, 504, 429])
def test_server_errors_and_rate_limits_mean_retry_later(status: int) -> None:
    with pytest.raises(BrokerUnavailable, match=f"HTTP {status}: database down"):
        _raise_for_status(response(status, {"error": "database down"}))


@pytest.mark.parametrize("status", [404, 409])
def test_404_and_409_mean_the_worker_is_gone_where_the_caller_says_so(status: int) -> None:
    with pytest.raises(WorkerGone):
        _raise_for_status(response(status, {"error": "worker is offline"}), gone=(404, 409))
    with pytest.raises(BrokerRejected) as caught:
        _raise_for_status(response(status, {"error": "x"}))
    assert caught.value.status_code == status


def test_success_passes_and_other_client_errors_are_rejections() -> None:
    _raise_for_status(response(201, {}))
    with pytest.raises(BrokerRejected, match="HTTP 401: missing API key"):
        _raise_for_status(response(401, {"error": "missing API key"}))


@pytest.mark.parametrize(("status", "setting"), [(401, "TQ_API_KEY"), (403, "process_tasks")])
def test_a_refused_key_names_the_setting_to_fix_in_every_log_line(
    status: int, setting: str
) -> None:
    with pytest.raises(BrokerRejected) as caught:
        _raise_for_status(response(status, {"error": "no"}))
    assert setting in str(caught.value) and caught.value.reason == "no"


def test_error_message_reads_the_error_body_or_falls_back_to_text() -> None:
    assert error_message(response(400, {"error": "bad"})) == "bad"
    assert (
        error_message(response(502, text="<html>bad gateway</html>")) == "<html>bad gateway</html>"
    )
    assert error_message(response(502, text="")) == "Bad Gateway"


def test_parse_ignores_fields_a_newer_broker_adds() -> None:
    body = {
        "worker_id": "w",
        "heartbeat_interval_seconds": 5,
        "lease_ttl_seconds": 30,
        "claim_wait_max_seconds": 20,
        "something_new": True,
    }
    parsed = parse(RegisterWorkerResponse, response(201, body))
    assert parsed.heartbeat_interval_seconds == 5.0


def test_an_unreadable_answer_is_treated_like_an_unavailable_broker() -> None:
    with pytest.raises(BrokerUnavailable, match="unreadable LeaseOutcome"):
        parse(LeaseOutcome, response(200, text="<html>proxy error</html>"))
    with pytest.raises(BrokerUnavailable):
        parse(LeaseOutcome, response(200, {"accepted": [str(uuid.uuid4())]}))


def test_retry_after_from_a_rate_limit_or_overload_sets_the_least_delay() -> None:
    limited = httpx.Response(429, json={"error": "slow down"}, headers={"Retry-After": "7"})
    with pytest.raises(BrokerUnavailable) as caught:
        _raise_for_status(limited)
    assert caught.value.retry_after == 7.0
    backoff = Backoff(base_seconds=0.1, cap_seconds=10.0, jitter=lambda: 1.0)
    assert retry_delay(caught.value, backoff) == 7.0
    assert retry_delay(BrokerUnavailable("down"), backoff) == 0.2


@pytest.mark.parametrize(("header", "seconds"), [("3.5", 3.5), ("-1", 0.0), ("9999", 60.0)])
def test_retry_after_is_read_in_seconds_and_bounded(header: str, seconds: float) -> None:
    assert retry_after(httpx.Response(503, headers={"Retry-After": header})) == seconds


def test_a_missing_or_date_retry_after_is_ignored() -> None:
    assert retry_after(httpx.Response(503)) is None
    date = "Wed, 21 Oct 2015 07:28:00 GMT"
    assert retry_after(httpx.Response(503, headers={"Retry-After": date})) is None
