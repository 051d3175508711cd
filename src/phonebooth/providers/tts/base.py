"""The TTS seam: one public `synthesize()` that owns the policy over one private hook.

Providers only turn text into 16-bit PCM pieces. Refusing a voice the engine does not have,
keeping samples whole across pieces, timing the first audio, mapping failures into `TTSError`
and moving engine compute off the event loop live here once, so the pipeline sees the same
behaviour from every engine.
"""

from __future__ import annotations

import asyncio
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import AsyncGenerator, Callable
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Literal, ParamSpec, TypeVar

from phonebooth.core.errors import PhoneboothError
from phonebooth.providers.compute import EngineCompute

__all__ = [
    "TTS",
    "AudioChunk",
    "Emit",
    "Gender",
    "TTSCapabilities",
    "TTSError",
    "TTSUnavailable",
    "VoiceInfo",
]

_P = ParamSpec("_P")
_T = TypeVar("_T")

Gender = Literal["male", "female", "neutral"]
# Called by a blocking producer with each piece of PCM; False means "stop, nobody listens".
Emit = Callable[[bytes], bool]


@dataclass(frozen=True)
class TTSCapabilities:
    """What an engine can do; the pipeline branches on this, never on classes.

    `streaming`: audio arrives in pieces before the whole text is synthesized.
    `sample_rate`: the rate of the engine's default voice (each chunk carries its own rate).
    """

    streaming: bool
    sample_rate: int


@dataclass(frozen=True)
class VoiceInfo:
    """One voice an engine offers, as `GET /v1/voices` lists it. `language` is BCP 47."""

    id: str
    name: str
    language: str
    gender: Gender | None
    engine: str

    def as_dict(self) -> dict[str, str | None]:
        return {
            "id": self.id,
            "name": self.name,
            "language": self.language,
            "gender": self.gender,
            "engine": self.engine,
        }


@dataclass(frozen=True)
class AudioChunk:
    """A piece of speech: 16-bit little-endian mono PCM at `sample_rate`.

    `elapsed_ms` counts from the `synthesize()` call, so the first chunk's value is the
    time to first audio.
    """

    pcm16: bytes
    sample_rate: int
    index: int
    elapsed_ms: float

    @property
    def samples(self) -> int:
        return len(self.pcm16) // 2

    @property
    def duration_ms(self) -> float:
        return self.samples * 1000.0 / self.sample_rate


class TTSError(PhoneboothError):
    """Synthesis failed. `retryable` tells the pipeline whether trying again may help."""

    def __init__(self, detail: str, *, retryable: bool, status_code: int | None = None) -> None:
        super().__init__(detail)
        self.retryable = retryable
        self.status_code = status_code


class TTSUnavailable(TTSError):
    """The engine cannot run here at all (missing extra, model or setting); never retryable."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail, retryable=False)


class TTS(EngineCompute, ABC):
    """Base of every text-to-speech engine. Subclasses set `name`, `capabilities`, `voices()`.

    Engines that compute in-process use `_run_blocking` or `_stream_blocking`, which run in
    the executor passed in (the app shares one pool sized to the machine among all engines)
    or in a pool this provider creates on first use and shuts down in `aclose()`.
    """

    compute_kind = "tts"
    name: str
    capabilities: TTSCapabilities

    def __init__(
        self,
        *,
        executor: Executor | None = None,
        max_workers: int | None = None,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        super().__init__(executor=executor, max_workers=max_workers)
        self._clock = clock

    @abstractmethod
    def voices(self) -> list[VoiceInfo]:
        """The voices this engine can speak with now; cheap (no synthesis, no network)."""

    def knows(self, voice_id: str) -> bool:
        """Whether `voice_id` is a voice of this engine (the catalog asks before substituting)."""
        return any(voice.id == voice_id for voice in self.voices())

    @property
    def default_voice(self) -> str | None:
        """The engine's first voice, used when a caller names none."""
        voices = self.voices()
        return voices[0].id if voices else None

    async def synthesize(self, text: str, voice: str) -> AsyncGenerator[AudioChunk, None]:
        """Speak `text` with `voice` (an id this engine knows): chunks as soon as they exist.

        Blank text yields nothing. Closing the iterator early (a barge-in) stops the engine
        at its next piece. Raises `TTSError`.
        """
        if not text.strip():
            return
        if not self.knows(voice):
            raise TTSError(
                f"{self.name}: no voice {voice!r} (resolve ids through the catalog)",
                retryable=False,
            )
        started = self._clock()
        index = 0
        carry = b""
        stream = self._synthesize_impl(text, voice)
        try:
            async for piece in stream:
                data = carry + piece
                cut = len(data) - len(data) % 2
                data, carry = data[:cut], data[cut:]
                if not data:
                    continue
                elapsed_ms = (self._clock() - started) * 1000.0
                yield AudioChunk(data, self._rate_of(voice), index, elapsed_ms)
                index += 1
        except TTSError:
            raise
        except Exception as exc:
            raise self._wrap(exc) from exc
        finally:
            await stream.aclose()

    def _rate_of(self, voice: str) -> int:
        """The sample rate of `voice`'s audio; engines whose voices differ override this."""
        return self.capabilities.sample_rate

    def _wrap(self, exc: Exception) -> TTSError:
        """Unexpected failures: network-ish ones may pass, anything else is a bug or bad input."""
        retryable = isinstance(exc, TimeoutError | ConnectionError)
        return TTSError(f"{self.name}: {type(exc).__name__}: {exc}", retryable=retryable)

    async def _stream_blocking(
        self, produce: Callable[[Emit], None]
    ) -> AsyncGenerator[bytes, None]:
        """Run a blocking producer in the pool and hand its pieces to the loop as they come.

        `produce(emit)` calls `emit(pcm)` for each piece and should stop when it returns False
        (the consumer went away); its exceptions are raised here.
        """
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[bytes | BaseException | None] = asyncio.Queue()
        stop = threading.Event()

        def put(item: bytes | BaseException | None) -> None:
            try:
                loop.call_soon_threadsafe(queue.put_nowait, item)
            except RuntimeError:  # the loop closed while we produced: nobody is listening
                stop.set()

        def emit(pcm: bytes) -> bool:
            if stop.is_set():
                return False
            put(pcm)
            return True

        def run() -> None:
            try:
                produce(emit)
            except BaseException as exc:  # handed to the event loop, raised there
                put(exc)
            finally:
                put(None)

        loop.run_in_executor(self._pool(), run)
        try:
            while (item := await queue.get()) is not None:
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            stop.set()

    @abstractmethod
    def _synthesize_impl(self, text: str, voice: str) -> AsyncGenerator[bytes, None]:
        """Yield 16-bit PCM pieces at `_rate_of(voice)`; raise `TTSError` for known failures."""

    async def warm(self) -> None:
        """Load whatever the first call would otherwise wait for (models, voice lists)."""

    async def aclose(self) -> None:
        """Release the pool this provider created (never one that was passed in)."""
        self._release_pool()
