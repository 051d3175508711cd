"""The outbox of non-blocking events: enqueue with the state change, claim, record attempts.

An event is written in the same transaction as the change that caused it (call ended, tool
executed), so no crash can leave a change without its event, or an event without its change.
A worker claims due rows for a lease; a row whose worker died becomes claimable again when the
lease ends, which makes delivery at-least-once. Receivers deduplicate by event id.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from sqlalchemy import or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from phonebooth.storage.receivers import load_receivers
from phonebooth.storage.tables import Organization, WebhookDelivery, WebhookEndpoint, utcnow
from phonebooth.storage.webhook_config import active_secrets

__all__ = [
    "FAILING_AFTER",
    "LEASE",
    "AttemptRecord",
    "DeliveryStatus",
    "EndpointOutcome",
    "SendTarget",
    "claim_due",
    "enqueue_event",
    "load_targets",
    "new_test_delivery",
    "note_endpoint_outcome",
    "record_attempt",
    "store_attempted",
]

DeliveryStatus = Literal["delivered", "retrying", "failed"]
EndpointOutcome = Literal["delivered", "retry", "gone"]

LEASE = timedelta(seconds=60)  # longer than one attempt (30 s timeout) with room to record it
FAILING_AFTER = timedelta(hours=24)  # continuous failure before an endpoint is `failing`


def _pending_row(
    *,
    org_id: int,
    event_id: str,
    event_type: str,
    call_id: int | None,
    source: Literal["legacy", "endpoint"],
    endpoint_id: str | None,
    endpoint_label: str | None,
    url: str,
    data: dict[str, Any],
    next_retry_at: datetime | None,
) -> WebhookDelivery:
    return WebhookDelivery(
        id=str(uuid.uuid4()),
        org_id=org_id,
        event_id=event_id,
        event_type=event_type,
        call_id=call_id,
        source=source,
        endpoint_id=endpoint_id,
        endpoint_label=endpoint_label,
        url=url,
        blocking=False,
        payload={"data": data, "type": event_type},
        status="retrying",
        attempt_count=0,
        # Insertion time, not the caller's clock: the deliveries log pages by created_at.
        created_at=utcnow(),
        next_retry_at=next_retry_at,
    )


async def enqueue_event(
    session: AsyncSession,
    *,
    org_id: int,
    legacy_type: str | None,
    endpoint_type: str,
    data: dict[str, Any],
    call_id: int | None,
    now: datetime,
) -> list[WebhookDelivery]:
    """One event (one event id) as one pending row per receiver; the caller commits.

    The rows join the caller's transaction, so they exist exactly when the state change does.
    Secrets are not copied: they are looked up at send time, so a rotation applies to retries.
    """
    event_id = str(uuid.uuid4())
    receivers = await load_receivers(
        session,
        org_id,
        legacy_type=legacy_type,
        endpoint_type=endpoint_type,
        blocking=False,
        now=now,
    )
    rows = [
        _pending_row(
            org_id=org_id,
            event_id=event_id,
            call_id=call_id,
            **receiver.delivery_fields(),
            data=data,
            next_retry_at=now,
        )
        for receiver in receivers
    ]
    session.add_all(rows)
    await session.flush()
    return rows


def new_test_delivery(
    endpoint: WebhookEndpoint, *, event_type: str, data: dict[str, Any]
) -> WebhookDelivery:
    """A row for a one-off test send, in no session yet.

    It is stored only once attempted (`store_attempted`), so a crash in the middle of a test
    send cannot leave a delivery pending forever.
    """
    return _pending_row(
        org_id=endpoint.org_id,
        event_id=str(uuid.uuid4()),
        event_type=event_type,
        call_id=None,
        source="endpoint",
        endpoint_id=endpoint.id,
        endpoint_label=endpoint.label,
        url=endpoint.url,
        data=data,
        next_retry_at=None,
    )


async def store_attempted(
    session: AsyncSession, delivery: WebhookDelivery, record: AttemptRecord
) -> None:
    """Add a row that was attempted before it was stored (a test send); the caller commits."""
    delivery.status = record.status
    delivery.url = record.url
    delivery.attempt_count += 1
    delivery.http_status = record.http_status
    delivery.failure_category = record.failure_category
    delivery.errors = record.errors
    delivery.latency_ms = record.latency_ms
    delivery.first_attempt_at = delivery.first_attempt_at or record.attempted_at
    delivery.last_attempt_at = record.attempted_at
    delivery.next_retry_at = record.next_retry_at if record.status == "retrying" else None
    session.add(delivery)
    await session.flush()


async def claim_due(
    session: AsyncSession, now: datetime, limit: int, lease: timedelta = LEASE
) -> list[WebhookDelivery]:
    """Claim up to `limit` due rows until `now + lease`, oldest due first, and commit.

    One UPDATE whose subquery picks the rows: on PostgreSQL the subquery locks them with
    `FOR UPDATE SKIP LOCKED`, so concurrent workers take disjoint rows without waiting on each
    other; SQLite runs one writer at a time, which gives the same guarantee. The commit makes
    the claim visible to every other worker before anything is sent.
    """
    is_due = (
        WebhookDelivery.status == "retrying",
        WebhookDelivery.next_retry_at <= now,
        or_(WebhookDelivery.claimed_until.is_(None), WebhookDelivery.claimed_until < now),
    )
    # A read first: an idle poll then never takes SQLite's write lock, which would make every
    # other writer of the installation wait behind it.
    if await session.scalar(select(WebhookDelivery.id).where(*is_due).limit(1)) is None:
        await session.commit()
        return []
    due = (
        select(WebhookDelivery.id)
        .where(*is_due)
        .order_by(WebhookDelivery.next_retry_at, WebhookDelivery.id)
        .limit(limit)
    )
    if session.get_bind().dialect.name == "postgresql":
        due = due.with_for_update(skip_locked=True)
    claim = (
        update(WebhookDelivery)
        .where(WebhookDelivery.id.in_(due.scalar_subquery()))
        .values(claimed_until=now + lease)
        .returning(WebhookDelivery)
        .execution_options(synchronize_session=False, populate_existing=True)
    )
    rows = list((await session.execute(claim)).scalars())
    await session.commit()
    rows.sort(key=lambda row: (row.next_retry_at or now, row.id))
    return rows


@dataclass(frozen=True)
class SendTarget:
    """Where a delivery goes now and the secrets that sign it (newest first).

    For an endpoint it also carries the status read with them, so that the dispatcher can tell
    when an answer changes nothing about the endpoint and skip the update.
    """

    url: str
    secrets: tuple[str, ...]
    endpoint_status: str | None = None
    failing_since: datetime | None = None

    def may_change_endpoint(self, outcome: EndpointOutcome, now: datetime) -> bool:
        """Whether `note_endpoint_outcome` could change anything, judged on the status as read.

        Skipping the no-op updates keeps the common case (a healthy endpoint answering 2xx) to
        one statement per delivery. The status may have moved since it was read; the worst
        case is a change applied one attempt later.
        """
        if self.endpoint_status is None:  # the single webhook has no status
            return False
        if outcome == "delivered":
            return self.failing_since is not None or self.endpoint_status == "failing"
        if outcome == "gone":
            return self.endpoint_status != "disabled"
        if self.failing_since is None:
            return True
        return self.endpoint_status == "active" and now - self.failing_since >= FAILING_AFTER


async def load_targets(
    session: AsyncSession,
    deliveries: Sequence[WebhookDelivery],
    now: datetime,
    *,
    include_disabled: bool = False,
) -> dict[str, SendTarget | str]:
    """For each delivery id: its receiver's current URL and secrets, or why it has none.

    Read at send time rather than copied at enqueue time, so a rotated secret or a corrected URL
    applies to retries, and a deleted, disabled or unset receiver stops getting events.
    `include_disabled` is for an explicit test send, which an operator may aim at a disabled
    endpoint to see whether it is back.
    """
    endpoint_ids = {d.endpoint_id for d in deliveries if d.endpoint_id is not None}
    org_ids = {d.org_id for d in deliveries if d.source == "legacy"}
    endpoints: dict[str, WebhookEndpoint] = {}
    orgs: dict[int, Organization] = {}
    if endpoint_ids:
        found = await session.execute(
            select(WebhookEndpoint).where(WebhookEndpoint.id.in_(endpoint_ids))
        )
        endpoints = {e.id: e for e in found.scalars()}
    if org_ids:
        found_orgs = await session.execute(select(Organization).where(Organization.id.in_(org_ids)))
        orgs = {o.id: o for o in found_orgs.scalars()}
    targets: dict[str, SendTarget | str] = {}
    for delivery in deliveries:
        targets[delivery.id] = _target(delivery, endpoints, orgs, now, include_disabled)
    return targets


def _target(
    delivery: WebhookDelivery,
    endpoints: dict[str, WebhookEndpoint],
    orgs: dict[int, Organization],
    now: datetime,
    include_disabled: bool,
) -> SendTarget | str:
    if delivery.source == "legacy":
        org = orgs.get(delivery.org_id)
        if org is None or not org.webhook_url:
            return "the webhook URL is no longer set"
        secrets = active_secrets(
            org.webhook_secret,
            org.webhook_previous_secret,
            org.webhook_previous_secret_expires_at,
            now,
        )
        return SendTarget(org.webhook_url, tuple(secrets))
    endpoint = endpoints.get(delivery.endpoint_id or "")
    if endpoint is None or endpoint.org_id != delivery.org_id:
        return "the webhook endpoint was deleted"
    if endpoint.status == "disabled" and not include_disabled:
        return "the webhook endpoint is disabled"
    secrets = active_secrets(
        endpoint.secret, endpoint.previous_secret, endpoint.previous_secret_expires_at, now
    )
    return SendTarget(endpoint.url, tuple(secrets), endpoint.status, endpoint.failing_since)


@dataclass(frozen=True)
class AttemptRecord:
    """The outcome of one attempt, as the deliveries log shows it."""

    status: DeliveryStatus
    url: str
    http_status: int | None
    failure_category: str | None
    errors: list[str] | None
    latency_ms: int | None
    attempted_at: datetime
    next_retry_at: datetime | None


async def record_attempt(
    session: AsyncSession, delivery: WebhookDelivery, record: AttemptRecord
) -> bool:
    """Store one attempt on a row this worker claimed; False when the claim was lost.

    The update is fenced on the lease this worker holds (`claimed_until` as claimed): a worker
    that outlived its lease (its row was claimed again elsewhere) must not overwrite the newer
    worker's bookkeeping. The caller commits.
    """
    if record.status == "retrying" and record.next_retry_at is None:
        raise ValueError("a retrying delivery needs next_retry_at")
    fence = (
        WebhookDelivery.claimed_until.is_(None)
        if delivery.claimed_until is None
        else WebhookDelivery.claimed_until == delivery.claimed_until
    )
    result = await session.execute(
        update(WebhookDelivery)
        .where(
            WebhookDelivery.id == delivery.id,
            WebhookDelivery.status == "retrying",
            WebhookDelivery.attempt_count == delivery.attempt_count,
            fence,
        )
        .values(
            status=record.status,
            url=record.url,
            attempt_count=delivery.attempt_count + 1,
            http_status=record.http_status,
            failure_category=record.failure_category,
            errors=record.errors,
            latency_ms=record.latency_ms,
            first_attempt_at=delivery.first_attempt_at or record.attempted_at,
            last_attempt_at=record.attempted_at,
            next_retry_at=record.next_retry_at if record.status == "retrying" else None,
            claimed_until=None,
        )
        .execution_options(synchronize_session=False)
    )
    return bool(getattr(result, "rowcount", 0))


async def note_endpoint_outcome(
    session: AsyncSession, endpoint_id: str, outcome: EndpointOutcome, now: datetime
) -> None:
    """Keep an endpoint's status in step with what it answers (contract 6); caller commits.

    `failing_since` marks the start of the current run of failures: a 2xx clears it (and turns
    `failing` back to `active`); a failure 24 h or more after it marks the endpoint `failing`,
    which is informational, since a failing endpoint still gets events. A 410 disables it.
    """
    # Conditional UPDATEs rather than read-modify-write: several workers may report on the
    # same endpoint at once, and a 410 must never be overwritten by a stale `active`.
    endpoint = WebhookEndpoint
    this = endpoint.id == endpoint_id
    statements: list[Any]
    if outcome == "delivered":
        statements = [  # usually nothing to change: match no row, so no row lock is taken
            update(endpoint)
            .where(this, endpoint.failing_since.is_not(None))
            .values(failing_since=None),
            update(endpoint)
            .where(this, endpoint.status == "failing")
            .values(status="active", updated_at=now),
        ]
    elif outcome == "gone":
        statements = [
            update(endpoint)
            .where(this, endpoint.status != "disabled")
            .values(status="disabled", updated_at=now),
        ]
    else:
        statements = [
            update(endpoint)
            .where(this, endpoint.failing_since.is_(None))
            .values(failing_since=now),
            update(endpoint)
            .where(this, endpoint.status == "active", endpoint.failing_since <= now - FAILING_AFTER)
            .values(status="failing", updated_at=now),
        ]
    for statement in statements:
        await session.execute(statement.execution_options(synchronize_session=False))
