"""`/v1/developer/webhook-deliveries`: the log of what was sent to which receiver, and how it went.

Any key of the organization may read it (it holds no secrets), so a `member` can debug its own
integration without an admin.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query

from phonebooth.api.deps import AnyCaller, Session
from phonebooth.api.serializers import delivery_json
from phonebooth.storage import deliveries as repo

__all__ = ["router"]

router = APIRouter(prefix="/v1/developer/webhook-deliveries", tags=["webhook deliveries"])

_MAX_BIGINT = 2**63 - 1  # beyond this PostgreSQL cannot even compare, so say 400 up front


@router.get("")
async def list_deliveries(
    caller: AnyCaller,
    session: Session,
    event_type: Annotated[str | None, Query(max_length=64)] = None,
    status: Literal["delivered", "retrying", "failed"] | None = None,
    endpoint_id: Annotated[str | None, Query(max_length=36)] = None,
    call_id: Annotated[int | None, Query(ge=1, le=_MAX_BIGINT)] = None,
    since: datetime | None = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: str | None = None,
) -> dict[str, Any]:
    """Newest first; follow `next_cursor` (null on the last page) to read further back."""
    if since is not None and since.tzinfo is None:
        since = since.replace(tzinfo=UTC)  # the contract's timestamps are UTC
    filters = repo.DeliveryFilters(
        event_type=event_type,
        status=status,
        endpoint_id=endpoint_id,
        call_id=call_id,
        since=since,
    )
    rows, next_cursor = await repo.list_deliveries(
        session, caller.org_id, filters, limit=limit, cursor=cursor
    )
    return {
        "results": [delivery_json(r) for r in rows],
        "has_more": next_cursor is not None,
        "next_cursor": next_cursor,
        "limit": limit,
    }
