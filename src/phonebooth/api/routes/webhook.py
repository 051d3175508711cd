"""`/v1/webhook`: the organization's single webhook. Its secret is admin-only."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from phonebooth.api.deps import AdminCaller, Session, State, parse_body, read_json
from phonebooth.api.serializers import org_webhook_json
from phonebooth.api.url_checks import check_url
from phonebooth.contract.webhooks import WebhookUrl
from phonebooth.storage import webhook_config as repo

__all__ = ["router"]

router = APIRouter(prefix="/v1/webhook", tags=["webhook"])


@router.get("")
async def get_webhook(caller: AdminCaller, session: Session) -> dict[str, Any]:
    return org_webhook_json(await repo.get_organization(session, caller.org_id))


async def _set(request: Request, caller: AdminCaller, session: Session, state: State) -> Any:
    body = parse_body(WebhookUrl, await read_json(request))
    if body.url is not None:
        check_url("url", body.url, allow_private=state.settings.private_urls_allowed)
    org = await repo.set_org_webhook_url(session, caller.org_id, body.url)
    await session.commit()
    return org_webhook_json(org)


@router.put("")
async def put_webhook(
    request: Request, caller: AdminCaller, session: Session, state: State
) -> dict[str, Any]:
    result: dict[str, Any] = await _set(request, caller, session, state)
    return result


@router.patch("")
async def patch_webhook(
    request: Request, caller: AdminCaller, session: Session, state: State
) -> dict[str, Any]:
    result: dict[str, Any] = await _set(request, caller, session, state)
    return result


@router.post("/rotate-secret")
async def rotate_secret(caller: AdminCaller, session: Session) -> dict[str, Any]:
    org = await repo.rotate_org_secret(session, caller.org_id)
    await session.commit()
    return org_webhook_json(org)
