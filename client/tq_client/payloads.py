"""Payloads and results as Python values: the JSON encoding both ends agree on, and the one
check of what `submit(payload=…)` accepts.

On the wire a payload is bytes (base64 in the contract's JSON). `submit(json=value)` and
`@worker.task(…, json=True)` put JSON text in those bytes: UTF-8, compact, no NaN or
Infinity (they are not JSON, and another language's decoder would refuse them). The one thing
not to break: a payload that is neither `bytes` nor given as `json=` is refused with a
`TypeError` *before* any request is made — a `str` is never guessed to be base64 or text.
"""

from __future__ import annotations

import json as jsonlib
from typing import Any


class _NoJson:
    def __repr__(self) -> str:
        return "NO_JSON"


# Marks "no json= argument", so that json=None (the JSON value null) stays expressible.
NO_JSON: Any = _NoJson()


def encode_json(value: Any) -> bytes:
    """`value` as compact UTF-8 JSON; TypeError/ValueError for what JSON cannot hold."""
    text = jsonlib.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    return text.encode("utf-8")


def decode_json(data: bytes) -> Any:
    """The JSON value in `data`; an empty payload is None. ValueError if it is not JSON."""
    if not data:
        return None
    return jsonlib.loads(data.decode("utf-8"))


def payload_bytes(payload: object, json: Any = NO_JSON) -> bytes:
    """The bytes to send for `submit(payload=…)` or `submit(json=…)`, checked before sending."""
    if json is not NO_JSON:
        if payload not in (None, b""):
            raise TypeError("give either payload= (bytes) or json=, not both")
        try:
            return encode_json(json)
        except (TypeError, ValueError) as exc:
            raise TypeError(f"json= value is not JSON-serializable: {exc}") from exc
    if payload is None:
        return b""
    if isinstance(payload, bytes):
        return payload
    if isinstance(payload, (bytearray, memoryview)):
        return bytes(payload)
    hint = " (encode text yourself: payload=text.encode())" if isinstance(payload, str) else ""
    raise TypeError(
        f"payload must be bytes, got {type(payload).__name__}{hint}; "
        "to send a JSON value use json=…"
    )
