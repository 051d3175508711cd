"""`/v1/calls`: call records, paged, with transcripts."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query

from phonebooth.api.deps import AnyCaller, Session, State
from phonebooth.api.serializers import call_json, transcript_json
from phonebooth.core.errors import ConflictError, NotFoundError
from phonebooth.storage import calls as repo

__all__ = ["router"]

router = APIRouter(prefix="/v1/calls", tags=["calls"])


def _utc(value: datetime | None) -> datetime | None:
    """A date without a zone is read as UTC, like every timestamp we write."""
    return value.replace(tzinfo=UTC) if value is not None and value.tzinfo is None else value


@router.get("")
async def list_calls(
    caller: AnyCaller,
    session: Session,
    state: State,
    direction: Literal["inbound", "outbound", "web"] | None = None,
    status: Literal["in_progress", "completed", "failed"] | None = None,
    from_number: str | None = None,
    to_number: str | None = None,
    agent_id: int | None = None,
    start_date: datetime | None = None,
    end_date: datetime | None = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> dict[str, Any]:
    start_date, end_date = _utc(start_date), _utc(end_date)
    filters = repo.CallFilters(
        direction=direction,
        status=status,
        from_number=from_number,
        to_number=to_number,
        agent_id=agent_id,
        start_date=start_date,
        end_date=end_date,
    )
    rows, total = await repo.list_calls(session, caller.org_id, filters, limit=limit, offset=offset)
    return {
        "results": [call_json(r, recording_url=state.recordings.url_for(r)) for r in rows],
        "total": total,
        "limit": limit,
        "offset": offset,
    }


@router.get("/{call_id}")
async def get_call(
    call_id: int, caller: AnyCaller, session: Session, state: State
) -> dict[str, Any]:
    row = await repo.get_call(session, caller.org_id, call_id)
    entries = await repo.transcript(session, row.id)
    return call_json(row, entries, recording_url=state.recordings.url_for(row))


@router.get("/{call_id}/transcript")
async def get_transcript(call_id: int, caller: AnyCaller, session: Session) -> dict[str, Any]:
    row = await repo.get_call(session, caller.org_id, call_id)
    return {
        "call_id": row.id,
        "transcripts": transcript_json(await repo.transcript(session, row.id)),
    }


@router.get("/{call_id}/audio")
async def get_audio(
    call_id: int, caller: AnyCaller, session: Session, state: State
) -> dict[str, Any]:
    """A signed link to the recording, valid for an hour; 404 until the call has one."""
    row = await repo.get_call(session, caller.org_id, call_id)
    if not row.recording_path:
        raise NotFoundError(f"Call {call_id} has no recording")
    return {"url": state.recordings.signed_url(row.id)}


@router.post("/{call_id}/hangup")
async def hangup(call_id: int, caller: AnyCaller, session: Session, state: State) -> dict[str, Any]:
    """End a live call with `agent_end`; 409 when the call is not live in this server."""
    row = await repo.get_call(session, caller.org_id, call_id)
    live = state.registry.get(row.id)
    if row.status != "in_progress" or live is None:
        raise ConflictError(f"Call {call_id} is not in progress")
    live.request_end("agent_end")
    return {"call_id": row.id, "status": "ending"}
