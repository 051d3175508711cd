"""The STT seam: one public `recognize()` that owns the policy over one private hook.

Providers only turn 16-bit mono PCM into text. Validating the audio, timing the work, mapping
failures into `STTError` and keeping engine compute off the event loop live here once, so the
pipeline sees the same behaviour (and the same `Transcript` figures) from every engine.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import ParamSpec, TypeVar

from phonebooth.core.errors import PhoneboothError
from phonebooth.providers.compute import EngineCompute, default_compute_workers

__all__ = [
    "STT",
    "STTCapabilities",
    "STTError",
    "STTUnavailable",
    "Transcript",
    "default_compute_workers",
    "language_code",
]

_P = ParamSpec("_P")
_T = TypeVar("_T")


@dataclass(frozen=True)
class STTCapabilities:
    """What an engine can do; the pipeline branches on this, never on classes.

    `sample_rate` is the rate the engine works at: audio at another rate is still accepted
    (the provider converts it), but sending this rate saves a resampling step.
    """

    streaming: bool
    sample_rate: int


@dataclass(frozen=True)
class Transcript:
    """What was heard, with the figures a latency budget needs."""

    text: str
    audio_seconds: float
    compute_ms: float
    language: str | None = None

    @property
    def rtf(self) -> float:
        """Real-time factor: compute time over audio time (below 1 keeps up with a caller)."""
        if self.audio_seconds <= 0:
            return 0.0
        return self.compute_ms / 1000.0 / self.audio_seconds


class STTError(PhoneboothError):
    """Recognition failed. `retryable` tells the pipeline whether trying again may help."""

    def __init__(self, detail: str, *, retryable: bool, status_code: int | None = None) -> None:
        super().__init__(detail)
        self.retryable = retryable
        self.status_code = status_code


class STTUnavailable(STTError):
    """The engine cannot run here at all (missing extra, model or setting); never retryable."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail, retryable=False)


def language_code(language: str | None) -> str | None:
    """The bare ISO 639 language of a BCP 47 tag (`en-US` and `en_US` give `en`)."""
    if not language:
        return None
    return language.replace("_", "-").split("-", 1)[0].lower() or None


class STT(EngineCompute, ABC):
    """Base of every speech-to-text engine. Subclasses set `name` and `capabilities`.

    Engines that compute in-process run through `_run_blocking`, which uses the executor
    passed in (the app shares one pool sized to the machine among all engines) or a pool
    this provider creates on first use and shuts down in `aclose()`.
    """

    compute_kind = "stt"
    name: str
    capabilities: STTCapabilities

    def __init__(
        self,
        *,
        executor: Executor | None = None,
        max_workers: int | None = None,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        super().__init__(executor=executor, max_workers=max_workers)
        self._clock = clock

    @property
    def compute_workers(self) -> int:
        """How many engine calls may run at once in the pool this provider owns."""
        return self._max_workers

    async def recognize(
        self, pcm16: bytes, sample_rate: int, *, language: str | None = None
    ) -> Transcript:
        """Transcribe one utterance of 16-bit little-endian mono PCM at `sample_rate`.

        `language` is a BCP 47 hint (`en-US`); None lets the engine decide. Empty audio gives
        an empty transcript without calling the engine. Raises `STTError`.
        """
        if sample_rate <= 0:
            raise STTError(f"{self.name}: sample rate must be positive", retryable=False)
        if len(pcm16) % 2:
            raise STTError(f"{self.name}: 16-bit PCM needs an even byte count", retryable=False)
        audio_seconds = len(pcm16) / 2 / sample_rate
        if not pcm16:
            return Transcript("", 0.0, 0.0, language)
        started = self._clock()
        try:
            text = await self._recognize_impl(pcm16, sample_rate, language)
        except STTError:
            raise
        except Exception as exc:
            raise self._wrap(exc) from exc
        compute_ms = (self._clock() - started) * 1000.0
        return Transcript(text.strip(), audio_seconds, compute_ms, language)

    def _wrap(self, exc: Exception) -> STTError:
        """Unexpected failures: network-ish ones may pass, anything else is a bug or bad input."""
        retryable = isinstance(exc, TimeoutError | ConnectionError)
        return STTError(f"{self.name}: {type(exc).__name__}: {exc}", retryable=retryable)

    @abstractmethod
    async def _recognize_impl(self, pcm16: bytes, sample_rate: int, language: str | None) -> str:
        """Return the text of non-empty audio; raise `STTError` for known failures."""

    async def warm(self) -> None:
        """Load whatever the first call would otherwise wait for (models, downloads)."""

    async def aclose(self) -> None:
        """Release the pool this provider created (never one that was passed in)."""
        self._release_pool()
