"""Frame math for the pipeline's unit of audio: 16-bit little-endian mono PCM, 20 ms a frame.

Everything between a transport and an engine moves in these frames, so the sizes, the
bytes/array conversions and the level measurements live in one place.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numpy.typing import NDArray

__all__ = [
    "FRAME_MS",
    "FULL_SCALE",
    "SAMPLE_WIDTH",
    "FrameBuffer",
    "Samples",
    "array_to_pcm",
    "as_samples",
    "bytes_per_frame",
    "dbfs",
    "gain_from_db",
    "pcm_to_array",
    "rms",
    "samples_per_frame",
    "saturate",
    "silence",
]

FRAME_MS = 20
SAMPLE_WIDTH = 2  # bytes per int16 sample
FULL_SCALE = 32768.0  # int16 full scale: a sample of -32768 is -1.0

Samples = NDArray[np.int16]
_LE_INT16 = np.dtype("<i2")


def samples_per_frame(sample_rate: int, frame_ms: int = FRAME_MS) -> int:
    """Samples in one frame; refuses rates where a frame is not a whole number of samples."""
    if sample_rate <= 0 or frame_ms <= 0:
        raise ValueError("sample rate and frame length must be positive")
    count, remainder = divmod(sample_rate * frame_ms, 1000)
    if remainder:
        raise ValueError(f"{frame_ms} ms at {sample_rate} Hz is not a whole number of samples")
    return count


def bytes_per_frame(sample_rate: int, frame_ms: int = FRAME_MS) -> int:
    return samples_per_frame(sample_rate, frame_ms) * SAMPLE_WIDTH


def pcm_to_array(pcm: bytes | bytearray | memoryview) -> Samples:
    """Little-endian PCM bytes to a writable native int16 array (a copy, safe to keep)."""
    if len(pcm) % SAMPLE_WIDTH:
        raise ValueError(f"PCM length {len(pcm)} is not a whole number of 16-bit samples")
    return np.frombuffer(pcm, dtype=_LE_INT16).astype(np.int16)


def array_to_pcm(samples: Samples) -> bytes:
    """An int16 array to little-endian PCM bytes, whatever the machine's byte order."""
    return np.asarray(samples, dtype=_LE_INT16).tobytes()


def as_samples(audio: Samples | bytes | bytearray | memoryview) -> Samples:
    """Accept either representation at an API edge; arrays pass through without a copy."""
    if isinstance(audio, bytes | bytearray | memoryview):
        return pcm_to_array(audio)
    if audio.dtype != np.int16 or audio.ndim != 1:
        raise ValueError("expected a one-dimensional int16 array")
    return audio


def rms(audio: Samples | bytes) -> float:
    """Root-mean-square level relative to full scale (0.0 to 1.0); 0.0 for an empty frame."""
    samples = as_samples(audio)
    if samples.size == 0:
        return 0.0
    values = samples.astype(np.float64)
    return float(np.sqrt(np.mean(values * values))) / FULL_SCALE


def dbfs(audio: Samples | bytes) -> float:
    """RMS level in dBFS (a full-scale square wave is 0, a full-scale sine about -3).

    Digital silence is -inf, so a caller comparing against a threshold needs no special case.
    """
    level = rms(audio)
    return 20.0 * math.log10(level) if level > 0.0 else -math.inf


def gain_from_db(db: float) -> float:
    """Amplitude factor for a level change in dB (-6 dB is about half)."""
    return math.pow(10.0, db / 20.0)


def saturate(values: NDArray[np.floating[Any]]) -> Samples:
    """Round float samples (int16 scale) to int16, clipping instead of wrapping around."""
    rounded: Samples = np.clip(np.rint(values), -32768, 32767).astype(np.int16)
    return rounded


def silence(sample_rate: int, frame_ms: int = FRAME_MS) -> bytes:
    """One frame of digital silence, for pacing a stream when there is nothing to say."""
    return bytes(bytes_per_frame(sample_rate, frame_ms))


class FrameBuffer:
    """Re-chunks PCM of any length (network packets, TTS chunks) into exact frames.

    Keeps the remainder, including an odd trailing byte, until the next `push`.
    """

    def __init__(self, sample_rate: int, frame_ms: int = FRAME_MS) -> None:
        self.sample_rate = sample_rate
        self.frame_ms = frame_ms
        self.frame_bytes = bytes_per_frame(sample_rate, frame_ms)
        self._pending = bytearray()

    @property
    def pending_bytes(self) -> int:
        return len(self._pending)

    def push(self, pcm: bytes | bytearray | memoryview) -> list[bytes]:
        """Add PCM; return every complete frame now available, oldest first."""
        self._pending += pcm
        whole = len(self._pending) - len(self._pending) % self.frame_bytes
        if whole == 0:
            return []
        chunk = bytes(self._pending[:whole])
        del self._pending[:whole]
        size = self.frame_bytes
        return [chunk[i : i + size] for i in range(0, whole, size)]

    def flush(self) -> bytes | None:
        """The last partial frame padded with silence, or None when nothing is pending."""
        if not self._pending:
            return None
        frame = bytes(self._pending) + bytes(self.frame_bytes - len(self._pending))
        self._pending.clear()
        return frame

    def clear(self) -> None:
        """Drop pending audio (barge-in: what was queued must not be played)."""
        self._pending.clear()
