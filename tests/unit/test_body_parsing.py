"""A large JSON body is parsed off the event loop; a small one, and errors, as before."""

from __future__ import annotations

import asyncio
import json

import pytest

from tq_broker.api.parsing import OFF_LOOP_MIN_BYTES, OffLoopJsonRequest


def request_with(body: bytes) -> OffLoopJsonRequest:
    async def receive() -> dict[str, object]:
        return {"type": "http.request", "body": body, "more_body": False}

    scope = {"type": "http", "method": "POST", "path": "/", "headers": [], "query_string": b""}
    return OffLoopJsonRequest(scope, receive)


async def loop_ticks_while(request: OffLoopJsonRequest) -> tuple[int, object]:
    parsing = asyncio.ensure_future(request.json())
    ticks = 0
    while not parsing.done():
        await asyncio.sleep(0)
        ticks += 1
    return ticks, parsing.result()


async def test_a_large_body_leaves_the_loop_free_while_it_is_parsed() -> None:
    body = json.dumps({"tasks": [{"task_type": "x", "payload": "A" * 1000}] * 20_000}).encode()
    assert len(body) > 50 * OFF_LOOP_MIN_BYTES
    ticks, parsed = await loop_ticks_while(request_with(body))
    assert ticks > 10, "the loop stood still while the body was parsed"
    assert isinstance(parsed, dict) and len(parsed["tasks"]) == 20_000


async def test_a_small_body_is_parsed_at_once_on_the_loop() -> None:
    ticks, parsed = await loop_ticks_while(request_with(b'{"task_type": "x"}'))
    assert parsed == {"task_type": "x"}
    assert ticks <= 2


async def test_a_malformed_large_body_raises_the_same_json_error() -> None:
    with pytest.raises(json.JSONDecodeError):
        await request_with(b"[" + b" " * OFF_LOOP_MIN_BYTES + b"{").json()
