"""The installation's speech engines, built once, shared by every call, warmed before use.

Engine compute (Whisper, piper) runs in one bounded thread pool sized to the machine, so one
call's inference never delays another call's 20 ms frames on the event loop. Engines that
are not installed are skipped with a log line; what is missing is said once, clearly.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from phonebooth.providers.stt.base import STT, STTError
from phonebooth.providers.tts.base import TTS, TTSError
from phonebooth.voice.catalog import VoiceCatalog

__all__ = ["VoiceEngines", "default_engines"]

log = logging.getLogger("phonebooth.voice")


@dataclass
class VoiceEngines:
    stt: STT | None
    tts: list[TTS]
    pool: ThreadPoolExecutor | None = None
    catalog: VoiceCatalog = field(init=False)
    problems: list[str] = field(default_factory=list)
    _warm: asyncio.Task[None] | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        self.catalog = VoiceCatalog(self.tts)

    def engine_for(self, name: str | None) -> TTS | None:
        return None if name is None else self.catalog.engine(name)

    async def warm(self) -> None:
        """Load every model once (the first Whisper call is twice as slow as later ones)."""
        if self._warm is None:
            self._warm = asyncio.create_task(self._warm_all())
        await asyncio.shield(self._warm)

    async def _warm_all(self) -> None:
        engines: list[STT | TTS] = [*([self.stt] if self.stt else []), *self.tts]
        for engine in engines:
            try:
                await engine.warm()
            except (STTError, TTSError) as exc:
                log.warning("%s could not warm up: %s", engine.name, exc.detail)
        self.catalog.refresh()

    async def aclose(self) -> None:
        if self.stt is not None:
            await self.stt.aclose()
        for engine in self.tts:
            await engine.aclose()
        if self.pool is not None:
            self.pool.shutdown(wait=False, cancel_futures=True)


def _try(what: str, build: Callable[[], object], problems: list[str]) -> object | None:
    try:
        return build()
    except (STTError, TTSError, ImportError, OSError) as exc:
        detail = getattr(exc, "detail", str(exc))
        problems.append(f"{what}: {detail}")
        return None


def default_engines(workers: int | None = None) -> VoiceEngines:
    """faster-whisper for listening; piper, then espeak, for speaking (whatever is installed)."""
    from phonebooth.providers.stt.faster_whisper import FasterWhisperSTT
    from phonebooth.providers.tts.espeak import EspeakTTS
    from phonebooth.providers.tts.piper import PiperTTS

    pool = ThreadPoolExecutor(
        max_workers=workers or max(1, os.cpu_count() or 1), thread_name_prefix="phonebooth-engine"
    )
    problems: list[str] = []
    stt = _try("faster-whisper", lambda: FasterWhisperSTT(executor=pool), problems)
    tts = [
        engine
        for engine in (
            _try("piper", lambda: PiperTTS(executor=pool), problems),
            _try("espeak", lambda: EspeakTTS(executor=pool), problems),
        )
        if engine is not None
    ]
    for problem in problems:
        log.warning("speech engine unavailable: %s", problem)
    return VoiceEngines(
        stt if isinstance(stt, STT) else None,
        [engine for engine in tts if isinstance(engine, TTS)],
        pool,
        problems=problems,
    )
