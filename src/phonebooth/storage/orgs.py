"""Organizations and their API keys."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from phonebooth.core.errors import NotFoundError
from phonebooth.core.secrets import (
    generate_api_key,
    generate_webhook_secret,
    hash_api_key,
    key_prefix,
)
from phonebooth.storage.tables import ApiKey, Organization, utcnow

__all__ = [
    "authenticate_key",
    "count_keys",
    "create_api_key",
    "create_organization",
    "default_organization",
    "list_api_keys",
    "revoke_api_key",
]

_LAST_USED_RESOLUTION = timedelta(minutes=1)


async def create_organization(session: AsyncSession, name: str) -> Organization:
    """An organization is born with its single-webhook secret, so signing works before a URL."""
    org = Organization(name=name, webhook_secret=generate_webhook_secret())
    session.add(org)
    await session.flush()
    return org


async def default_organization(session: AsyncSession) -> Organization | None:
    result = await session.execute(select(Organization).order_by(Organization.id).limit(1))
    return result.scalar_one_or_none()


async def count_keys(session: AsyncSession) -> int:
    return int(await session.scalar(select(func.count()).select_from(ApiKey)) or 0)


async def create_api_key(
    session: AsyncSession, org_id: int, *, name: str, role: str, key: str | None = None
) -> tuple[ApiKey, str]:
    """Store a key's hash only; the plaintext is returned once to the caller."""
    plaintext = key or generate_api_key()
    row = ApiKey(
        id=str(uuid.uuid4()),
        org_id=org_id,
        name=name,
        role=role,
        key_hash=hash_api_key(plaintext),
        key_prefix=key_prefix(plaintext),
        is_active=True,
    )
    session.add(row)
    await session.flush()
    return row, plaintext


async def authenticate_key(
    session: AsyncSession, plaintext: str, *, now: datetime | None = None
) -> ApiKey | None:
    """The active key with this plaintext, touching `last_used_at` at most once a minute."""
    row = (
        await session.execute(select(ApiKey).where(ApiKey.key_hash == hash_api_key(plaintext)))
    ).scalar_one_or_none()
    if row is None or not row.is_active:
        return None
    now = now or utcnow()
    if row.last_used_at is None or now - row.last_used_at >= _LAST_USED_RESOLUTION:
        await session.execute(update(ApiKey).where(ApiKey.id == row.id).values(last_used_at=now))
        row.last_used_at = now
    return row


async def list_api_keys(session: AsyncSession, org_id: int) -> list[ApiKey]:
    result = await session.execute(
        select(ApiKey).where(ApiKey.org_id == org_id).order_by(ApiKey.created_at, ApiKey.id)
    )
    return list(result.scalars())


async def revoke_api_key(session: AsyncSession, org_id: int, key_id: str) -> ApiKey:
    row = (
        await session.execute(select(ApiKey).where(ApiKey.org_id == org_id, ApiKey.id == key_id))
    ).scalar_one_or_none()
    if row is None:
        raise NotFoundError("API key not found")
    if row.is_active:
        row.is_active = False
        row.revoked_at = utcnow()
    await session.flush()
    return row
