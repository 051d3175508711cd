"""End of turn and barge-in, decided from per-frame VAD verdicts and an injected clock.

A pure state machine: no audio, no I/O, no clock reads of its own. `clock_ms` returns the
time (ms since the call started) at which the frame being fed ended; a pipeline that counts
frames gives stream time, a test gives a scripted timeline.

    IDLE --speech--> PENDING --min_speech_ms of speech--> SPEAKING --silence--> TRAILING
    PENDING --silence--> IDLE (a click)      TRAILING --speech--> SPEAKING
    TRAILING --silence_ms of silence--> IDLE (end of turn)
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass

from phonebooth.core.errors import PhoneboothError

__all__ = [
    "TRANSITIONS",
    "BargeIn",
    "EndpointEvent",
    "EndpointState",
    "Endpointer",
    "IllegalTransition",
    "SpeechEnded",
    "SpeechStarted",
    "check_transition",
]


class EndpointState(enum.Enum):
    IDLE = "idle"  # nobody speaking
    PENDING = "pending"  # speech heard, too short yet to be more than a click
    SPEAKING = "speaking"  # the caller is talking
    TRAILING = "trailing"  # the caller paused; the turn ends if the pause lasts


TRANSITIONS: dict[EndpointState, frozenset[EndpointState]] = {
    EndpointState.IDLE: frozenset({EndpointState.PENDING}),
    EndpointState.PENDING: frozenset({EndpointState.IDLE, EndpointState.SPEAKING}),
    EndpointState.SPEAKING: frozenset({EndpointState.TRAILING}),
    EndpointState.TRAILING: frozenset({EndpointState.SPEAKING, EndpointState.IDLE}),
}


class IllegalTransition(PhoneboothError):
    """A bug, never a caller's doing: the machine was asked to jump where it cannot."""

    def __init__(self, source: EndpointState, target: EndpointState) -> None:
        super().__init__(f"endpointing cannot go from {source.value} to {target.value}")
        self.source = source
        self.target = target


def check_transition(source: EndpointState, target: EndpointState) -> EndpointState:
    """Return `target` when the table allows source -> target; raise otherwise."""
    if target not in TRANSITIONS[source]:
        raise IllegalTransition(source, target)
    return target


@dataclass(frozen=True)
class SpeechStarted:
    """The caller began a turn at `at_ms` (reported once `min_speech_ms` confirmed it)."""

    at_ms: int


@dataclass(frozen=True)
class SpeechEnded:
    """The turn ended at `at_ms`, `silence_ms` after the last speech (`speech_stopped_ms`)."""

    at_ms: int
    speech_started_ms: int
    speech_stopped_ms: int


@dataclass(frozen=True)
class BargeIn:
    """The caller has talked over the agent for `barge_in_ms`: stop the agent's utterance."""

    at_ms: int


EndpointEvent = SpeechStarted | SpeechEnded | BargeIn


class Endpointer:
    """Feed one VAD decision per frame; get the turn events that frame caused.

    `silence_ms` is the product's end-of-turn silence (spark 400, bolt 600, zap 900).
    Set `agent_speaking` while the agent's audio plays: once the caller's speech frames
    during it add up to `barge_in_ms` (and the turn is confirmed), one `BargeIn` follows
    for that caller turn.
    """

    def __init__(
        self,
        clock_ms: Callable[[], int],
        *,
        silence_ms: int = 600,
        min_speech_ms: int = 100,
        barge_in_ms: int = 200,
        frame_ms: int = 20,
    ) -> None:
        if min(silence_ms, min_speech_ms, barge_in_ms) < 0 or frame_ms <= 0:
            raise ValueError("durations must not be negative")
        self._clock_ms = clock_ms
        self.silence_ms = silence_ms
        self.min_speech_ms = min_speech_ms
        self.barge_in_ms = barge_in_ms
        self.frame_ms = frame_ms
        self._state = EndpointState.IDLE
        self._onset_ms = 0  # when the current run of speech began
        self._last_speech_ms = 0  # end of the latest speech frame
        self._agent_speaking = False
        self._overlap_ms = 0  # caller speech heard while the agent spoke, this turn
        self._barged = False

    @property
    def state(self) -> EndpointState:
        return self._state

    @property
    def agent_speaking(self) -> bool:
        return self._agent_speaking

    @agent_speaking.setter
    def agent_speaking(self, speaking: bool) -> None:
        self._agent_speaking = speaking
        if not speaking:
            self._overlap_ms = 0

    def feed(self, speech: bool) -> list[EndpointEvent]:
        """Advance by one frame that ended now; return the events it caused (often none)."""
        now = self._clock_ms()
        events: list[EndpointEvent] = []
        if speech:
            self._on_speech(now, events)
        else:
            self._on_silence(now, events)
        return events

    def _on_speech(self, now: int, events: list[EndpointEvent]) -> None:
        if self._state is EndpointState.IDLE:
            self._onset_ms = now - self.frame_ms
            self._overlap_ms = 0
            self._barged = False
            self._go(EndpointState.PENDING)
        elif self._state is EndpointState.TRAILING:
            self._go(EndpointState.SPEAKING)
        self._last_speech_ms = now
        if self._agent_speaking:
            self._overlap_ms += self.frame_ms
        if self._state is EndpointState.PENDING and now - self._onset_ms >= self.min_speech_ms:
            self._go(EndpointState.SPEAKING)
            events.append(SpeechStarted(self._onset_ms))
        if (
            self._state is EndpointState.SPEAKING
            and self._agent_speaking
            and not self._barged
            and self._overlap_ms >= self.barge_in_ms
        ):
            self._barged = True
            events.append(BargeIn(now))

    def _on_silence(self, now: int, events: list[EndpointEvent]) -> None:
        if self._state is EndpointState.PENDING:
            self._go(EndpointState.IDLE)
        elif self._state is EndpointState.SPEAKING:
            self._go(EndpointState.TRAILING)
        if self._state is EndpointState.TRAILING and now - self._last_speech_ms >= self.silence_ms:
            self._go(EndpointState.IDLE)
            events.append(SpeechEnded(now, self._onset_ms, self._last_speech_ms))

    def _go(self, target: EndpointState) -> None:
        self._state = check_transition(self._state, target)

    def reset(self) -> None:
        """Back to IDLE without events (the call's audio restarted or the turn was taken)."""
        self._state = EndpointState.IDLE
        self._overlap_ms = 0
        self._barged = False
