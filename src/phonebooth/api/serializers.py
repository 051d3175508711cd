"""Database rows as the contract's JSON objects."""

from __future__ import annotations

from typing import Any

from phonebooth.calls.report import call_json, transcript_json
from phonebooth.contract.agent_config import redact_tools
from phonebooth.core.secrets import secret_hint
from phonebooth.core.timefmt import iso
from phonebooth.storage.tables import (
    Agent,
    ApiKey,
    Organization,
    PhoneNumber,
    WebhookDelivery,
    WebhookEndpoint,
)

__all__ = [
    "agent_json",
    "api_key_json",
    "call_json",
    "delivery_json",
    "endpoint_json",
    "iso",
    "number_json",
    "org_webhook_json",
    "transcript_json",
]


def agent_json(agent: Agent, *, reveal_headers: bool = False) -> dict[str, Any]:
    tools = list(agent.tools or [])
    return {
        "id": agent.id,
        "name": agent.name,
        "prompt": agent.prompt,
        "voice": agent.voice,
        "product": agent.product,
        "background_track": agent.background_track,
        "tools": tools if reveal_headers else redact_tools(tools),
        "inbound_speak_order": agent.inbound_speak_order,
        "first_message": agent.first_message,
        "created_at": iso(agent.created_at),
        "updated_at": iso(agent.updated_at),
    }


def number_json(number: PhoneNumber) -> dict[str, Any]:
    return {
        "id": number.id,
        "number": number.number,
        "label": number.label,
        "source": number.source,
        "status": number.status,
        "inbound_agent_id": number.inbound_agent_id,
        "outbound_agent_id": number.outbound_agent_id,
        "created_at": iso(number.created_at),
    }


def org_webhook_json(org: Organization) -> dict[str, Any]:
    return {
        "url": org.webhook_url,
        "secret": org.webhook_secret,
        "created_at": iso(org.webhook_created_at),
        "updated_at": iso(org.webhook_updated_at),
    }


def endpoint_json(endpoint: WebhookEndpoint, *, with_secret: bool = False) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": endpoint.id,
        "label": endpoint.label,
        "url": endpoint.url,
        "events": list(endpoint.events or []),
        "status": endpoint.status,
        "secret_hint": secret_hint(endpoint.secret),
        "created_at": iso(endpoint.created_at),
        "updated_at": iso(endpoint.updated_at),
    }
    if with_secret:
        body["secret"] = endpoint.secret
    return body


def api_key_json(key: ApiKey, *, plaintext: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": key.id,
        "name": key.name,
        "role": key.role,
        "key_prefix": key.key_prefix,
        "is_active": key.is_active,
        "created_at": iso(key.created_at),
        "last_used_at": iso(key.last_used_at),
        "revoked_at": iso(key.revoked_at),
    }
    if plaintext is not None:
        body["key"] = plaintext
    return body


def delivery_json(row: WebhookDelivery) -> dict[str, Any]:
    """One deliveries-log entry; the payload stays internal (it can be large, and has PII)."""
    return {
        "id": row.id,
        "event_id": row.event_id,
        "event_type": row.event_type,
        "call_id": row.call_id,
        "source": row.source,
        "endpoint_id": row.endpoint_id,
        "endpoint_label": row.endpoint_label,
        "url": row.url,
        "status": row.status,
        "attempt_count": row.attempt_count,
        "http_status": row.http_status,
        "failure_category": row.failure_category,
        "errors": list(row.errors) if row.errors is not None else None,
        "latency_ms": row.latency_ms,
        "last_attempt_at": iso(row.last_attempt_at),
        "next_retry_at": iso(row.next_retry_at),
    }
