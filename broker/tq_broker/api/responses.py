"""JSON answers built straight from the wire models.

Routes return these so that FastAPI does not validate and serialise the same model a second
time; their `response_model` serves the OpenAPI document only.
"""

from __future__ import annotations

from fastapi import Response
from pydantic import BaseModel

JSON = "application/json"


def json_response(body: BaseModel | bytes, status_code: int = 200) -> Response:
    content = body if isinstance(body, bytes) else body.model_dump_json().encode()
    return Response(content=content, status_code=status_code, media_type=JSON)
