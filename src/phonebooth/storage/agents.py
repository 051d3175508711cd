"""Agents: the default configurations phone numbers fall back to."""

from __future__ import annotations

from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from phonebooth.core.errors import ConflictError, NotFoundError
from phonebooth.storage.tables import Agent, PhoneNumber, utcnow

__all__ = ["create_agent", "delete_agent", "get_agent", "list_agents", "update_agent"]


async def list_agents(session: AsyncSession, org_id: int) -> list[Agent]:
    result = await session.execute(select(Agent).where(Agent.org_id == org_id).order_by(Agent.id))
    return list(result.scalars())


async def get_agent(session: AsyncSession, org_id: int, agent_id: int) -> Agent:
    row = (
        await session.execute(select(Agent).where(Agent.org_id == org_id, Agent.id == agent_id))
    ).scalar_one_or_none()
    if row is None:
        raise NotFoundError("Agent not found")
    return row


async def create_agent(session: AsyncSession, org_id: int, fields: dict[str, Any]) -> Agent:
    now = utcnow()
    row = Agent(org_id=org_id, created_at=now, updated_at=now, **fields)
    session.add(row)
    await session.flush()
    return row


async def update_agent(
    session: AsyncSession, org_id: int, agent_id: int, fields: dict[str, Any]
) -> Agent:
    row = await get_agent(session, org_id, agent_id)
    for key, value in fields.items():
        setattr(row, key, value)
    row.updated_at = utcnow()
    await session.flush()
    return row


async def delete_agent(session: AsyncSession, org_id: int, agent_id: int) -> None:
    row = await get_agent(session, org_id, agent_id)
    in_use = (
        await session.execute(
            select(PhoneNumber.number)
            .where(
                PhoneNumber.org_id == org_id,
                or_(
                    PhoneNumber.inbound_agent_id == agent_id,
                    PhoneNumber.outbound_agent_id == agent_id,
                ),
            )
            .limit(1)
        )
    ).scalar_one_or_none()
    if in_use is not None:
        raise ConflictError(f"Agent {agent_id} is used by phone number {in_use}; reassign it first")
    await session.delete(row)
    await session.flush()
