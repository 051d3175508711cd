"""A synthetic call-centre ambience for `background_track: "CALL_CENTER"`.

Written from scratch so the shipped track has no licence strings attached: distant babble
(noise and glottal pulses through random vowel formants, switched on and off at syllable
rate, in talk spurts), room tone (soft pink noise) and keyboard clicks in typing bursts.
Deterministic for a seed. The end crossfades into the start, so the track loops without a
click. `scripts/make_ambience.py` renders it into `voice/data/call_center.wav`.
"""

from __future__ import annotations

import io
import wave
from importlib import resources

import numpy as np
from numpy.typing import NDArray

from phonebooth.voice.frames import FULL_SCALE, Samples, gain_from_db, pcm_to_array, saturate
from phonebooth.voice.resample import resample

__all__ = [
    "CALL_CENTER_FILE",
    "generate_call_center",
    "load_call_center",
    "make_loopable",
]

CALL_CENTER_FILE = "call_center.wav"
Signal = NDArray[np.float64]


def generate_call_center(
    *,
    seconds: float = 40.0,
    sample_rate: int = 16000,
    seed: int = 7,
    level_dbfs: float = -30.0,
    crossfade_ms: int = 500,
) -> Samples:
    """Render a loopable ambience whose RMS level over the whole loop is `level_dbfs`."""
    rng = np.random.default_rng(seed)
    length = round(seconds * sample_rate)
    crossfade = round(crossfade_ms * sample_rate / 1000)
    total = length + crossfade
    babble = _unit_rms(_babble(rng, total, sample_rate))
    room = _unit_rms(_room_tone(rng, total, sample_rate))
    # No key press inside either crossfade: folded over, it would sound doubled or cut.
    quiet_edge = crossfade + sample_rate // 20
    keys = _keyboard(rng, total, sample_rate, quiet_edge)
    mixdown = babble + 0.25 * room + 1.2 * keys
    looped = make_loopable(mixdown, crossfade)
    return saturate(_unit_rms(looped) * FULL_SCALE * gain_from_db(level_dbfs))


def make_loopable(signal: Signal, crossfade: int) -> Signal:
    """Fold the last `crossfade` samples over the first with an equal-power crossfade.

    The result is `crossfade` samples shorter; its last sample runs straight into its first.
    """
    if not 0 < crossfade < signal.shape[0] // 2:
        raise ValueError("crossfade must be positive and under half the signal")
    body = signal[:-crossfade].copy()
    angle = np.linspace(0.0, np.pi / 2, crossfade)
    body[:crossfade] = signal[:crossfade] * np.sin(angle) + signal[-crossfade:] * np.cos(angle)
    return body


def load_call_center(sample_rate: int = 16000) -> Samples:
    """The packaged ambience at `sample_rate` (resampled when the file's rate differs)."""
    data = resources.files("phonebooth.voice").joinpath("data", CALL_CENTER_FILE).read_bytes()
    with wave.open(io.BytesIO(data)) as wav:
        if wav.getnchannels() != 1 or wav.getsampwidth() != 2:
            raise ValueError(f"{CALL_CENTER_FILE} must be 16-bit mono")
        rate = wav.getframerate()
        samples = pcm_to_array(wav.readframes(wav.getnframes()))
    return samples if rate == sample_rate else resample(samples, rate, sample_rate)


def _unit_rms(signal: Signal) -> Signal:
    return signal / float(np.sqrt(np.mean(signal * signal)))


def _shape(signal: Signal, sample_rate: int, gain: Signal | None = None, **band: float) -> Signal:
    """Filter in the frequency domain: an optional gain curve and a smooth band-pass."""
    spectrum = np.fft.rfft(signal)
    freqs = np.fft.rfftfreq(signal.shape[0], 1.0 / sample_rate)
    low, high = band.get("low", 0.0), band.get("high", sample_rate / 2)
    curve = 1.0 / np.sqrt(1.0 + (low / np.maximum(freqs, 1.0)) ** 4)
    curve = curve / np.sqrt(1.0 + (freqs / high) ** 4)
    if gain is not None:
        curve = curve * gain
    return np.fft.irfft(spectrum * curve, n=signal.shape[0])


def _babble(rng: np.random.Generator, total: int, sample_rate: int, talkers: int = 9) -> Signal:
    """Several far-off talkers, each alternating talk spurts and pauses."""
    out = np.zeros(total)
    for _ in range(talkers):
        gain = gain_from_db(-rng.uniform(0.0, 12.0))
        pitch = rng.uniform(95.0, 140.0) if rng.random() < 0.5 else rng.uniform(170.0, 235.0)
        position = int(rng.uniform(0.0, 3.0) * sample_rate)
        while position < total:
            spurt_end = position + int(rng.uniform(0.8, 3.5) * sample_rate)
            while position < min(spurt_end, total):
                size = int(rng.uniform(0.12, 0.30) * sample_rate)
                syllable = _syllable(rng, size, sample_rate, pitch) * gain
                stop = min(position + size, total)
                out[position:stop] += syllable[: stop - position]
                position = stop + int(rng.uniform(0.0, 0.06) * sample_rate)
            position += int(rng.uniform(0.4, 3.0) * sample_rate)
    # Distance: little below 150 Hz or above 3 kHz survives the room.
    return _shape(out, sample_rate, low=150.0, high=3000.0)


def _syllable(rng: np.random.Generator, size: int, sample_rate: int, pitch: float) -> Signal:
    """One vowel-like burst: pulses plus breath through three random formants, faded in/out."""
    glide = pitch * (1.0 + rng.uniform(-0.12, 0.12) * np.linspace(-1.0, 1.0, size))
    phase = np.cumsum(glide / sample_rate)
    pulses = np.diff(np.floor(phase), prepend=0.0)
    source = _unit_rms(pulses) + rng.uniform(0.2, 0.8) * rng.standard_normal(size)
    freqs = np.fft.rfftfreq(size, 1.0 / sample_rate)
    formants = (
        (rng.uniform(300.0, 850.0), 90.0, 1.0),
        (rng.uniform(900.0, 2300.0), 130.0, 0.6),
        (rng.uniform(2400.0, 3000.0), 200.0, 0.3),
    )
    envelope = 0.03 + sum(g / (1.0 + ((freqs - f) / (b / 2.0)) ** 2) for f, b, g in formants)
    voiced = _unit_rms(np.fft.irfft(np.fft.rfft(source) * envelope, n=size))
    fade = np.sin(np.linspace(0.0, np.pi, size)) ** 0.7
    return voiced * fade * rng.uniform(0.4, 1.0)


def _room_tone(rng: np.random.Generator, total: int, sample_rate: int) -> Signal:
    """Ventilation and room noise: pink-ish, mostly below 1.5 kHz."""
    freqs = np.fft.rfftfreq(total, 1.0 / sample_rate)
    pink = 1.0 / np.sqrt(np.maximum(freqs, 20.0))
    return _shape(rng.standard_normal(total), sample_rate, pink, low=40.0, high=1500.0)


def _keyboard(
    rng: np.random.Generator, total: int, sample_rate: int, quiet_edge: int, typists: int = 2
) -> Signal:
    """Distant typing: bursts of key presses, each a few ms of bright decaying noise.

    The first and last `quiet_edge` samples stay free of presses.
    """
    out = np.zeros(total)
    click_size = int(0.006 * sample_rate)
    decay = np.exp(-np.arange(click_size) / (0.0012 * sample_rate))
    for _ in range(typists):
        gain = gain_from_db(-rng.uniform(0.0, 8.0))
        position = quiet_edge + int(rng.uniform(0.0, 5.0) * sample_rate)
        while position < total:
            burst_end = position + int(rng.uniform(1.0, 4.0) * sample_rate)
            while position < min(burst_end, total - quiet_edge - click_size):
                press = np.diff(rng.standard_normal(click_size + 1)) * decay
                out[position : position + click_size] += press * gain * rng.uniform(0.5, 1.0)
                position += int(rng.uniform(0.08, 0.25) * sample_rate)
            position += int(rng.uniform(2.0, 8.0) * sample_rate)
    peak = float(np.max(np.abs(out)))
    return _shape(out / peak if peak > 0 else out, sample_rate, low=800.0, high=6000.0)
