"""Text-to-speech engines behind one interface (`TTS.synthesize()`) and their voice lists.

Importing this package imports no engine: piper-tts and espeak-ng (both GPL-3.0) load when a
`PiperTTS` or `EspeakTTS` is built (`pip install 'phonebooth[piper]'`, `'phonebooth[espeak]'`).
"""

from phonebooth.providers.tts.base import (
    TTS,
    AudioChunk,
    Gender,
    TTSCapabilities,
    TTSError,
    TTSUnavailable,
    VoiceInfo,
)
from phonebooth.providers.tts.espeak import ESPEAK_VOICES, EspeakTTS, EspeakVoice
from phonebooth.providers.tts.google import THUNDERPHONE_VOICE_ALIASES, GoogleTTS
from phonebooth.providers.tts.piper import PiperTTS, locate_piper_voice, packaged_piper_voices

__all__ = [
    "ESPEAK_VOICES",
    "THUNDERPHONE_VOICE_ALIASES",
    "TTS",
    "AudioChunk",
    "EspeakTTS",
    "EspeakVoice",
    "Gender",
    "GoogleTTS",
    "PiperTTS",
    "TTSCapabilities",
    "TTSError",
    "TTSUnavailable",
    "VoiceInfo",
    "locate_piper_voice",
    "packaged_piper_voices",
]
