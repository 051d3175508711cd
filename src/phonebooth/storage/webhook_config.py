"""The single webhook (on the organization row) and webhook endpoints, with secret rotation."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from phonebooth.core.errors import NotFoundError
from phonebooth.core.secrets import generate_webhook_secret
from phonebooth.storage.tables import Organization, WebhookEndpoint, utcnow

__all__ = [
    "ROTATION_OVERLAP",
    "active_secrets",
    "create_endpoint",
    "delete_endpoint",
    "get_endpoint",
    "get_organization",
    "list_endpoints",
    "rotate_endpoint_secret",
    "rotate_org_secret",
    "set_org_webhook_url",
    "update_endpoint",
]

ROTATION_OVERLAP = timedelta(hours=24)


def active_secrets(
    current: str, previous: str | None, previous_expires_at: datetime | None, now: datetime
) -> list[str]:
    """Secrets valid right now, newest first (both during the 24 h after a rotation)."""
    secrets = [current]
    if previous and previous_expires_at is not None and previous_expires_at > now:
        secrets.append(previous)
    return secrets


async def get_organization(session: AsyncSession, org_id: int) -> Organization:
    org = await session.get(Organization, org_id)
    if org is None:
        raise NotFoundError("Organization not found")
    return org


async def set_org_webhook_url(session: AsyncSession, org_id: int, url: str | None) -> Organization:
    org = await get_organization(session, org_id)
    org.webhook_url = url
    org.webhook_updated_at = utcnow()
    await session.flush()
    return org


async def rotate_org_secret(session: AsyncSession, org_id: int) -> Organization:
    org = await get_organization(session, org_id)
    now = utcnow()
    org.webhook_previous_secret = org.webhook_secret
    org.webhook_previous_secret_expires_at = now + ROTATION_OVERLAP
    org.webhook_secret = generate_webhook_secret()
    org.webhook_updated_at = now
    await session.flush()
    return org


async def list_endpoints(session: AsyncSession, org_id: int) -> list[WebhookEndpoint]:
    result = await session.execute(
        select(WebhookEndpoint)
        .where(WebhookEndpoint.org_id == org_id)
        .order_by(WebhookEndpoint.created_at, WebhookEndpoint.id)
    )
    return list(result.scalars())


async def get_endpoint(session: AsyncSession, org_id: int, endpoint_id: str) -> WebhookEndpoint:
    row = (
        await session.execute(
            select(WebhookEndpoint).where(
                WebhookEndpoint.org_id == org_id, WebhookEndpoint.id == endpoint_id
            )
        )
    ).scalar_one_or_none()
    if row is None:
        raise NotFoundError("Webhook endpoint not found")
    return row


async def create_endpoint(
    session: AsyncSession, org_id: int, *, label: str, url: str, events: list[str]
) -> WebhookEndpoint:
    now = utcnow()
    row = WebhookEndpoint(
        id=str(uuid.uuid4()),
        org_id=org_id,
        label=label,
        url=url,
        events=events,
        status="active",
        secret=generate_webhook_secret(),
        created_at=now,
        updated_at=now,
    )
    session.add(row)
    await session.flush()
    return row


async def update_endpoint(
    session: AsyncSession, org_id: int, endpoint_id: str, fields: dict[str, Any]
) -> WebhookEndpoint:
    row = await get_endpoint(session, org_id, endpoint_id)
    for key, value in fields.items():
        setattr(row, key, value)
    row.updated_at = utcnow()
    await session.flush()
    return row


async def rotate_endpoint_secret(
    session: AsyncSession, org_id: int, endpoint_id: str
) -> WebhookEndpoint:
    row = await get_endpoint(session, org_id, endpoint_id)
    now = utcnow()
    row.previous_secret = row.secret
    row.previous_secret_expires_at = now + ROTATION_OVERLAP
    row.secret = generate_webhook_secret()
    row.updated_at = now
    await session.flush()
    return row


async def delete_endpoint(session: AsyncSession, org_id: int, endpoint_id: str) -> None:
    row = await get_endpoint(session, org_id, endpoint_id)
    await session.delete(row)
    await session.flush()
