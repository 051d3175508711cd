"""Phone numbers: unique per installation, each owned by one organization."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from phonebooth.core.errors import ConflictError, NotFoundError
from phonebooth.storage.tables import Agent, Organization, PhoneNumber

__all__ = [
    "create_number",
    "delete_number",
    "find_number",
    "find_route",
    "get_number",
    "list_numbers",
    "update_number",
]


async def list_numbers(session: AsyncSession, org_id: int) -> list[PhoneNumber]:
    result = await session.execute(
        select(PhoneNumber).where(PhoneNumber.org_id == org_id).order_by(PhoneNumber.id)
    )
    return list(result.scalars())


async def get_number(session: AsyncSession, org_id: int, number_id: int) -> PhoneNumber:
    row = (
        await session.execute(
            select(PhoneNumber).where(PhoneNumber.org_id == org_id, PhoneNumber.id == number_id)
        )
    ).scalar_one_or_none()
    if row is None:
        raise NotFoundError("Phone number not found")
    return row


async def find_number(session: AsyncSession, number: str) -> PhoneNumber | None:
    """Installation-wide lookup by the dialled number (call setup, before any org is known)."""
    result = await session.execute(select(PhoneNumber).where(PhoneNumber.number == number))
    return result.scalar_one_or_none()


async def find_route(
    session: AsyncSession, number: str
) -> tuple[PhoneNumber, Organization, Agent | None] | None:
    """The number, its organization and its default agent in one round trip (call setup)."""
    query = (
        select(PhoneNumber, Organization, Agent)
        .join(Organization, Organization.id == PhoneNumber.org_id)
        .outerjoin(Agent, Agent.id == PhoneNumber.inbound_agent_id)
        .where(PhoneNumber.number == number)
    )
    row = (await session.execute(query)).first()
    if row is None:
        return None
    return row[0], row[1], row[2]


async def _exists(session: AsyncSession, number: str, exclude_id: int | None = None) -> bool:
    query = select(PhoneNumber.id).where(PhoneNumber.number == number)
    if exclude_id is not None:
        query = query.where(PhoneNumber.id != exclude_id)
    return (await session.execute(query.limit(1))).scalar_one_or_none() is not None


async def create_number(session: AsyncSession, org_id: int, fields: dict[str, Any]) -> PhoneNumber:
    if await _exists(session, fields["number"]):
        raise ConflictError(f"Phone number {fields['number']} already exists")
    row = PhoneNumber(org_id=org_id, **fields)
    session.add(row)
    try:
        await session.flush()
    except IntegrityError:
        raise ConflictError(f"Phone number {fields['number']} already exists") from None
    return row


async def update_number(
    session: AsyncSession, org_id: int, number_id: int, fields: dict[str, Any]
) -> PhoneNumber:
    row = await get_number(session, org_id, number_id)
    if "number" in fields and await _exists(session, fields["number"], exclude_id=number_id):
        raise ConflictError(f"Phone number {fields['number']} already exists")
    for key, value in fields.items():
        setattr(row, key, value)
    await session.flush()
    return row


async def delete_number(session: AsyncSession, org_id: int, number_id: int) -> None:
    row = await get_number(session, org_id, number_id)
    await session.delete(row)
    await session.flush()
