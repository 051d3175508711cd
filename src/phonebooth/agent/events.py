"""Typed events the conversation emits; the call runtime forwards and persists them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

__all__ = [
    "AgentEvent",
    "AgentText",
    "AgentTurnEnd",
    "EndRequested",
    "EventSink",
    "ToolFinished",
    "ToolStarted",
    "TranscriptRow",
    "TurnLatency",
]


@dataclass(frozen=True)
class AgentText:
    """A piece of the agent's reply, as soon as the model produced it."""

    delta: str


@dataclass(frozen=True)
class AgentTurnEnd:
    pass


@dataclass(frozen=True)
class ToolStarted:
    name: str
    arguments: Any


@dataclass(frozen=True)
class ToolFinished:
    """One execution: its `tool_call` and `tool_response` rows and its `*.tool` event."""

    name: str
    arguments: Any
    result: Any
    duration_ms: int
    start_ms: int
    end_ms: int
    sent: bool


@dataclass(frozen=True)
class TranscriptRow:
    role: str  # user or assistant (tool rows come from ToolFinished)
    content: str
    start_ms: int
    end_ms: int


@dataclass(frozen=True)
class TurnLatency:
    """One agent turn's timing; parts a text call does not have stay None."""

    end_of_speech_to_first_audio_ms: float | None
    llm_first_token_ms: float | None
    endpointing_ms: float | None = None
    stt_ms: float | None = None
    tts_first_audio_ms: float | None = None


@dataclass(frozen=True)
class EndRequested:
    """The agent wants the call over: `agent_end` (end_call) or `error` (no usable model)."""

    reason: str


AgentEvent = (
    AgentText | AgentTurnEnd | ToolStarted | ToolFinished | TranscriptRow | TurnLatency
    | EndRequested
)  # fmt: skip


class EventSink(Protocol):
    async def emit(self, event: AgentEvent) -> None: ...
