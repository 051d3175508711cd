"""Streaming resampling keeps pitch, length and continuity across 20 ms chunks."""

from __future__ import annotations

import numpy as np
import pytest

from phonebooth.voice.frames import Samples, array_to_pcm, samples_per_frame
from phonebooth.voice.resample import StreamResampler, resample

PAIRS = [
    (8000, 16000),
    (16000, 8000),
    (16000, 24000),
    (24000, 16000),
    (22050, 16000),
    (16000, 22050),
    (22050, 8000),
]


def sine(frequency: float, rate: int, seconds: float, amplitude: float = 12000.0) -> Samples:
    t = np.arange(round(rate * seconds)) / rate
    return np.rint(amplitude * np.sin(2 * np.pi * frequency * t)).astype(np.int16)


def peak_hz(samples: Samples, rate: int) -> float:
    windowed = samples.astype(np.float64) * np.hanning(samples.shape[0])
    spectrum = np.abs(np.fft.rfft(windowed))
    return float(np.fft.rfftfreq(samples.shape[0], 1.0 / rate)[np.argmax(spectrum)])


def stream(resampler: StreamResampler, samples: Samples, chunk: int) -> Samples:
    pieces = [resampler.process(samples[i : i + chunk]) for i in range(0, samples.shape[0], chunk)]
    return np.concatenate([*pieces, resampler.flush()])


@pytest.mark.parametrize(("in_rate", "out_rate"), PAIRS)
def test_a_440_hz_sine_keeps_its_pitch_and_length(in_rate: int, out_rate: int) -> None:
    source = sine(440.0, in_rate, 2.0)
    out = stream(StreamResampler(in_rate, out_rate), source, samples_per_frame(in_rate))
    assert out.dtype == np.int16
    assert abs(out.shape[0] - 2.0 * out_rate) <= 2
    assert peak_hz(out, out_rate) == pytest.approx(440.0, abs=1.0)  # bins are 0.5 Hz wide


@pytest.mark.parametrize(("in_rate", "out_rate"), [(8000, 16000), (22050, 16000)])
def test_chunk_joins_are_clean(in_rate: int, out_rate: int) -> None:
    """Streamed output equals the one-shot conversion to within rounding: no seams."""
    source = sine(300.0, in_rate, 1.0)
    streamed = stream(StreamResampler(in_rate, out_rate), source, samples_per_frame(in_rate))
    whole = resample(source, in_rate, out_rate)
    middle = slice(out_rate // 10, out_rate - out_rate // 10)
    difference = streamed[middle].astype(np.int32) - whole[middle].astype(np.int32)
    assert np.abs(difference).max() <= 1


def test_bytes_in_and_uneven_chunks() -> None:
    source = sine(440.0, 8000, 1.0)
    resampler = StreamResampler(8000, 16000)
    pieces = [resampler.process(array_to_pcm(source[i : i + 77])) for i in range(0, 8000, 77)]
    out = np.concatenate([*pieces, resampler.flush()])
    assert abs(out.shape[0] - 16000) <= 2
    assert peak_hz(out, 16000) == pytest.approx(440.0, abs=1.5)


def test_equal_rates_pass_through() -> None:
    source = sine(440.0, 16000, 0.02)
    resampler = StreamResampler(16000, 16000)
    assert resampler.process(source) is source
    assert resampler.flush().shape == (0,)
    assert resampler.pending == 0.0


def test_flush_and_reset_make_it_ready_for_a_new_signal() -> None:
    resampler = StreamResampler(8000, 16000)
    first = stream(resampler, sine(440.0, 8000, 0.5), 160)
    second = stream(resampler, sine(440.0, 8000, 0.5), 160)
    assert np.array_equal(first, second)
    resampler.process(sine(440.0, 8000, 0.2))
    resampler.reset()
    assert np.array_equal(stream(resampler, sine(440.0, 8000, 0.5), 160), first)


def test_bad_rates_are_refused() -> None:
    with pytest.raises(ValueError):
        StreamResampler(0, 16000)
