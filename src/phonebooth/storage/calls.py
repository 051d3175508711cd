"""Calls and their transcripts."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Select, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from phonebooth.core.errors import NotFoundError
from phonebooth.storage.tables import Call, TranscriptEntry, utcnow

__all__ = [
    "CallFilters",
    "add_transcript_entries",
    "finish_call",
    "get_call",
    "get_call_any_org",
    "insert_call",
    "list_calls",
    "open_call_ids",
    "transcript",
    "update_call",
]


@dataclass(frozen=True)
class CallFilters:
    direction: str | None = None
    status: str | None = None
    from_number: str | None = None
    to_number: str | None = None
    agent_id: int | None = None
    start_date: datetime | None = None
    end_date: datetime | None = None


def _filtered(query: Select[Any], org_id: int, filters: CallFilters) -> Select[Any]:
    query = query.where(Call.org_id == org_id)
    if filters.direction:
        query = query.where(Call.direction == filters.direction)
    if filters.status:
        query = query.where(Call.status == filters.status)
    if filters.from_number:
        query = query.where(Call.from_number == filters.from_number)
    if filters.to_number:
        query = query.where(Call.to_number == filters.to_number)
    if filters.agent_id is not None:
        query = query.where(Call.agent_id == filters.agent_id)
    if filters.start_date:
        query = query.where(Call.start_time >= filters.start_date)
    if filters.end_date:
        query = query.where(Call.start_time <= filters.end_date)
    return query


async def list_calls(
    session: AsyncSession, org_id: int, filters: CallFilters, *, limit: int, offset: int
) -> tuple[list[Call], int]:
    base = _filtered(select(Call), org_id, filters)
    total = await session.scalar(select(func.count()).select_from(base.subquery()))
    rows = await session.execute(base.order_by(Call.id.desc()).limit(limit).offset(offset))
    return list(rows.scalars()), int(total or 0)


async def get_call(session: AsyncSession, org_id: int, call_id: int) -> Call:
    row = (
        await session.execute(select(Call).where(Call.org_id == org_id, Call.id == call_id))
    ).scalar_one_or_none()
    if row is None:
        raise NotFoundError("Call not found")
    return row


async def transcript(session: AsyncSession, call_id: int) -> list[TranscriptEntry]:
    result = await session.execute(
        select(TranscriptEntry)
        .where(TranscriptEntry.call_id == call_id)
        .order_by(TranscriptEntry.seq)
    )
    return list(result.scalars())


async def insert_call(session: AsyncSession, call: Call) -> Call:
    session.add(call)
    await session.flush()
    return call


async def get_call_any_org(session: AsyncSession, call_id: int) -> Call | None:
    """Internal lookup by id (the call runtime already knows which org the call is in)."""
    return await session.get(Call, call_id)


async def update_call(session: AsyncSession, call_id: int, fields: dict[str, Any]) -> None:
    await session.execute(update(Call).where(Call.id == call_id).values(**fields))


async def finish_call(
    session: AsyncSession, call_id: int, *, end_reason: str, end_time: datetime | None = None
) -> bool:
    """Close a call that is still in progress; False when it was already closed."""
    status = "failed" if end_reason == "error" else "completed"
    result = await session.execute(
        update(Call)
        .where(Call.id == call_id, Call.status == "in_progress")
        .values(status=status, end_reason=end_reason, end_time=end_time or utcnow())
    )
    return bool(getattr(result, "rowcount", 0))


async def open_call_ids(session: AsyncSession) -> list[int]:
    result = await session.execute(select(Call.id).where(Call.status == "in_progress"))
    return list(result.scalars())


async def add_transcript_entries(
    session: AsyncSession, call_id: int, entries: list[dict[str, Any]]
) -> None:
    start = int(
        await session.scalar(
            select(func.coalesce(func.max(TranscriptEntry.seq), -1)).where(
                TranscriptEntry.call_id == call_id
            )
        )
        or 0
    )
    for offset, entry in enumerate(entries, start=1):
        session.add(TranscriptEntry(call_id=call_id, seq=start + offset, **entry))
    await session.flush()
