"""Webhook endpoint bodies and the event names the API accepts (contract sections 6 and 7)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

__all__ = ["EVENT_NAMES", "EndpointCreate", "EndpointUpdate", "WebhookUrl"]

EVENT_NAMES: tuple[str, ...] = (
    "telephony.incoming",
    "telephony.complete",
    "telephony.tool",
    "telephony.turn",
    "web.incoming",
    "web.complete",
    "web.tool",
    "web.turn",
    "sms.sent",
    "sms.failed",
    "sms.received",
    "call.graded",
    "call.data_extracted",
    "call.transfer_completed",
    "campaign.completed",
    "issue.reported",
    "issue.escalated",
    "test-call.completed",
    "alert.triggered",
)
_KNOWN = frozenset(EVENT_NAMES)


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


def _known_events(value: list[str]) -> list[str]:
    for name in value:
        if name not in _KNOWN:
            raise ValueError(f"unknown event name {name!r}")
    return list(dict.fromkeys(value))


class EndpointCreate(_Body):
    label: Annotated[str, Field(min_length=1, max_length=120)]
    url: str
    events: list[str] = Field(default_factory=list)

    _events = field_validator("events")(_known_events)


class EndpointUpdate(_Body):
    label: Annotated[str, Field(min_length=1, max_length=120)] | None = None
    url: str | None = None
    events: list[str] | None = None
    status: Literal["active", "disabled"] | None = None

    @field_validator("events")
    @classmethod
    def _events(cls, value: list[str] | None) -> list[str] | None:
        return None if value is None else _known_events(value)


class WebhookUrl(_Body):
    url: str | None = None
