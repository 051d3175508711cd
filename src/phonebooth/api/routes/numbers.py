"""`/v1/phone-numbers`: E.164 numbers, each optionally pointing at default agents."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from sqlalchemy.ext.asyncio import AsyncSession

from phonebooth.api.deps import AnyCaller, Session, parse_body, read_json
from phonebooth.api.serializers import number_json
from phonebooth.contract.numbers import NumberCreate, NumberUpdate
from phonebooth.core.errors import FieldError, NotFoundError, ValidationFailed
from phonebooth.storage import agents as agents_repo
from phonebooth.storage import numbers as repo

__all__ = ["router"]

router = APIRouter(prefix="/v1/phone-numbers", tags=["phone numbers"])


async def _check_agents(session: AsyncSession, org_id: int, fields: dict[str, Any]) -> None:
    errors = []
    for name in ("inbound_agent_id", "outbound_agent_id"):
        agent_id = fields.get(name)
        if agent_id is None:
            continue
        try:
            await agents_repo.get_agent(session, org_id, agent_id)
        except NotFoundError:
            errors.append(FieldError(name, f"agent {agent_id} does not exist"))
    if errors:
        raise ValidationFailed(errors)


@router.get("")
async def list_numbers(caller: AnyCaller, session: Session) -> list[dict[str, Any]]:
    return [number_json(n) for n in await repo.list_numbers(session, caller.org_id)]


@router.post("", status_code=201)
async def create_number(request: Request, caller: AnyCaller, session: Session) -> dict[str, Any]:
    body = parse_body(NumberCreate, await read_json(request))
    fields = body.model_dump()
    await _check_agents(session, caller.org_id, fields)
    row = await repo.create_number(session, caller.org_id, fields)
    await session.commit()
    return number_json(row)


@router.get("/{number_id}")
async def get_number(number_id: int, caller: AnyCaller, session: Session) -> dict[str, Any]:
    return number_json(await repo.get_number(session, caller.org_id, number_id))


async def _update(
    request: Request, number_id: int, caller: AnyCaller, session: Session, *, replace: bool
) -> dict[str, Any]:
    await repo.get_number(session, caller.org_id, number_id)  # 404 before 400
    if replace:
        fields = parse_body(NumberCreate, await read_json(request)).model_dump()
    else:
        body = parse_body(NumberUpdate, await read_json(request))
        fields = body.model_dump(include=body.model_fields_set)
        for required in ("number", "source", "status"):
            if required in fields and fields[required] is None:
                raise ValidationFailed([FieldError(required, "must not be null")])
    await _check_agents(session, caller.org_id, fields)
    row = await repo.update_number(session, caller.org_id, number_id, fields)
    await session.commit()
    return number_json(row)


@router.put("/{number_id}")
async def replace_number(
    number_id: int, request: Request, caller: AnyCaller, session: Session
) -> dict[str, Any]:
    return await _update(request, number_id, caller, session, replace=True)


@router.patch("/{number_id}")
async def patch_number(
    number_id: int, request: Request, caller: AnyCaller, session: Session
) -> dict[str, Any]:
    return await _update(request, number_id, caller, session, replace=False)


@router.delete("/{number_id}", status_code=204)
async def delete_number(number_id: int, caller: AnyCaller, session: Session) -> Response:
    await repo.delete_number(session, caller.org_id, number_id)
    await session.commit()
    return Response(status_code=204)
