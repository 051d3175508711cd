"""`/v1/developer/webhook-endpoints`: receivers with their own secrets and event lists."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response

from phonebooth.api.deps import AdminCaller, AnyCaller, Session, State, parse_body, read_json
from phonebooth.api.serializers import endpoint_json
from phonebooth.api.url_checks import check_url
from phonebooth.contract.webhooks import EVENT_NAMES, EndpointCreate, EndpointUpdate
from phonebooth.core.errors import FieldError, ValidationFailed
from phonebooth.storage import webhook_config as repo

__all__ = ["router"]

router = APIRouter(prefix="/v1/developer/webhook-endpoints", tags=["webhook endpoints"])

TEST_EVENT = "webhook.test"
_TEST_EVENT_TYPES = frozenset((*EVENT_NAMES, TEST_EVENT))


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


async def _test_event_type(request: Request) -> str:
    """The optional `{"event_type": ...}` body of a test send; an empty body means the default."""
    if not (await request.body()).strip():
        return TEST_EVENT
    body = await read_json(request)
    if not isinstance(body, dict):
        raise ValidationFailed([FieldError("body", "must be a JSON object")])
    unknown = sorted(set(body) - {"event_type"})
    if unknown:
        raise ValidationFailed([FieldError(name, "is not a known field") for name in unknown])
    event_type = body.get("event_type", TEST_EVENT)
    if not isinstance(event_type, str) or event_type not in _TEST_EVENT_TYPES:
        raise ValidationFailed(
            [FieldError("event_type", f"must be {TEST_EVENT!r} or a known event name")]
        )
    return event_type


@router.post("/{endpoint_id}/test")
async def send_test_event(
    endpoint_id: str, request: Request, caller: AnyCaller, state: State
) -> dict[str, Any]:
    """One signed attempt, sent now and recorded as a delivery; the answer says how it went."""
    event_type = await _test_event_type(request)
    result = await state.dispatcher.send_test(caller.org_id, endpoint_id, event_type)
    return result.as_json()
