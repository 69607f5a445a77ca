"""The submit's fast path takes only what the FastAPI route takes, and reads it the same way.

The route parses the body with `json.loads` and validates the dict (`model_validate`); the fast
path validates the bytes in one pass (`model_validate_json`). Whatever the fast path does not
take goes to the route, so the one way they could differ is the fast path taking a body the
route refuses, or reading it differently. Bodies here are generated around the model's fields.
"""

from __future__ import annotations

import json
from typing import Any

from hypothesis import example, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from tq_broker.api.parsing import OFF_LOOP_MIN_BYTES
from tq_broker.api.submit_fast_path import parse_submit
from tq_client.models import SubmitTaskRequest

FIELDS = ["task_type", "payload", "priority", "schedule_at", "timeout_seconds", "max_retries"]

json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from([0, 1, 255, 256, -1, 86400, 86401, 100, 101, 1.0, 7.5, "1", "10", ""]),
    st.text(max_size=40),
    st.sampled_from(
        [
            "resize",
            "a.b:c-d_e",
            "has space",
            "x" * 129,
            "aGVsbG8=",
            "aGVsbG8",
            "aGVs bG8=",
            "_-8=",
            "2026-12-02T12:00:00Z",
            "2026-12-02T12:00:00+02:00",
            "2026-12-02T12:00:00",
            "2026-12-02",
            "1700000000",
        ]
    ),
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=5,
)
bodies = st.dictionaries(
    st.sampled_from([*FIELDS, "extra", "Task_Type"]), json_values, max_size=7
).map(lambda d: json.dumps(d).encode())


def route_reading(body: bytes) -> SubmitTaskRequest | None:
    """What the route stores for this body (None: it refuses it)."""
    try:
        return SubmitTaskRequest.model_validate(json.loads(body))
    except (ValueError, ValidationError):
        return None


@settings(max_examples=3000, deadline=None)
@given(bodies)
@example(b'{"task_type": "resize", "task_type": "email"}')
@example(b'{"task_type": "resize", "priority": 1.0}')
@example(b'{"task_type": "resize", "priority": 1e2}')
@example(b'{"task_type": "resize", "priority": true}')
@example(b'{"task_type": "resize", "priority": NaN}')
@example(b'{"task_type": "resize", "payload": "aGVsbG8="} trailing')
@example(b'{"task_type": "resize\\u0000"}')
@example(b'\xef\xbb\xbf{"task_type": "resize"}')
@example(b'{"task_type": "resize", "schedule_at": "2026-12-02T12:00:00.123456789Z"}')
@example(b'[{"task_type": "resize"}]')
@example(b"")
def test_the_fast_path_takes_only_what_the_route_takes_and_reads_it_the_same(body: bytes) -> None:
    fast = parse_submit(body)
    if fast is not None:
        assert fast == route_reading(body), body


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=64))
def test_arbitrary_bytes_are_never_read_differently(body: bytes) -> None:
    fast = parse_submit(body)
    if fast is not None:
        assert fast == route_reading(body)


def test_valid_requests_take_the_fast_path() -> None:
    """Otherwise the fast path is never used and the property above holds vacuously."""
    body: dict[str, Any] = {
        "task_type": "resize",
        "payload": "aGVsbG8=",
        "priority": 7,
        "schedule_at": "2026-12-02T12:00:00+02:00",
        "timeout_seconds": 30,
        "max_retries": 2,
    }
    fast = parse_submit(json.dumps(body).encode())
    assert fast is not None and fast == route_reading(json.dumps(body).encode())
    assert fast.payload == b"hello" and fast.schedule_at is not None
    assert parse_submit(b'{"task_type": "resize"}') == SubmitTaskRequest(task_type="resize")


def test_a_body_the_route_parses_off_the_event_loop_is_left_to_it() -> None:
    payload = "A" * OFF_LOOP_MIN_BYTES
    body = json.dumps({"task_type": "big", "payload": payload}).encode()
    assert route_reading(body) is not None
    assert parse_submit(body) is None
