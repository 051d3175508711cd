"""The call object (contract sections 6 and 7): `call.complete` data plus setup details."""

from __future__ import annotations

from typing import Any

from phonebooth.contract.agent_config import redact_tools
from phonebooth.core.timefmt import iso
from phonebooth.storage.tables import Call, TranscriptEntry

__all__ = ["call_json", "complete_data", "transcript_json"]


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


def complete_data(
    call: Call, transcripts: list[TranscriptEntry], *, recording_url: str | None = None
) -> dict[str, Any]:
    """Exactly the `data` of `call.complete` (contract section 6).

    `recording_url` is signed by the caller: a link expires, so it is made when the object is.
    """
    duration = 0
    if call.end_time is not None:
        duration = max(0, int((call.end_time - call.start_time).total_seconds()))
    return {
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
        "recording_url": recording_url,
        "latency": call.latency or {},
        "transcripts": transcript_json(transcripts),
    }


def call_json(
    call: Call,
    transcripts: list[TranscriptEntry] | None = None,
    *,
    recording_url: str | None = None,
) -> dict[str, Any]:
    """The API's call object: `call.complete` data plus config, config_error, voice details."""
    body = complete_data(call, transcripts or [], recording_url=recording_url)
    if transcripts is None:
        body.pop("transcripts")
    body = {"id": call.id, **body}
    body.update(
        config=_redacted_config(call.config),
        config_error=call.config_error,
        webhook_latency_ms=call.webhook_latency_ms,
        voice_used=call.voice_used,
        voice_substituted=call.voice_substituted,
    )
    return body
