"""`/v1/developer/api-keys`: admin-only key management. Keys are stored as SHA-256 hashes."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from phonebooth.api.deps import AdminCaller, Session, parse_body, read_json
from phonebooth.api.serializers import api_key_json
from phonebooth.core.errors import ConflictError
from phonebooth.storage import orgs as repo

__all__ = ["router"]

router = APIRouter(prefix="/v1/developer/api-keys", tags=["api keys"])


class KeyCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    name: Annotated[str, Field(max_length=200)] = ""
    role: Literal["admin", "member"] = "member"


@router.get("")
async def list_keys(caller: AdminCaller, session: Session) -> list[dict[str, Any]]:
    return [api_key_json(k) for k in await repo.list_api_keys(session, caller.org_id)]


@router.post("", status_code=201)
async def create_key(request: Request, caller: AdminCaller, session: Session) -> dict[str, Any]:
    raw = await request.body()
    body = parse_body(KeyCreate, await read_json(request)) if raw.strip() else KeyCreate()
    row, plaintext = await repo.create_api_key(
        session, caller.org_id, name=body.name, role=body.role
    )
    await session.commit()
    return api_key_json(row, plaintext=plaintext)


@router.delete("/{key_id}", status_code=204)
async def revoke_key(key_id: str, caller: AdminCaller, session: Session) -> Response:
    keys = await repo.list_api_keys(session, caller.org_id)
    target = next((k for k in keys if k.id == key_id), None)
    other_admins = [k for k in keys if k.is_active and k.role == "admin" and k.id != key_id]
    if target is not None and target.is_active and target.role == "admin" and not other_admins:
        raise ConflictError(
            "This is the organization's last active admin key; create another first"
        )
    await repo.revoke_api_key(session, caller.org_id, key_id)
    await session.commit()
    return Response(status_code=204)
