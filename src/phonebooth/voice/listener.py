"""The caller's side: 20 ms frames in, turn events and finished utterances out."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from phonebooth.voice.endpointing import BargeIn, Endpointer, SpeechEnded, SpeechStarted
from phonebooth.voice.frames import dbfs
from phonebooth.voice.vad import VoiceActivity

__all__ = ["CallerListener", "Utterance"]

_PRE_ROLL_FRAMES = 10  # 200 ms kept from before the VAD fired: word onsets are quiet


@dataclass(frozen=True)
class Utterance:
    """One caller turn's audio, from shortly before speech began to when it stopped."""

    pcm16: bytes
    sample_rate: int
    started_ms: int
    stopped_ms: int  # the end of the last speech frame
    detected_ms: int  # when the end-of-turn silence had passed

    @property
    def endpointing_ms(self) -> int:
        return self.detected_ms - self.stopped_ms


ListenerEvent = SpeechStarted | BargeIn | Utterance


class CallerListener:
    """VAD plus endpointing over the caller's audio; keeps the audio of the current turn."""

    def __init__(
        self,
        vad: VoiceActivity,
        clock_ms: Callable[[], int],
        *,
        sample_rate: int,
        silence_ms: int,
        barge_in_ms: int = 200,
        level_floor_dbfs: float = -50.0,
    ) -> None:
        self.vad = vad
        self.level_floor_dbfs = level_floor_dbfs
        self.sample_rate = sample_rate
        self.endpointer = Endpointer(clock_ms, silence_ms=silence_ms, barge_in_ms=barge_in_ms)
        self._pre_roll: deque[bytes] = deque(maxlen=_PRE_ROLL_FRAMES)
        self._turn: list[bytes] | None = None

    @property
    def agent_speaking(self) -> bool:
        return self.endpointer.agent_speaking

    @agent_speaking.setter
    def agent_speaking(self, speaking: bool) -> None:
        self.endpointer.agent_speaking = speaking

    def feed(self, frame: bytes) -> list[ListenerEvent]:
        decision = self.vad.feed(frame)
        # Silero keeps saying "speech" for 100-140 ms after the voice stops; a frame quieter
        # than the floor is silence whatever it says, so the end-of-turn wait starts on time.
        speech = decision.speech and dbfs(frame) > self.level_floor_dbfs
        if self._turn is not None:
            self._turn.append(frame)
        else:
            self._pre_roll.append(frame)
        events: list[ListenerEvent] = []
        for event in self.endpointer.feed(speech):
            if isinstance(event, SpeechStarted):
                self._turn = list(self._pre_roll)
                self._pre_roll.clear()
                events.append(event)
            elif isinstance(event, SpeechEnded):
                audio = b"".join(self._turn or [])
                self._turn = None
                events.append(
                    Utterance(
                        audio,
                        self.sample_rate,
                        event.speech_started_ms,
                        event.speech_stopped_ms,
                        event.at_ms,
                    )
                )
            else:
                events.append(event)
        return events
