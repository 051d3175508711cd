"""`/v1/developer/webhook-endpoints`: receivers with their own secrets and event lists."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response

from phonebooth.api.deps import AdminCaller, AnyCaller, Session, State, parse_body, read_json
from phonebooth.api.serializers import endpoint_json
from phonebooth.api.url_checks import check_url
from phonebooth.contract.webhooks import EndpointCreate, EndpointUpdate
from phonebooth.core.errors import FieldError, ValidationFailed
from phonebooth.storage import webhook_config as repo

__all__ = ["router"]

router = APIRouter(prefix="/v1/developer/webhook-endpoints", tags=["webhook endpoints"])


@router.get("")
async def list_endpoints(caller: AnyCaller, session: Session) -> list[dict[str, Any]]:
    return [endpoint_json(e) for e in await repo.list_endpoints(session, caller.org_id)]


@router.post("", status_code=201)
async def create_endpoint(
    request: Request, caller: AdminCaller, session: Session, state: State
) -> dict[str, Any]:
    """Admin only: the answer carries the endpoint's secret, shown this once."""
    body = parse_body(EndpointCreate, await read_json(request))
    check_url("url", body.url, allow_private=state.settings.private_urls_allowed)
    row = await repo.create_endpoint(
        session, caller.org_id, label=body.label, url=body.url, events=body.events
    )
    await session.commit()
    return endpoint_json(row, with_secret=True)


@router.get("/{endpoint_id}")
async def get_endpoint(endpoint_id: str, caller: AnyCaller, session: Session) -> dict[str, Any]:
    return endpoint_json(await repo.get_endpoint(session, caller.org_id, endpoint_id))


@router.patch("/{endpoint_id}")
async def patch_endpoint(
    endpoint_id: str, request: Request, caller: AnyCaller, session: Session, state: State
) -> dict[str, Any]:
    await repo.get_endpoint(session, caller.org_id, endpoint_id)
    body = parse_body(EndpointUpdate, await read_json(request))
    fields = {k: v for k, v in body.model_dump(include=body.model_fields_set).items()}
    nulls = [
        FieldError(name, "must not be null") for name, value in fields.items() if value is None
    ]
    if nulls:
        raise ValidationFailed(nulls)
    if "url" in fields:
        check_url("url", fields["url"], allow_private=state.settings.private_urls_allowed)
    if fields.get("status") == "active":
        fields["failing_since"] = None
    row = await repo.update_endpoint(session, caller.org_id, endpoint_id, fields)
    await session.commit()
    return endpoint_json(row)


@router.delete("/{endpoint_id}", status_code=204)
async def delete_endpoint(endpoint_id: str, caller: AnyCaller, session: Session) -> Response:
    await repo.delete_endpoint(session, caller.org_id, endpoint_id)
    await session.commit()
    return Response(status_code=204)


@router.post("/{endpoint_id}/rotate-secret")
async def rotate_secret(endpoint_id: str, caller: AdminCaller, session: Session) -> dict[str, Any]:
    row = await repo.rotate_endpoint_secret(session, caller.org_id, endpoint_id)
    await session.commit()
    return endpoint_json(row, with_secret=True)
