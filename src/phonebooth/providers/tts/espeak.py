"""A tiny, robotic text-to-speech engine: espeak-ng through `espeakng-loader`.

`espeakng-loader` ships the espeak-ng shared library and its data, so no system package is
needed; we call the documented C API (`speak_lib.h`) with ctypes in synchronous mode, where
the library hands each ~60 ms buffer to a callback on the calling thread. espeak-ng is
GPL-3.0: an optional extra (`pip install 'phonebooth[espeak]'`), loaded when a provider is
built. The library keeps global state, so one process-wide lock serializes its calls; a
sentence takes a few milliseconds, so the lock never holds anyone for long.
"""

from __future__ import annotations

import ctypes
import importlib
import threading
from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass
from typing import Any

from phonebooth.providers.tts.base import (
    TTS,
    Emit,
    Gender,
    TTSCapabilities,
    TTSError,
    TTSUnavailable,
    VoiceInfo,
)

__all__ = ["ESPEAK_VOICES", "EspeakTTS", "EspeakVoice"]

_EXTRA_HINT = "pip install 'phonebooth[espeak]'"
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_POS_CHARACTER = 1
_ESPEAK_CHARS_UTF8 = 1
_ESPEAK_RATE = 1
_EE_OK = 0
_SYNTH_CALLBACK = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p
)


@dataclass(frozen=True)
class EspeakVoice:
    """A catalog entry (`id`, BCP 47 `language`) and the espeak-ng voice file it loads."""

    id: str
    espeak_name: str
    name: str
    language: str
    gender: Gender | None = "male"


# A few voices, not espeak's hundred-odd: the catalog should offer what is worth choosing.
ESPEAK_VOICES: tuple[EspeakVoice, ...] = (
    EspeakVoice("espeak-en-us", "gmw/en-US", "English (America, espeak)", "en-US"),
    EspeakVoice("espeak-en-gb", "gmw/en", "English (Great Britain, espeak)", "en-GB"),
    EspeakVoice("espeak-es", "roa/es", "Spanish (Spain, espeak)", "es-ES"),
    EspeakVoice("espeak-fr", "roa/fr", "French (France, espeak)", "fr-FR"),
    EspeakVoice("espeak-de", "gmw/de", "German (espeak)", "de-DE"),
)

_LOCK = threading.Lock()
_LIBRARY: tuple[Any, int] | None = None  # (the loaded library, its sample rate)


def _library() -> tuple[Any, int]:
    """Load and initialize espeak-ng once per process (under `_LOCK`)."""
    global _LIBRARY
    if _LIBRARY is not None:
        return _LIBRARY
    try:
        loader = importlib.import_module("espeakng_loader")
    except ImportError as exc:
        raise TTSUnavailable(f"the espeak provider needs espeakng-loader: {_EXTRA_HINT}") from exc
    try:
        lib = ctypes.CDLL(str(loader.get_library_path()))
        data_path = str(loader.get_data_path()).encode()
    except (OSError, RuntimeError) as exc:
        raise TTSUnavailable(f"espeak-ng could not be loaded: {exc}") from exc
    lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
    lib.espeak_Initialize.restype = ctypes.c_int
    lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
    lib.espeak_SetVoiceByName.restype = ctypes.c_int
    lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
    lib.espeak_SetParameter.restype = ctypes.c_int
    lib.espeak_SetSynthCallback.argtypes = [_SYNTH_CALLBACK]
    lib.espeak_SetSynthCallback.restype = None
    lib.espeak_Synth.argtypes = [
        ctypes.c_char_p,
        ctypes.c_size_t,
        ctypes.c_uint,
        ctypes.c_int,
        ctypes.c_uint,
        ctypes.c_uint,
        ctypes.c_void_p,
        ctypes.c_void_p,
    ]
    lib.espeak_Synth.restype = ctypes.c_int
    rate = int(lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, data_path, 0))
    if rate <= 0:
        raise TTSUnavailable(f"espeak-ng failed to initialize with data at {data_path.decode()}")
    _LIBRARY = (lib, rate)
    return _LIBRARY


class EspeakTTS(TTS):
    """Formant synthesis: instant and intelligible, clearly robotic. Good for tests and demos."""

    name = "espeak"

    def __init__(
        self,
        voices: Sequence[EspeakVoice] = ESPEAK_VOICES,
        *,
        words_per_minute: int = 165,
        **base: Any,
    ) -> None:
        super().__init__(**base)
        with _LOCK:
            _lib, rate = _library()
        self._voices = {voice.id: voice for voice in voices}
        self._words_per_minute = words_per_minute
        self.capabilities = TTSCapabilities(streaming=True, sample_rate=rate)

    def voices(self) -> list[VoiceInfo]:
        return [
            VoiceInfo(v.id, v.name, v.language, v.gender, self.name) for v in self._voices.values()
        ]

    def _speak(self, text: str, voice: EspeakVoice, emit: Emit) -> None:
        """Runs on a worker thread: the library calls back with each buffer as it is made."""
        encoded = text.encode("utf-8")

        def on_audio(wav: Any, count: int, _events: Any) -> int:
            if wav and count > 0 and not emit(ctypes.string_at(wav, count * 2)):
                return 1  # tells espeak-ng to abort this utterance
            return 0

        callback = _SYNTH_CALLBACK(on_audio)  # kept alive until espeak_Synth returns
        with _LOCK:
            lib, _rate = _library()
            if lib.espeak_SetVoiceByName(voice.espeak_name.encode()) != _EE_OK:
                raise TTSError(
                    f"espeak: voice file {voice.espeak_name} is missing", retryable=False
                )
            lib.espeak_SetParameter(_ESPEAK_RATE, self._words_per_minute, 0)
            lib.espeak_SetSynthCallback(callback)
            status = lib.espeak_Synth(
                encoded, len(encoded) + 1, 0, _POS_CHARACTER, 0, _ESPEAK_CHARS_UTF8, None, None
            )
        if status != _EE_OK:
            raise TTSError(f"espeak: synthesis failed with status {status}", retryable=False)

    async def _synthesize_impl(self, text: str, voice: str) -> AsyncGenerator[bytes, None]:
        choice = self._voices[voice]
        async for pcm in self._stream_blocking(lambda emit: self._speak(text, choice, emit)):
            yield pcm
