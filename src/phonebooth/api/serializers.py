"""Database rows as the contract's JSON objects."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from phonebooth.contract.agent_config import redact_tools
from phonebooth.core.secrets import secret_hint
from phonebooth.storage.tables import (
    Agent,
    ApiKey,
    Call,
    Organization,
    PhoneNumber,
    TranscriptEntry,
    WebhookEndpoint,
)

__all__ = [
    "agent_json",
    "api_key_json",
    "call_json",
    "endpoint_json",
    "iso",
    "number_json",
    "org_webhook_json",
    "transcript_json",
]


def iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


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


def transcript_json(entries: list[TranscriptEntry]) -> list[dict[str, Any]]:
    return [
        {
            "role": entry.role,
            "content_type": entry.content_type,
            "content": entry.content,
            "start_ms": entry.start_ms,
            "end_ms": entry.end_ms,
        }
        for entry in entries
    ]


def _redacted_config(config: dict[str, Any] | None) -> dict[str, Any] | None:
    if config is None:
        return None
    return {**config, "tools": redact_tools(list(config.get("tools") or []))}


def call_json(call: Call, transcripts: list[TranscriptEntry] | None = None) -> dict[str, Any]:
    """The call object: `call.complete` data plus config, config_error and voice details."""
    duration = 0
    if call.end_time is not None:
        duration = max(0, int((call.end_time - call.start_time).total_seconds()))
    body: dict[str, Any] = {
        "id": call.id,
        "call_id": call.id,
        "direction": call.direction,
        "from_number": call.from_number,
        "to_number": call.to_number,
        "start_time": iso(call.start_time),
        "end_time": iso(call.end_time),
        "duration_seconds": duration,
        "status": call.status,
        "end_reason": call.end_reason,
        "product": call.product,
        "voice": call.voice,
        "config_source": call.config_source,
        "agent_id": call.agent_id,
        "transfer_number": call.transfer_number,
        "recording_url": None,
        "latency": call.latency or {},
        "config": _redacted_config(call.config),
        "config_error": call.config_error,
        "webhook_latency_ms": call.webhook_latency_ms,
        "voice_used": call.voice_used,
        "voice_substituted": call.voice_substituted,
    }
    if transcripts is not None:
        body["transcripts"] = transcript_json(transcripts)
    return body
