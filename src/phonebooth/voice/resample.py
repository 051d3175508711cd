"""Streaming sample-rate conversion between the carrier, the pipeline and the engines.

Carriers speak 8 kHz, VAD and STT want 16 kHz, piper speaks 22.05 kHz: every hop is a
`StreamResampler` that keeps the filter state across 20 ms chunks, so the joins between
chunks are as clean as one long signal (a fresh resampler per chunk would click).

soxr works in blocks: output lags input by the filter delay plus a partial block. Measured
with 20 ms chunks at quality "HQ": about 64 ms on average (115 ms at most) for 8 <-> 16 kHz,
about 21 ms (37 ms at most) for 16 <-> 24 kHz and 22.05 -> 16 kHz. "LQ" halves that but
rolls off 8 dB at 3.4 kHz, the top of the telephone band, so it is not the default.

soxr runs in float32 here and we round and saturate ourselves: its int16 path adds dither,
which would make the same input give different output (and golden tests impossible).
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import soxr  # type: ignore[import-untyped]
from numpy.typing import NDArray

from phonebooth.voice.frames import FULL_SCALE, Samples, as_samples, saturate

__all__ = ["Quality", "StreamResampler", "resample"]

Quality = Literal["QQ", "LQ", "MQ", "HQ", "VHQ"]
_EMPTY = np.zeros(0, dtype=np.float32)


def _to_float(samples: Samples) -> NDArray[np.float32]:
    return samples.astype(np.float32) / np.float32(FULL_SCALE)


def _to_int16(values: NDArray[np.float32]) -> Samples:
    return saturate(values * np.float32(FULL_SCALE))


class StreamResampler:
    """One direction of one call: int16 mono in, int16 mono out, state kept between chunks.

    Equal rates pass audio through untouched (no delay, no copy). After `flush` the
    resampler is ready for a fresh signal.
    """

    def __init__(self, in_rate: int, out_rate: int, *, quality: Quality = "HQ") -> None:
        if in_rate <= 0 or out_rate <= 0:
            raise ValueError("sample rates must be positive")
        self.in_rate = in_rate
        self.out_rate = out_rate
        self.quality = quality
        self._stream: soxr.ResampleStream | None = None
        if in_rate != out_rate:
            self._stream = soxr.ResampleStream(
                in_rate, out_rate, 1, dtype="float32", quality=quality
            )

    def process(self, chunk: Samples | bytes) -> Samples:
        """Resample one chunk; may return fewer (even zero) samples while the filter fills."""
        samples = as_samples(chunk)
        if self._stream is None:
            return samples
        return _to_int16(self._stream.resample_chunk(_to_float(samples)))

    def flush(self) -> Samples:
        """Return the audio still inside the filter (end of an utterance) and start afresh."""
        if self._stream is None:
            return np.zeros(0, dtype=np.int16)
        out = _to_int16(self._stream.resample_chunk(_EMPTY, last=True))
        self._stream.clear()
        return out

    def reset(self) -> None:
        """Drop the audio inside the filter (barge-in: the rest must not play)."""
        if self._stream is not None:
            self._stream.clear()

    @property
    def pending(self) -> float:
        """Output samples still held back by the filter (soxr's current delay)."""
        return 0.0 if self._stream is None else float(self._stream.delay())


def resample(audio: Samples | bytes, in_rate: int, out_rate: int) -> Samples:
    """Resample a whole clip at once (fixtures, the ambience track, a finished TTS clip)."""
    samples = as_samples(audio)
    if in_rate == out_rate:
        return samples.copy()
    return _to_int16(soxr.resample(_to_float(samples), in_rate, out_rate, quality="HQ"))
