"""G.711 tables against a slow reference written from the Recommendation's tables.

The reference below does not share the tables' bit tricks: it lists the decision levels of
G.711 Tables 1a (A-law) and 2a (mu-law) interval by interval and searches them, which is how
the standard itself defines the quantizer. Every one of the 65536 inputs and 256 codes is
compared.
"""

from __future__ import annotations

import bisect
import importlib
import warnings
from types import ModuleType

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from phonebooth.voice import g711
from phonebooth.voice.frames import array_to_pcm

ALL_INT16 = np.arange(-32768, 32768, dtype=np.int32).astype(np.int16)
ALL_CODES = bytes(range(256))
LAWS: tuple[g711.Law, ...] = ("ulaw", "alaw")


def _magnitude(x: int, drop_bits: int) -> int:
    """A two's-complement sample x stands for [x, x + 1): a negative one has magnitude -x - 1."""
    return (x if x >= 0 else -x - 1) >> drop_bits


# --- mu-law (G.711 Table 2a, 14-bit magnitudes 0..8191) ---------------------------------------


def _ulaw_intervals() -> tuple[list[int], list[int]]:
    """Lower decision level and decoder output of each of the 128 magnitude intervals."""
    lower, output = [0], [0]  # interval 0 is [0, 1) and decodes to 0
    for k in range(1, 16):  # the rest of segment 0: width 2 from 1 to 31
        lower.append(2 * k - 1)
        output.append(2 * k)
    start, width = 31, 4
    for _segment in range(1, 8):
        for k in range(16):
            lower.append(start + k * width)
            output.append(start + k * width + width // 2)
        start, width = start + 16 * width, width * 2
    assert start == 8159 and len(lower) == 128  # the top decision level of Table 2a
    return lower, output


ULAW_LOWER, ULAW_OUTPUT = _ulaw_intervals()


def ref_ulaw_encode(x: int) -> int:
    index = bisect.bisect_right(ULAW_LOWER, _magnitude(x, 2)) - 1
    return (0x80 if x >= 0 else 0x00) | (0x7F - index)  # the code is the inverted index


def ref_ulaw_decode(code: int) -> int:
    value = 4 * ULAW_OUTPUT[0x7F - (code & 0x7F)]  # back to 16-bit, left-justified
    return value if code & 0x80 else -value


# --- A-law (G.711 Table 1a, 13-bit magnitudes 0..4095) ----------------------------------------


def _alaw_intervals() -> tuple[list[int], list[int]]:
    lower = [2 * k for k in range(16)]  # segment 0: width 2 from 0
    start, width = 32, 2
    for _segment in range(1, 8):
        lower.extend(start + k * width for k in range(16))
        start, width = start + 16 * width, width * 2
    assert start == 4096 and len(lower) == 128
    widths = [b - a for a, b in zip(lower, [*lower[1:], 4096], strict=True)]
    return lower, [a + w // 2 for a, w in zip(lower, widths, strict=True)]


ALAW_LOWER, ALAW_OUTPUT = _alaw_intervals()


def ref_alaw_encode(x: int) -> int:
    index = bisect.bisect_right(ALAW_LOWER, _magnitude(x, 3)) - 1
    return ((0x80 if x >= 0 else 0x00) | index) ^ 0x55  # even bits inverted


def ref_alaw_decode(code: int) -> int:
    toggled = code ^ 0x55
    value = 8 * ALAW_OUTPUT[toggled & 0x7F]
    return value if toggled & 0x80 else -value


# --- exhaustive comparison --------------------------------------------------------------------


def test_ulaw_encode_matches_reference_for_every_input() -> None:
    expected = bytes(ref_ulaw_encode(int(x)) for x in ALL_INT16)
    assert g711.ulaw_encode(ALL_INT16) == expected


def test_alaw_encode_matches_reference_for_every_input() -> None:
    expected = bytes(ref_alaw_encode(int(x)) for x in ALL_INT16)
    assert g711.alaw_encode(ALL_INT16) == expected


def test_ulaw_decode_matches_reference_for_every_code() -> None:
    expected = [ref_ulaw_decode(c) for c in ALL_CODES]
    assert g711.ulaw_decode(ALL_CODES).tolist() == expected


def test_alaw_decode_matches_reference_for_every_code() -> None:
    expected = [ref_alaw_decode(c) for c in ALL_CODES]
    assert g711.alaw_decode(ALL_CODES).tolist() == expected


@pytest.mark.parametrize(
    ("sample", "ulaw", "alaw"),
    [
        (0, 0xFF, 0xD5),
        (-1, 0x7F, 0x55),  # one's complement: -1 is the smallest negative magnitude
        (8, 0xFE, 0xD5),
        (32767, 0x80, 0xAA),
        (-32768, 0x00, 0x2A),
        (1000, 0xCE, 0xFA),
        (-1000, 0x4E, 0x7A),
    ],
)
def test_known_codes(sample: int, ulaw: int, alaw: int) -> None:
    samples = np.array([sample], dtype=np.int16)
    assert g711.ulaw_encode(samples) == bytes([ulaw])
    assert g711.alaw_encode(samples) == bytes([alaw])


def test_every_code_survives_decode_then_encode() -> None:
    assert g711.alaw_encode(g711.alaw_decode(ALL_CODES)) == ALL_CODES
    # mu-law has two zeros: 0x7F ("negative zero") decodes to 0, which encodes as 0xFF.
    expected = ALL_CODES.replace(b"\x7f", b"\xff")
    assert g711.ulaw_encode(g711.ulaw_decode(ALL_CODES)) == expected


@given(st.lists(st.integers(-32768, 32767), max_size=400))
def test_bytes_and_arrays_encode_alike(values: list[int]) -> None:
    samples = np.array(values, dtype=np.int16)
    for law in LAWS:
        encoded = g711.encode(law, samples)
        assert len(encoded) == len(values)
        assert g711.encode(law, array_to_pcm(samples)) == encoded
        assert g711.decode(law, encoded).dtype == np.int16


def test_round_trip_error_is_within_half_a_step() -> None:
    for law, top_step in zip(LAWS, (4 * 256, 8 * 128), strict=True):
        decoded = g711.decode(law, g711.encode(law, ALL_INT16)).astype(np.int32)
        error = np.abs(decoded - ALL_INT16.astype(np.int32))
        inside = np.abs(ALL_INT16.astype(np.int32)) < 32000  # beyond the top level: clipping
        assert error[inside].max() <= top_step // 2 + 1


def _audioop() -> ModuleType | None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            return importlib.import_module("audioop")
        except ImportError:
            return None


def test_cross_check_with_audioop_where_present() -> None:
    """audioop (Sun's g711.c) decodes alike; it negates negatives instead of complementing.

    So for x < 0 its mu-law code is the reference's code for x - 4, and A-law (which Sun's
    code already complements) agrees everywhere.
    """
    audioop = _audioop()
    if audioop is None:
        pytest.skip("audioop is gone (Python 3.13+); the reference tables above still ran")
    pcm = array_to_pcm(ALL_INT16)
    assert g711.alaw_encode(ALL_INT16) == audioop.lin2alaw(pcm, 2)
    for law, to_lin in zip(LAWS, (audioop.ulaw2lin, audioop.alaw2lin), strict=True):
        theirs = np.frombuffer(to_lin(ALL_CODES, 2), dtype="<i2")
        assert np.array_equal(g711.decode(law, ALL_CODES), theirs)
    theirs_ulaw = np.frombuffer(audioop.lin2ulaw(pcm, 2), dtype=np.uint8)
    ours_ulaw = np.frombuffer(g711.ulaw_encode(ALL_INT16), dtype=np.uint8)
    positive = ALL_INT16 >= 0
    assert np.array_equal(ours_ulaw[positive], theirs_ulaw[positive])
    shifted = np.clip(ALL_INT16.astype(np.int32) - 4, -32768, 32767).astype(np.int16)
    negative = (ALL_INT16 < 0) & (ALL_INT16 >= -32764)
    ours_shifted = np.frombuffer(g711.ulaw_encode(shifted), dtype=np.uint8)
    assert np.array_equal(ours_shifted[negative], theirs_ulaw[negative])


def test_tables_are_built_once() -> None:
    g711.ulaw_encode(np.zeros(160, dtype=np.int16))
    g711.alaw_encode(np.zeros(160, dtype=np.int16))
    assert g711._ulaw_tables.cache_info().currsize == 1
    assert g711._alaw_tables.cache_info().currsize == 1
