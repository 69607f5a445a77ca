"""Routes of /api/v1/schedules: create, list, get, edit, delete periodic schedules.

Every route needs the `manage_schedules` permission (or `admin`): a schedule submits tasks on
its own for as long as it exists, so reading and writing schedules is one permission apart
from submitting or reading tasks.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from pydantic import TypeAdapter

from tq_broker.api.deps import broker_of
from tq_broker.api.errors import ERROR_RESPONSES
from tq_broker.api.parsing import OffLoopJsonRoute
from tq_broker.api.responses import json_response
from tq_broker.api.security import requires
from tq_broker.keys import Permission
from tq_broker.schedules import ScheduleStore
from tq_client.schedules import (
    SCHEDULE_NAME_PATTERN,
    CreateScheduleRequest,
    ScheduleInfo,
    UpdateScheduleRequest,
)

router = APIRouter(
    prefix="/api/v1/schedules",
    tags=["schedules"],
    route_class=OffLoopJsonRoute,
    dependencies=[requires(Permission.MANAGE_SCHEDULES)],
)
_schedule_list_json = TypeAdapter(list[ScheduleInfo])


async def _schedules(request: Request) -> ScheduleStore:
    return broker_of(request.app).schedules


SchedulesDep = Annotated[ScheduleStore, Depends(_schedules)]
NameParam = Annotated[str, Path(pattern=SCHEDULE_NAME_PATTERN)]


@router.post(
    "",
    status_code=201,
    response_model=ScheduleInfo,
    responses=ERROR_RESPONSES,
    summary="Create a periodic schedule (409 if the name is taken)",
)
async def create_schedule(body: CreateScheduleRequest, store: SchedulesDep) -> Response:
    return json_response(await store.schedule_insert(body), 201)


@router.get(
    "",
    response_model=list[ScheduleInfo],
    responses=ERROR_RESPONSES,
    summary="List schedules by name",
)
async def list_schedules(
    store: SchedulesDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=1_000_000_000)] = 0,
) -> Response:
    schedules = await store.schedule_list(limit, offset)
    return json_response(_schedule_list_json.dump_json(schedules))


@router.get(
    "/{name}",
    response_model=ScheduleInfo,
    responses=ERROR_RESPONSES,
    summary="Get a schedule, with its next fire times and its last task",
)
async def get_schedule(name: NameParam, store: SchedulesDep) -> Response:
    return json_response(await store.schedule_get(name))


@router.patch(
    "/{name}",
    response_model=ScheduleInfo,
    responses=ERROR_RESPONSES,
    summary="Change some fields of a schedule (pause and resume with `paused`)",
)
async def update_schedule(
    name: NameParam, body: UpdateScheduleRequest, store: SchedulesDep
) -> Response:
    return json_response(await store.schedule_update(name, body))


@router.delete("/{name}", status_code=204, responses=ERROR_RESPONSES, summary="Delete a schedule")
async def delete_schedule(name: NameParam, store: SchedulesDep) -> Response:
    await store.schedule_delete(name)
    return Response(status_code=204)
