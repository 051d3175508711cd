"""Who receives an event: the single webhook first, then endpoints by creation time (2.1)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from sqlalchemy.ext.asyncio import AsyncSession

from phonebooth.storage.tables import Organization, WebhookEndpoint
from phonebooth.storage.webhook_config import active_secrets, get_organization, list_endpoints

__all__ = ["Receiver", "endpoint_event_type", "load_receivers"]

Direction = Literal["inbound", "web"]


@dataclass(frozen=True)
class Receiver:
    source: Literal["legacy", "endpoint"]
    receiver_id: str  # "legacy" or the endpoint's id: the `receiver` of config_error
    label: str | None
    url: str
    secrets: tuple[str, ...]  # newest first
    event_type: str

    def delivery_fields(self) -> dict[str, Any]:
        """How a delivery row names this receiver (the deliveries log's columns)."""
        return {
            "event_type": self.event_type,
            "source": self.source,
            "endpoint_id": None if self.source == "legacy" else self.receiver_id,
            "endpoint_label": self.label,
            "url": self.url,
        }


def endpoint_event_type(direction: Direction, event: str) -> str:
    """`incoming` -> `telephony.incoming` for phone calls, `web.incoming` for browser calls."""
    return f"{'web' if direction == 'web' else 'telephony'}.{event}"


def _legacy(org: Organization, event_type: str, now: datetime) -> Receiver | None:
    if not org.webhook_url:
        return None
    secrets = active_secrets(
        org.webhook_secret,
        org.webhook_previous_secret,
        org.webhook_previous_secret_expires_at,
        now,
    )
    return Receiver("legacy", "legacy", None, org.webhook_url, tuple(secrets), event_type)


def _endpoint(endpoint: WebhookEndpoint, event_type: str, now: datetime) -> Receiver:
    secrets = active_secrets(
        endpoint.secret, endpoint.previous_secret, endpoint.previous_secret_expires_at, now
    )
    return Receiver(
        "endpoint", endpoint.id, endpoint.label, endpoint.url, tuple(secrets), event_type
    )


async def load_receivers(
    session: AsyncSession,
    org_id: int,
    *,
    legacy_type: str | None,
    endpoint_type: str,
    blocking: bool,
    now: datetime,
) -> list[Receiver]:
    """Receivers in decision order. Blocking events need an explicit subscription (Decision)."""
    org = await get_organization(session, org_id)
    receivers: list[Receiver] = []
    if legacy_type is not None:
        legacy = _legacy(org, legacy_type, now)
        if legacy is not None:
            receivers.append(legacy)
    for endpoint in await list_endpoints(session, org_id):
        if endpoint.status == "disabled":
            continue
        events = list(endpoint.events or [])
        subscribed = endpoint_type in events or (not events and not blocking)
        if subscribed:
            receivers.append(_endpoint(endpoint, endpoint_type, now))
    return receivers
