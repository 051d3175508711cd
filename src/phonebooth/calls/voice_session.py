"""A call with audio: the caller's frames become turns, the agent's text becomes paced speech.

Built on `CallSession` (same conversation, timers and record); this adds listening (VAD,
endpointing, STT), speaking (sentence TTS, background track, pacing), barge-in (`clear`,
the turn cancelled, the assistant row cut to what was heard) and the per-turn latency parts.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any

from phonebooth.agent.events import (
    AgentEvent,
    AgentText,
    AgentTurnEnd,
    TranscriptRow,
    TurnLatency,
)
from phonebooth.calls.session import CallSession
from phonebooth.providers.stt.base import STT, STTError
from phonebooth.voice.endpointing import BargeIn, SpeechStarted
from phonebooth.voice.g711 import ulaw_decode, ulaw_encode
from phonebooth.voice.listener import CallerListener, Utterance
from phonebooth.voice.recording import CallRecorder
from phonebooth.voice.speaker import AgentSpeaker, SegmentPlayed

__all__ = ["SpeakerFactory", "VoiceCallSession"]

SpeakerFactory = Callable[
    [
        Callable[[bytes], Awaitable[None]],
        Callable[[SegmentPlayed], None],
        Callable[[float, float], None],
    ],
    AgentSpeaker,
]

log = logging.getLogger("phonebooth.calls.voice")


class VoiceCallSession(CallSession):
    """`listener`, `speaker` and `stt` are built by the app for this call's voice and tier."""

    def __init__(
        self,
        *args: Any,
        listener_factory: Callable[[Callable[[], int]], CallerListener],
        speaker_factory: SpeakerFactory,
        stt: STT | None,
        recorder: CallRecorder | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.listener = listener_factory(self.now_ms)
        self.stt = stt
        self.recorder = recorder
        self.speaker: AgentSpeaker = speaker_factory(
            self._send_frame, self._segment_played, self._first_audio
        )
        self._segment = 0
        self._rows: dict[int, TranscriptRow] = {}
        self._played: dict[int, SegmentPlayed] = {}
        self._turn_parts: dict[str, float | None] = {}
        self._pending_latency: TurnLatency | None = None
        self._first_audio_at: float | None = None
        self._recognitions: set[asyncio.Task[None]] = set()

    # -- audio in -----------------------------------------------------------------------------

    async def caller_media(self, payload: bytes) -> None:
        """One 20 ms frame of 8 kHz mu-law from the caller."""
        pcm = ulaw_decode(payload).tobytes()
        if self.recorder is not None:
            self.recorder.caller(pcm)
        self.listener.agent_speaking = self.speaker.speaking or self.speaker.pending_audio()
        for event in self.listener.feed(pcm):
            if isinstance(event, SpeechStarted):
                self._last_caller_activity = self._clock()
                self._checkins = 0
            elif isinstance(event, BargeIn):
                await self._barge_in()
            elif isinstance(event, Utterance):
                task = asyncio.create_task(self._recognize(event))
                self._recognitions.add(task)
                task.add_done_callback(self._recognitions.discard)

    async def _barge_in(self) -> None:
        if not (self.speaker.speaking or self.speaker.pending_audio()):
            return
        log.info("barge-in", extra={"call_id": self.call.call_id})
        self.speaker.interrupt()
        self.interrupt_turn()
        await self.send({"type": "clear"})

    async def _recognize(self, utterance: Utterance) -> None:
        if self.stt is None:
            return
        try:
            transcript = await self.stt.recognize(utterance.pcm16, utterance.sample_rate)
        except STTError as exc:
            log.warning("speech recognition failed: %s", exc.detail)
            return
        text = transcript.text.strip()
        if not text:
            return
        self._turn_parts = {
            "endpointing_ms": float(utterance.endpointing_ms),
            "stt_ms": transcript.compute_ms,
            "stopped_ms": float(utterance.stopped_ms),
        }
        self._turns.put_nowait((text, utterance.started_ms))
        self._last_caller_activity = self._clock()

    # -- audio out ----------------------------------------------------------------------------

    async def _send_frame(self, pcm16: bytes) -> None:
        if self.speaker.speaking:
            # Caller silence counts from the end of the agent's audio, not of its text: a
            # check-in must never talk over the agent's own long answer.
            self._last_caller_activity = self._clock()
        if self.recorder is not None:
            self.recorder.agent(pcm16)
        payload = base64.b64encode(ulaw_encode(pcm16)).decode("ascii")
        await self.send({"type": "media", "payload": payload})

    def agent_turn_starting(self) -> None:
        self.speaker.expect_turn()
        self._first_audio_at = None

    def _first_audio(self, at: float, tts_first_ms: float) -> None:
        self._first_audio_at = at
        self._turn_parts["tts_first_audio_ms"] = tts_first_ms
        self._turn_parts["first_audio_ms"] = (at - self._started) * 1000
        self._finish_latency()

    def _finish_latency(self) -> None:
        pending = self._pending_latency
        if pending is None or self._first_audio_at is None:
            return
        parts = self._turn_parts
        stopped = parts.get("stopped_ms")
        first = parts.get("first_audio_ms")
        total = None if stopped is None or first is None else first - stopped
        self._latencies.append(
            replace(
                pending,
                end_of_speech_to_first_audio_ms=total,
                endpointing_ms=parts.get("endpointing_ms"),
                stt_ms=parts.get("stt_ms"),
                tts_first_audio_ms=parts.get("tts_first_audio_ms"),
            )
        )
        self._pending_latency = None
        self._turn_parts = {}

    def _segment_played(self, played: SegmentPlayed) -> None:
        row = self._rows.pop(played.segment, None)
        if row is None:  # cut off before the model step even ended: the row comes later
            self._played[played.segment] = played
            return
        self._write_heard(row, played)

    def _write_heard(self, row: TranscriptRow, played: SegmentPlayed) -> None:
        """The assistant row holds only what the caller heard (nothing heard: no row)."""
        if played.text:
            self._writes.put_nowait(replace(row, content=played.text, end_ms=self.now_ms()))

    # -- the conversation's events ------------------------------------------------------------

    async def emit(self, event: AgentEvent) -> None:
        if isinstance(event, AgentText):
            self.speaker.say(self._segment, event.delta)
            await self.send({"type": "agent_text", "delta": event.delta})
        elif isinstance(event, TranscriptRow) and event.role == "assistant":
            played = self._played.pop(self._segment, None)
            if played is not None:
                self._write_heard(event, played)
            else:
                self._rows[self._segment] = event  # written once we know what was heard
                self.speaker.close_segment(self._segment)
            self._segment += 1
        elif isinstance(event, AgentTurnEnd):
            self.speaker.close_segment(self._segment)
            self._segment += 1
            await super().emit(event)
        elif isinstance(event, TurnLatency):
            self._pending_latency = event
            self._finish_latency()
        else:
            await super().emit(event)

    async def close_recording(self) -> str | None:
        if self.recorder is None:
            return None
        return str(await self.recorder.aclose())

    def ending(self) -> None:
        """Whatever was still playing when the call ended is recorded as far as it was heard."""
        self.speaker.interrupt()
        for segment, row in sorted(self._rows.items()):
            self._write_heard(row, self._played.pop(segment, SegmentPlayed(segment, "", True)))
        self._rows.clear()

    async def run(self) -> str:
        speaker = asyncio.create_task(self.speaker.run())
        try:
            return await super().run()
        finally:
            speaker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await speaker
            for task in list(self._recognitions):
                task.cancel()
