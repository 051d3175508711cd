"""Mixing the agent's speech over the background: saturation, level, the 15 dB gap, looping."""

from __future__ import annotations

import numpy as np
import pytest

from phonebooth.voice.frames import Samples, array_to_pcm, dbfs
from phonebooth.voice.mixer import BackgroundMixer, mix

RATE = 16000
FRAME = 320


def noise(level_dbfs: float, seconds: float, seed: int = 1) -> Samples:
    """White noise whose RMS level is `level_dbfs`."""
    values = np.random.default_rng(seed).standard_normal(int(seconds * RATE))
    values *= 32768.0 * 10 ** (level_dbfs / 20) / np.sqrt(np.mean(values**2))
    return np.clip(np.rint(values), -32768, 32767).astype(np.int16)


def play(mixer: BackgroundMixer, speech: Samples | None, seconds: float) -> list[Samples]:
    frames = []
    for index in range(int(seconds * RATE) // FRAME):
        part = None if speech is None else speech[index * FRAME : (index + 1) * FRAME]
        frames.append(mixer.next_frame(part))
    return frames


def test_mix_saturates_instead_of_wrapping() -> None:
    a = np.array([30000, -30000, 100, 32767], dtype=np.int16)
    b = np.array([30000, -30000, -300, 1], dtype=np.int16)
    assert mix(a, b).tolist() == [32767, -32768, -200, 32767]
    with pytest.raises(ValueError):
        mix(a, b[:2])


def test_background_alone_sits_at_the_target_level() -> None:
    mixer = BackgroundMixer(noise(-18.0, 1.3), sample_rate=RATE, target_dbfs=-30.0)
    frames = play(mixer, None, 5.0)
    assert all(frame.shape == (FRAME,) for frame in frames)
    assert dbfs(np.concatenate(frames)) == pytest.approx(-30.0, abs=0.2)


def test_track_loops_seamlessly() -> None:
    """A track of 1001 samples (not a whole number of frames) repeats sample for sample."""
    track = noise(-30.0, 1001 / RATE)
    mixer = BackgroundMixer(track, sample_rate=RATE, target_dbfs=dbfs(track))
    out = np.concatenate(play(mixer, None, 0.2))
    assert np.array_equal(out, np.resize(track, out.shape[0]))


def test_loud_speech_leaves_the_background_alone() -> None:
    """Speech at -12 dBFS is already 18 dB above a -30 dBFS background: no ducking."""
    speech = noise(-12.0, 2.0, seed=2)
    mixer = BackgroundMixer(noise(-30.0, 3.0), sample_rate=RATE)
    out = np.concatenate(play(mixer, speech, 2.0))
    background = out.astype(np.int32) - speech.astype(np.int32)
    assert dbfs(background.astype(np.int16)) == pytest.approx(-30.0, abs=0.3)


@pytest.mark.parametrize("speech_dbfs", [-20.0, -26.0])
def test_quiet_speech_ducks_the_background_15_db_below(speech_dbfs: float) -> None:
    speech = noise(speech_dbfs, 2.0, seed=2)
    mixer = BackgroundMixer(noise(-30.0, 3.0), sample_rate=RATE)
    out = np.concatenate(play(mixer, speech, 2.0))
    background = (out.astype(np.int32) - speech.astype(np.int32)).astype(np.int16)
    ducked = background[2 * FRAME :]  # the gain ramps down within the first frame
    assert dbfs(ducked) <= speech_dbfs - 15.0 + 0.3
    assert dbfs(ducked) >= speech_dbfs - 15.0 - 1.0  # ducked just enough, not muted


def test_background_comes_back_after_speech() -> None:
    mixer = BackgroundMixer(noise(-30.0, 3.0), sample_rate=RATE)
    play(mixer, noise(-25.0, 1.0, seed=2), 1.0)
    after = play(mixer, None, 2.0)
    assert dbfs(np.concatenate(after[:10])) < -38.0  # held through a pause between words
    assert dbfs(np.concatenate(after[-25:])) == pytest.approx(-30.0, abs=0.5)


def test_gain_changes_without_steps() -> None:
    """Ducking ramps within the frame: no jump bigger than the signals' own changes."""
    track = np.full(RATE, 1000, dtype=np.int16)  # DC makes any gain step visible
    mixer = BackgroundMixer(track, sample_rate=RATE, target_dbfs=dbfs(track))
    out = np.concatenate([mixer.next_frame(None), mixer.next_frame(np.zeros(FRAME, np.int16))])
    speech = np.full(FRAME, 2000, dtype=np.int16)  # -24 dBFS: ducks the DC by about 9 dB
    ducked = mixer.next_frame(speech).astype(np.int32) - 2000
    steps = np.abs(np.diff(np.concatenate([out.astype(np.int32), ducked])))
    assert ducked[-1] < 400 and steps.max() <= 3


def test_bytes_speech_and_odd_lengths() -> None:
    mixer = BackgroundMixer(noise(-30.0, 1.0), sample_rate=RATE)
    assert mixer.next_frame(array_to_pcm(np.zeros(100, dtype=np.int16))).shape == (100,)
    assert mixer.next_frame().shape == (FRAME,)


def test_without_a_track_speech_passes_through() -> None:
    mixer = BackgroundMixer(None, sample_rate=8000)
    speech = noise(-20.0, 0.02)[:160]
    assert np.array_equal(mixer.next_frame(speech), speech)
    assert np.array_equal(mixer.next_frame(None), np.zeros(160, dtype=np.int16))


def test_silent_track_is_refused() -> None:
    with pytest.raises(ValueError):
        BackgroundMixer(np.zeros(RATE, dtype=np.int16), sample_rate=RATE)
