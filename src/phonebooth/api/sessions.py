"""Builds each call's runtime from the app's shared parts (the composition root for calls)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from functools import cache

import httpx

from phonebooth.calls.session import CallLimits, CallSession, Send
from phonebooth.calls.setup import CallService, StartedCall
from phonebooth.calls.voice_session import VoiceCallSession
from phonebooth.config import Settings
from phonebooth.providers.llm.select import LLMChoice, tier_model, tier_silence_ms
from phonebooth.voice.ambience import load_call_center
from phonebooth.voice.catalog import VoiceChoice
from phonebooth.voice.engines import VoiceEngines, default_engines
from phonebooth.voice.frames import Samples
from phonebooth.voice.listener import CallerListener
from phonebooth.voice.mixer import BackgroundMixer
from phonebooth.voice.recording import RecordingStore
from phonebooth.voice.speaker import AgentSpeaker, SegmentPlayed
from phonebooth.voice.vad import VoiceActivity

__all__ = ["CARRIER_RATE", "SessionFactory"]

CARRIER_RATE = 8000
# The contract wants the ambience between -35 and -25 dBFS and 15 dB under the agent's voice;
# piper speaks at about -16 dBFS, so -33 keeps both with a margin.
AMBIENCE_DBFS = -33.0
# Under the agent's voice the ambience ducks to 20 dB below it (the contract asks for 15): the
# words stay as intelligible as on a quiet line.
SPEECH_GAP_DB = 20.0


@cache
def _call_center_track() -> Samples:
    return load_call_center(CARRIER_RATE)


class SessionFactory:
    """`await factory(call, send, audio)` gives the call's session, text or voice."""

    def __init__(
        self,
        settings: Settings,
        calls: CallService,
        client: httpx.AsyncClient,
        llm_choice: LLMChoice,
        engines: VoiceEngines | None = None,
        *,
        recordings: RecordingStore | None = None,
    ) -> None:
        self.recordings = recordings
        self.settings = settings
        self.calls = calls
        self.client = client
        self.llm_choice = llm_choice
        self._engines = engines
        self._engines_lock = asyncio.Lock()
        self.limits = CallLimits(
            max_call_seconds=settings.max_call_seconds,
            silence_checkin_seconds=settings.silence_checkin_seconds,
            silence_hangup_seconds=settings.silence_hangup_seconds,
        )

    async def built(self) -> VoiceEngines:
        """The speech engines, built (models not loaded yet) on first need."""
        async with self._engines_lock:
            if self._engines is None:
                self._engines = await asyncio.to_thread(default_engines)
        return self._engines

    async def engines(self) -> VoiceEngines:
        """The speech engines, built and warmed (or at `serve` start-up)."""
        engines = await self.built()
        await engines.warm()
        return engines

    @property
    def built_engines(self) -> VoiceEngines | None:
        return self._engines

    async def __call__(self, call: StartedCall, send: Send, audio: bool) -> CallSession:
        config = call.config
        assert config is not None
        model = tier_model(self.settings, config.product, self.llm_choice.provider or "openai")
        if not audio:
            await self._record_voice(call, self._engines)
            return CallSession(
                self.calls,
                call,
                llm=self.llm_choice.llm,
                model=model,
                client=self.client,
                send=send,
                limits=self.limits,
            )
        engines = await self.engines()
        choice = await self._record_voice(call, engines)
        tts = engines.engine_for(choice.engine if choice else None)
        if tts is None or choice is None or choice.used is None:
            raise RuntimeError(
                "no text-to-speech engine is installed (pip install phonebooth[voice])"
            )
        voice = choice.used
        track = _call_center_track() if config.background_track == "CALL_CENTER" else None
        mixer = BackgroundMixer(
            track, sample_rate=CARRIER_RATE, target_dbfs=AMBIENCE_DBFS, min_gap_db=SPEECH_GAP_DB
        )
        silence_ms = tier_silence_ms(self.settings, config.product)

        def listener(clock_ms: Callable[[], int]) -> CallerListener:
            vad = VoiceActivity(sample_rate=CARRIER_RATE)
            return CallerListener(vad, clock_ms, sample_rate=CARRIER_RATE, silence_ms=silence_ms)

        def speaker(
            send_frame: Callable[[bytes], Awaitable[None]],
            on_segment: Callable[[SegmentPlayed], None],
            on_first_audio: Callable[[float, float], None],
        ) -> AgentSpeaker:
            return AgentSpeaker(
                tts,
                voice,
                mixer,
                send_frame,
                sample_rate=CARRIER_RATE,
                on_segment=on_segment,
                on_first_audio=on_first_audio,
            )

        return VoiceCallSession(
            self.calls,
            call,
            llm=self.llm_choice.llm,
            model=model,
            client=self.client,
            send=send,
            limits=self.limits,
            listener_factory=listener,
            speaker_factory=speaker,
            stt=engines.stt,
            recorder=None if self.recordings is None else self.recordings.open(call.call_id),
        )

    async def _record_voice(
        self, call: StartedCall, engines: VoiceEngines | None
    ) -> VoiceChoice | None:
        """The voice used and whether it was a substitution go on the call record."""
        if engines is None or call.config is None:
            return None
        choice = engines.catalog.resolve(call.config.voice)
        self.calls.record_voice(call.call_id, choice.used, choice.substituted)
        return choice
