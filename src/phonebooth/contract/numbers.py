"""Phone number bodies: E.164 numbers that the `phonenumbers` library calls possible."""

from __future__ import annotations

import re
from typing import Annotated, Literal

import phonenumbers
from pydantic import BaseModel, ConfigDict, Field, field_validator

__all__ = ["NumberCreate", "NumberUpdate", "check_e164"]

_E164 = re.compile(r"^\+[1-9]\d{1,14}$")


def check_e164(value: str) -> str:
    """`+` and 2 to 15 digits, not starting with 0, and *possible* (not necessarily valid)."""
    if not _E164.match(value):
        raise ValueError("must be an E.164 number: '+' then 2 to 15 digits, not starting with 0")
    try:
        parsed = phonenumbers.parse(value, None)
    except phonenumbers.NumberParseException:
        raise ValueError("is not a possible phone number") from None
    if not phonenumbers.is_possible_number(parsed):
        raise ValueError("is not a possible phone number")
    return value


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class NumberCreate(_Body):
    number: str
    label: Annotated[str, Field(max_length=200)] | None = None
    source: Literal["virtual", "sip", "twilio"] = "virtual"
    status: Literal["active"] = "active"
    inbound_agent_id: int | None = None
    outbound_agent_id: int | None = None

    _number = field_validator("number")(check_e164)


class NumberUpdate(_Body):
    number: str | None = None
    label: Annotated[str, Field(max_length=200)] | None = None
    source: Literal["virtual", "sip", "twilio"] | None = None
    status: Literal["active"] | None = None
    inbound_agent_id: int | None = None
    outbound_agent_id: int | None = None

    @field_validator("number")
    @classmethod
    def _number(cls, value: str | None) -> str | None:
        return None if value is None else check_e164(value)
