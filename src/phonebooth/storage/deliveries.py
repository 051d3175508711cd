"""The webhook deliveries log: recording one event sent to one receiver, and reading it back.

Reads page by keyset (newest first) rather than by offset, because the log keeps growing while
a client pages through it: an offset would shift and repeat or skip rows, a keyset does not.
"""

from __future__ import annotations

import base64
import binascii
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import Select, and_, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from phonebooth.core.errors import FieldError, ValidationFailed
from phonebooth.storage.tables import WebhookDelivery, utcnow

__all__ = [
    "DeliveryFilters",
    "decode_cursor",
    "encode_cursor",
    "list_deliveries",
    "record_delivery",
]

_CURSOR_SEPARATOR = "|"
_MAX_CURSOR_LENGTH = 200  # an honest cursor is about 90 characters
_MAX_ID_LENGTH = 36  # WebhookDelivery.id is String(36)


async def record_delivery(
    session: AsyncSession,
    *,
    org_id: int,
    event_id: str,
    event_type: str,
    call_id: int | None,
    source: Literal["endpoint", "legacy"],
    endpoint_id: str | None,
    endpoint_label: str | None,
    url: str,
    blocking: bool,
    payload: dict[str, Any] | None,
    status: str,
    attempt_count: int,
    http_status: int | None,
    failure_category: str | None,
    errors: list[str] | None,
    latency_ms: int | None,
    attempted_at: datetime | None,
    next_retry_at: datetime | None = None,
) -> WebhookDelivery:
    """Add one delivery row and flush it; the caller commits with the change that caused it.

    `created_at` is the insertion time (not `attempted_at`) so that new rows always sort ahead
    of rows a client has already paged past. `attempted_at` is both the first and the last
    attempt: a row is recorded after at most one attempt, and retries update it later.
    """
    row = WebhookDelivery(
        id=str(uuid.uuid4()),
        org_id=org_id,
        event_id=event_id,
        event_type=event_type,
        call_id=call_id,
        source=source,
        endpoint_id=endpoint_id,
        endpoint_label=endpoint_label,
        url=url,
        blocking=blocking,
        payload=payload,
        status=status,
        attempt_count=attempt_count,
        http_status=http_status,
        failure_category=failure_category,
        errors=list(errors) if errors is not None else None,
        latency_ms=latency_ms,
        created_at=utcnow(),
        first_attempt_at=attempted_at,
        last_attempt_at=attempted_at,
        next_retry_at=next_retry_at,
    )
    session.add(row)
    await session.flush()
    return row


@dataclass(frozen=True)
class DeliveryFilters:
    """What `GET /v1/developer/webhook-deliveries` may narrow by; None means "any"."""

    event_type: str | None = None
    status: str | None = None
    endpoint_id: str | None = None
    call_id: int | None = None
    since: datetime | None = None


def encode_cursor(created_at: datetime, delivery_id: str) -> str:
    """The position just after a row, opaque to clients so the format can change."""
    raw = f"{created_at.isoformat()}{_CURSOR_SEPARATOR}{delivery_id}".encode()
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    """`encode_cursor` reversed; anything else is a 400 on the `cursor` field, never a 500."""
    invalid = ValidationFailed([FieldError("cursor", "is not a valid cursor")])
    if not cursor or len(cursor) > _MAX_CURSOR_LENGTH:
        raise invalid
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        text = base64.urlsafe_b64decode(padded.encode("ascii")).decode("utf-8")
        stamp, separator, delivery_id = text.partition(_CURSOR_SEPARATOR)
        created_at = datetime.fromisoformat(stamp)
    except (ValueError, binascii.Error, UnicodeError):
        raise invalid from None
    if not separator or not delivery_id or len(delivery_id) > _MAX_ID_LENGTH:
        raise invalid
    if created_at.tzinfo is None:  # the UTC column refuses naive datetimes
        raise invalid
    return created_at, delivery_id


def _filtered(query: Select[Any], org_id: int, filters: DeliveryFilters) -> Select[Any]:
    query = query.where(WebhookDelivery.org_id == org_id)
    if filters.event_type is not None:
        query = query.where(WebhookDelivery.event_type == filters.event_type)
    if filters.status is not None:
        query = query.where(WebhookDelivery.status == filters.status)
    if filters.endpoint_id is not None:
        query = query.where(WebhookDelivery.endpoint_id == filters.endpoint_id)
    if filters.call_id is not None:
        query = query.where(WebhookDelivery.call_id == filters.call_id)
    if filters.since is not None:
        query = query.where(WebhookDelivery.created_at >= filters.since)
    return query


async def list_deliveries(
    session: AsyncSession,
    org_id: int,
    filters: DeliveryFilters,
    *,
    limit: int,
    cursor: str | None,
) -> tuple[list[WebhookDelivery], str | None]:
    """One page, newest first, and the cursor of the next page (None when this is the last).

    Ordered by (created_at, id) descending: the id breaks ties between rows written in the same
    microsecond, so the order is total and no row is repeated or skipped across pages.
    """
    query = _filtered(select(WebhookDelivery), org_id, filters)
    if cursor is not None:
        after_created, after_id = decode_cursor(cursor)
        query = query.where(
            or_(
                WebhookDelivery.created_at < after_created,
                and_(WebhookDelivery.created_at == after_created, WebhookDelivery.id < after_id),
            )
        )
    query = query.order_by(WebhookDelivery.created_at.desc(), WebhookDelivery.id.desc())
    rows = list((await session.execute(query.limit(limit + 1))).scalars())
    if len(rows) <= limit:
        return rows, None
    page = rows[:limit]
    last = page[-1]
    return page, encode_cursor(last.created_at, last.id)
