"""Wire-model rules that need no database: strict base64, priority buckets, id layout."""

from __future__ import annotations

import base64
import time
import uuid

import pytest
from pydantic import ValidationError

from tq_broker.ids import new_task_id
from tq_broker.queries import parse_named_blocks, queries
from tq_client.models import SubmitTaskRequest, decode_base64_strict, priority_bucket


@pytest.mark.parametrize("data", [b"", b"a", b"ab", b"abc", bytes(range(256))])
def test_canonical_base64_round_trips(data: bytes) -> None:
    assert decode_base64_strict(base64.b64encode(data).decode()) == data


@pytest.mark.parametrize("text", ["QQ", "QQ=", "QR==", "Q Q==", "QQ==\n", "-_8=", "QQ==QQ=="])
def test_non_canonical_base64_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="base64"):
        decode_base64_strict(text)


def test_submit_request_serialises_payload_back_to_base64() -> None:
    request = SubmitTaskRequest(task_type="send_email", payload=b"user@example.com")
    assert request.model_dump(mode="json")["payload"] == "dXNlckBleGFtcGxlLmNvbQ=="


def test_submit_request_refuses_booleans_for_priority() -> None:
    with pytest.raises(ValidationError):
        SubmitTaskRequest.model_validate_json('{"task_type": "a", "priority": true}')


@pytest.mark.parametrize(
    ("priority", "bucket"),
    [
        (255, "high"),
        (200, "high"),
        (199, "normal"),
        (100, "normal"),
        (99, "low"),
        (0, "low"),
    ],
)
def test_priority_buckets_follow_the_architecture(priority: int, bucket: str) -> None:
    assert priority_bucket(priority) == bucket


def test_task_ids_are_uuid7_and_increase_over_time() -> None:
    first = new_task_id()
    time.sleep(0.002)
    second = new_task_id()
    assert first.version == 7
    assert first.variant == uuid.RFC_4122
    assert first < second
    burst = [new_task_id() for _ in range(10_000)]
    assert burst == sorted(burst), "ids made in one millisecond must still increase"
    assert len(set(burst)) == 10_000


def test_named_blocks_parse_and_refuse_duplicates() -> None:
    text = "-- one --\n-- describes it\nSELECT 1;\n\n-- two --\nSELECT 2\n"
    assert parse_named_blocks(text) == {"one": "SELECT 1", "two": "SELECT 2"}
    with pytest.raises(ValueError, match="duplicate"):
        parse_named_blocks("-- a --\nSELECT 1;\n-- a --\nSELECT 2;\n")


def test_every_shipped_query_has_a_body() -> None:
    assert queries()
    assert all(statement.strip() for statement in queries().values())
