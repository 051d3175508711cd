"""Frame sizes, PCM conversions, levels and re-chunking."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from phonebooth.voice.frames import (
    FrameBuffer,
    array_to_pcm,
    as_samples,
    bytes_per_frame,
    dbfs,
    pcm_to_array,
    rms,
    samples_per_frame,
    silence,
)


@pytest.mark.parametrize(
    ("rate", "samples"),
    [(8000, 160), (16000, 320), (22050, 441), (24000, 480), (44100, 882), (48000, 960)],
)
def test_samples_per_20ms_frame(rate: int, samples: int) -> None:
    assert samples_per_frame(rate) == samples
    assert bytes_per_frame(rate) == 2 * samples
    assert len(silence(rate)) == 2 * samples


@pytest.mark.parametrize(("rate", "frame_ms"), [(11025, 20), (16000, 0), (0, 20), (22050, 10)])
def test_frames_that_are_not_whole_samples_are_refused(rate: int, frame_ms: int) -> None:
    with pytest.raises(ValueError):
        samples_per_frame(rate, frame_ms)


def test_pcm_is_little_endian() -> None:
    assert pcm_to_array(b"\x01\x00\xff\xff\x00\x80").tolist() == [1, -1, -32768]
    assert array_to_pcm(np.array([1, -1, -32768], dtype=np.int16)) == b"\x01\x00\xff\xff\x00\x80"
    assert array_to_pcm(np.array([258], dtype=">i2")) == b"\x02\x01"


def test_odd_pcm_is_refused() -> None:
    with pytest.raises(ValueError, match="whole number"):
        pcm_to_array(b"\x00\x01\x02")


def test_as_samples_refuses_wrong_arrays() -> None:
    with pytest.raises(ValueError):
        as_samples(np.zeros(4, dtype=np.float32))
    with pytest.raises(ValueError):
        as_samples(np.zeros((2, 2), dtype=np.int16))


@given(st.binary(max_size=2000).filter(lambda b: len(b) % 2 == 0))
def test_pcm_round_trip(pcm: bytes) -> None:
    samples = pcm_to_array(pcm)
    assert samples.flags.writeable
    assert array_to_pcm(samples) == pcm


def test_levels() -> None:
    square = np.tile(np.array([32767, -32768], dtype=np.int16), 160)
    assert dbfs(square) == pytest.approx(0.0, abs=0.001)
    sine = np.rint(32767 * np.sin(2 * np.pi * 1000 * np.arange(16000) / 16000)).astype(np.int16)
    assert dbfs(sine) == pytest.approx(-3.01, abs=0.01)
    assert dbfs(array_to_pcm(sine)) == dbfs(sine)
    assert rms(silence(16000)) == 0.0
    assert dbfs(silence(16000)) == -math.inf
    assert rms(b"") == 0.0
    tenth = np.full(320, 3277, dtype=np.int16)
    assert dbfs(tenth) == pytest.approx(-20.0, abs=0.01)


@given(
    st.binary(min_size=0, max_size=3000),
    st.lists(st.integers(min_value=0, max_value=3000), max_size=12),
    st.sampled_from([8000, 16000, 22050]),
)
def test_frame_buffer_rechunks_without_loss(data: bytes, cuts: list[int], rate: int) -> None:
    buffer = FrameBuffer(rate)
    frames: list[bytes] = []
    edges = sorted({0, len(data), *(c for c in cuts if c < len(data))})
    for start, stop in itertools.pairwise(edges):
        frames += buffer.push(data[start:stop])
    assert all(len(frame) == bytes_per_frame(rate) for frame in frames)
    assert buffer.pending_bytes == len(data) % bytes_per_frame(rate)
    tail = buffer.flush()
    joined = b"".join(frames) + (tail or b"")
    assert joined[: len(data)] == data
    assert set(joined[len(data) :]) <= {0}
    assert len(joined) % bytes_per_frame(rate) == 0
    assert buffer.flush() is None


def test_frame_buffer_clear_drops_pending() -> None:
    buffer = FrameBuffer(8000)
    assert buffer.push(bytes(500)) == [bytes(320)]
    buffer.clear()
    assert buffer.pending_bytes == 0
    assert buffer.flush() is None
