"""The simulated carrier's messages (contract section 8) as typed values. Pure: no sockets."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Any

__all__ = [
    "CLOSE_BAD_MESSAGE",
    "CLOSE_BUSY",
    "CLOSE_UNAUTHORIZED",
    "CLOSE_UNKNOWN_NUMBER",
    "CallerHangup",
    "CallerText",
    "Media",
    "ProtocolError",
    "Start",
    "parse_client_message",
    "parse_start",
]

CLOSE_UNAUTHORIZED = 4401
CLOSE_UNKNOWN_NUMBER = 4404
CLOSE_BUSY = 4503
CLOSE_BAD_MESSAGE = 4400


class ProtocolError(ValueError):
    """A message the carrier cannot act on; the text says what was wrong."""


@dataclass(frozen=True)
class Start:
    api_key: str
    to_number: str
    from_number: str
    audio: bool


@dataclass(frozen=True)
class CallerText:
    text: str


@dataclass(frozen=True)
class CallerHangup:
    pass


@dataclass(frozen=True)
class Media:
    """20 ms of 8 kHz mu-law caller audio."""

    payload: bytes


def _decode(raw: str | bytes) -> dict[str, Any]:
    try:
        message = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise ProtocolError("message is not JSON") from None
    if not isinstance(message, dict) or not isinstance(message.get("type"), str):
        raise ProtocolError("message must be a JSON object with a string 'type'")
    return message


def _string(message: dict[str, Any], key: str) -> str:
    value = message.get(key)
    if not isinstance(value, str) or not value:
        raise ProtocolError(f"'{key}' must be a non-empty string")
    return value


def parse_start(raw: str | bytes) -> Start:
    message = _decode(raw)
    if message["type"] != "start":
        raise ProtocolError("the first message must be {'type': 'start', ...}")
    audio = message.get("audio", False)
    if not isinstance(audio, bool):
        raise ProtocolError("'audio' must be a boolean")
    return Start(
        api_key=_string(message, "api_key"),
        to_number=_string(message, "to_number"),
        from_number=_string(message, "from_number"),
        audio=audio,
    )


def parse_client_message(raw: str | bytes) -> CallerText | CallerHangup | Media:
    message = _decode(raw)
    kind = message["type"]
    if kind == "caller_text":
        text = message.get("text")
        if not isinstance(text, str):
            raise ProtocolError("'text' must be a string")
        return CallerText(text)
    if kind == "hangup":
        return CallerHangup()
    if kind == "media":
        payload = message.get("payload")
        if not isinstance(payload, str):
            raise ProtocolError("'payload' must be a base64 string")
        try:
            return Media(base64.b64decode(payload, validate=True))
        except ValueError:
            raise ProtocolError("'payload' is not valid base64") from None
    raise ProtocolError(f"unknown message type {kind!r}")
