"""Speech-to-text engines behind one interface (`STT.recognize()`).

Importing this package imports no engine: faster-whisper, numpy and soxr load when a
`FasterWhisperSTT` is built (`pip install 'phonebooth[whisper]'`).
"""

from phonebooth.providers.stt.base import (
    STT,
    STTCapabilities,
    STTError,
    STTUnavailable,
    Transcript,
    default_compute_workers,
    language_code,
)
from phonebooth.providers.stt.faster_whisper import FasterWhisperSTT, locate_whisper_model
from phonebooth.providers.stt.openai import OpenAISTT

__all__ = [
    "STT",
    "FasterWhisperSTT",
    "OpenAISTT",
    "STTCapabilities",
    "STTError",
    "STTUnavailable",
    "Transcript",
    "default_compute_workers",
    "language_code",
    "locate_whisper_model",
]
