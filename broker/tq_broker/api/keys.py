"""Routes of /api/v1/keys (admin only): create, list, revoke."""

from __future__ import annotations

from uuid import UUID

from fastapi import APIRouter, Request, Response
from pydantic import TypeAdapter

from tq_broker.api.deps import broker_of
from tq_broker.api.errors import ERROR_RESPONSES
from tq_broker.api.responses import json_response
from tq_broker.api.security import requires
from tq_broker.keys import ApiKeyStore, Permission
from tq_client.models import CreatedKey, CreateKeyRequest, KeyInfo

router = APIRouter(prefix="/api/v1/keys", tags=["keys"], dependencies=[requires(Permission.ADMIN)])
_key_list_json = TypeAdapter(list[KeyInfo])


def _keys(request: Request) -> ApiKeyStore:
    return broker_of(request.app).keys


@router.post(
    "",
    status_code=201,
    response_model=CreatedKey,
    responses=ERROR_RESPONSES,
    summary="Create an API key; its secret is shown only in this answer",
)
async def create_key(body: CreateKeyRequest, request: Request) -> Response:
    secret, row = await _keys(request).key_insert(
        body.name,
        [Permission(p) for p in dict.fromkeys(body.permissions)],
        float(body.rate_limit) if body.rate_limit is not None else None,
        body.burst,
        body.max_pending,
    )
    created = CreatedKey.model_validate({**row, "key": secret})
    return json_response(created, 201)


@router.get(
    "",
    response_model=list[KeyInfo],
    responses=ERROR_RESPONSES,
    summary="List API keys (never their secrets)",
)
async def list_keys(request: Request) -> Response:
    rows = await _keys(request).key_list()
    keys = [KeyInfo.model_validate(row) for row in rows]
    return json_response(_key_list_json.dump_json(keys))


@router.delete("/{key_id}", status_code=204, responses=ERROR_RESPONSES, summary="Revoke an API key")
async def revoke_key(key_id: UUID, request: Request) -> Response:
    await _keys(request).key_revoke(key_id)
    broker_of(request.app).authenticator.forget(key_id)
    return Response(status_code=204)
