"""The call-centre ambience: level, size, a click-free loop point, determinism."""

from __future__ import annotations

import wave
from importlib import resources

import numpy as np
import pytest

from phonebooth.voice.ambience import (
    CALL_CENTER_FILE,
    generate_call_center,
    load_call_center,
    make_loopable,
)
from phonebooth.voice.frames import dbfs


def packaged_format() -> tuple[int, int, int, int]:
    """(channels, sample width, rate, frames) of the shipped WAV."""
    path = resources.files("phonebooth.voice").joinpath("data", CALL_CENTER_FILE)
    with wave.open(str(path), "rb") as wav:
        return wav.getnchannels(), wav.getsampwidth(), wav.getframerate(), wav.getnframes()


def test_packaged_track_format_and_size() -> None:
    channels, width, rate, frames = packaged_format()
    assert (channels, width) == (1, 2)
    assert rate in (8000, 16000)
    seconds = frames / rate
    assert 30.0 <= seconds <= 60.0
    size = resources.files("phonebooth.voice").joinpath("data", CALL_CENTER_FILE).read_bytes()
    assert len(size) < 2 * 1024 * 1024


def test_packaged_track_level_is_in_range() -> None:
    track = load_call_center(16000)
    assert -35.0 <= dbfs(track) <= -25.0
    assert dbfs(track) == pytest.approx(-30.0, abs=0.5)
    assert np.abs(track.astype(np.int32)).max() < 32768 // 2  # headroom: peaks under -6 dBFS
    second_levels = [dbfs(track[i : i + 16000]) for i in range(0, track.shape[0], 16000)]
    assert min(second_levels) > -40.0  # never a dead second: it must sound continuous


def test_packaged_track_is_the_generators_loop() -> None:
    """So what the loop tests below prove about the generator holds for the shipped file
    (to 1 LSB: FFT rounding may differ between numpy builds)."""
    _, _, rate, frames = packaged_format()
    seconds = frames / rate
    rendered = generate_call_center(seconds=seconds, sample_rate=rate)
    shipped = load_call_center(rate)
    assert np.abs(rendered.astype(np.int32) - shipped.astype(np.int32)).max() <= 1


def test_packaged_track_seam_is_unremarkable() -> None:
    track = load_call_center(16000).astype(np.int32)
    jump = abs(int(track[0]) - int(track[-1]))
    assert jump <= np.abs(np.diff(track)).max() / 2
    seam = np.abs(np.diff(np.concatenate([track[-2:], track[:2]]), 2)).max()
    assert seam <= np.percentile(np.abs(np.diff(track, 2)), 99.99)


def test_loop_seam_is_the_original_continuation() -> None:
    """Folding puts sample L - 1 of the rendered signal before sample L: no seam at all."""
    signal = np.random.default_rng(5).standard_normal(10_800)
    looped = make_loopable(signal, 800)
    assert looped.shape == (10_000,)
    assert looped[-1] == signal[9_999] and looped[0] == signal[10_000]
    assert np.array_equal(looped[800:], signal[800:10_000])  # untouched outside the fold


def test_loop_crossfade_keeps_the_level() -> None:
    """Equal-power fade: uncorrelated noise does not dip where the ends overlap."""
    signal = np.random.default_rng(6).standard_normal(200_000 + 8000)
    looped = make_loopable(signal, 8000)
    faded = float(np.sqrt(np.mean(looped[:8000] ** 2)))
    assert faded == pytest.approx(1.0, abs=0.05)


def test_packaged_track_resamples_for_the_carrier() -> None:
    narrow = load_call_center(8000)
    assert narrow.shape[0] == load_call_center(16000).shape[0] // 2
    assert dbfs(narrow) == pytest.approx(dbfs(load_call_center(16000)), abs=1.0)


def test_loop_crossfade_removes_the_jump() -> None:
    """A sine cut mid-period clicks when looped; folded with a crossfade it does not."""
    t = np.arange(16000 + 800) / 16000
    sine = np.sin(2 * np.pi * 441.3 * t) * 10000
    naive = sine[:16000]
    assert abs(naive[-1] - naive[0]) > 1000
    looped = make_loopable(sine, 800)
    assert looped.shape[0] == 16000
    step = np.abs(np.diff(sine)).max()
    assert abs(looped[-1] - looped[0]) <= step


def test_loop_crossfade_needs_a_sane_length() -> None:
    with pytest.raises(ValueError):
        make_loopable(np.zeros(100), 60)


@pytest.mark.parametrize(("rate", "level"), [(16000, -30.0), (8000, -27.0)])
def test_generator_level_and_determinism(rate: int, level: float) -> None:
    first = generate_call_center(seconds=6.0, sample_rate=rate, seed=11, level_dbfs=level)
    assert first.shape == (6 * rate,)
    assert dbfs(first) == pytest.approx(level, abs=0.05)
    again = generate_call_center(seconds=6.0, sample_rate=rate, seed=11, level_dbfs=level)
    assert np.array_equal(first, again)
    other = generate_call_center(seconds=6.0, sample_rate=rate, seed=12, level_dbfs=level)
    assert not np.array_equal(first, other)


def test_generator_sounds_like_a_room_not_a_tone() -> None:
    """Energy spread over the voice band, little above 4 kHz (distant, telephone-like)."""
    track = generate_call_center(seconds=8.0, sample_rate=16000, seed=3).astype(np.float64)
    power = np.abs(np.fft.rfft(track)) ** 2
    freqs = np.fft.rfftfreq(track.shape[0], 1 / 16000)
    share = {
        band: float(power[(freqs >= lo) & (freqs < hi)].sum() / power.sum())
        for band, (lo, hi) in {
            "low": (0, 150),
            "voice": (150, 3400),
            "high": (4000, 8000),
        }.items()
    }
    assert share["voice"] > 0.6
    assert share["high"] < 0.05
    strongest = power.max() / power.sum()
    assert strongest < 0.01  # no single frequency dominates: no hum, no whistle
