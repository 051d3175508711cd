"""The agent's side of the call: its speech over an optional looping background track.

`background_track: "CALL_CENTER"` (contract 5) wants the ambience under the agent's side at
all times, between -35 and -25 dBFS and at least 15 dB below the agent's speech. The mixer
scales the track to `target_dbfs` and, while the agent speaks louder than target + gap
allows, ducks it smoothly (fast attack, a hold across the gaps between words, slow
release) so the gap holds even for a quiet voice.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import NDArray

from phonebooth.voice.frames import (
    FRAME_MS,
    Samples,
    as_samples,
    dbfs,
    gain_from_db,
    samples_per_frame,
    saturate,
)

__all__ = ["BackgroundMixer", "mix"]

_ACTIVE_DBFS = -50.0  # frames quieter than this are pauses: they do not set the speech level
_SPEECH_SMOOTHING = 0.1  # weight of a new frame in the running speech level (power domain)
_HOLD_MS = 300
_ATTACK_MS = 20
_RELEASE_MS = 600


def mix(a: Samples, b: Samples) -> Samples:
    """Sum two equal-length int16 signals, saturating instead of wrapping around."""
    if a.shape != b.shape:
        raise ValueError(f"cannot mix {a.shape[0]} samples with {b.shape[0]}")
    return saturate(a.astype(np.float64) + b.astype(np.float64))


class BackgroundMixer:
    """Produces the outgoing frames of one call: background always, speech when there is some.

    Call `next_frame` once per outgoing frame, with the agent's frame or None in silence.
    Without a track (no `background_track` configured) it passes speech through and fills
    the gaps with silence, so the pipeline has one code path either way.
    """

    def __init__(
        self,
        track: Samples | None,
        *,
        sample_rate: int,
        target_dbfs: float = -30.0,
        min_gap_db: float = 15.0,
        frame_ms: int = FRAME_MS,
    ) -> None:
        level = 0.0 if track is None else dbfs(track)
        if not math.isfinite(level):
            raise ValueError("the background track is empty or silent")
        self.sample_rate = sample_rate
        self.frame_samples = samples_per_frame(sample_rate, frame_ms)
        self.target_dbfs = target_dbfs
        self.min_gap_db = min_gap_db
        self._frame_ms = frame_ms
        self._track = None if track is None else track.astype(np.float32)
        self._position = 0
        self._base_gain = gain_from_db(target_dbfs - level)
        self._gain = self._base_gain
        self._speech_power: float | None = None
        self._since_speech_ms = _HOLD_MS

    def next_frame(self, speech: Samples | bytes | None = None) -> Samples:
        """One outgoing frame: the next slice of the looping track, plus `speech` if given."""
        voice = None if speech is None else as_samples(speech)
        length = self.frame_samples if voice is None else voice.shape[0]
        if self._track is None:
            return np.zeros(length, dtype=np.int16) if voice is None else voice
        wanted = self._wanted_gain(voice)
        ramp = np.linspace(self._gain, wanted, length + 1, dtype=np.float32)[1:]
        self._gain = wanted
        background = self._take(self._track, length) * ramp
        if voice is not None:
            background += voice.astype(np.float32)
        return saturate(background)

    def _take(self, track: NDArray[np.float32], length: int) -> NDArray[np.float32]:
        indices = (self._position + np.arange(length)) % track.shape[0]
        self._position = int((self._position + length) % track.shape[0])
        piece: NDArray[np.float32] = track[indices]
        return piece

    def _wanted_gain(self, voice: Samples | None) -> float:
        """Gain for the end of this frame: ducked under active speech, released after it."""
        level = -math.inf if voice is None else dbfs(voice)
        if level > _ACTIVE_DBFS:
            speech_dbfs = self._follow_speech(level)
            ceiling = min(self.target_dbfs, speech_dbfs - self.min_gap_db)
            ducked = self._base_gain * gain_from_db(ceiling - self.target_dbfs)
            return self._toward(ducked, _ATTACK_MS)
        self._since_speech_ms += self._frame_ms
        if self._since_speech_ms < _HOLD_MS:
            return self._gain
        return self._toward(self._base_gain, _RELEASE_MS)

    def _follow_speech(self, level: float) -> float:
        """Running speech level (dBFS): restarts with each utterance, then moves slowly."""
        power = math.pow(10.0, level / 10.0)
        if self._speech_power is None or self._since_speech_ms >= _HOLD_MS:
            self._speech_power = power
        else:
            self._speech_power += _SPEECH_SMOOTHING * (power - self._speech_power)
        self._since_speech_ms = 0
        return 10.0 * math.log10(self._speech_power)

    def _toward(self, wanted: float, time_ms: int) -> float:
        """Move the gain toward `wanted` at a rate that crosses the full range in `time_ms`."""
        step = self._base_gain * self._frame_ms / time_ms
        if wanted >= self._gain:
            return min(wanted, self._gain + step)
        return max(wanted, self._gain - step)
