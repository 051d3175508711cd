"""G.711 mu-law and A-law by lookup tables, bit-exact with the ITU-T reference (G.191 STL).

Telephone carriers (Twilio Media Streams, RTP PCMU/PCMA, the simulated carrier) send 8 kHz
G.711. A 20 ms frame is 160 table look-ups, so a numpy gather beats any per-sample code and
`audioop` (deprecated, gone in 3.13) is not needed.

Negative inputs take their magnitude by one's complement (`~x`), as the ITU-T reference
does, so the quantizer is symmetric about -0.5. The mu-law encoder of Sun's widely copied
`g711.c` (and so `audioop`) negates instead: it differs from the reference at the 508
negative inputs next to a decision level. Its A-law encoder and both decoders agree.

The tables are built on first use (a few milliseconds), never at import.
"""

from __future__ import annotations

from functools import cache
from typing import Literal

import numpy as np
from numpy.typing import NDArray

from phonebooth.voice.frames import Samples, as_samples

__all__ = [
    "Law",
    "alaw_decode",
    "alaw_encode",
    "decode",
    "encode",
    "ulaw_decode",
    "ulaw_encode",
]

Law = Literal["ulaw", "alaw"]

_ULAW_BIAS = 33  # in 14-bit units: shifts every segment to start at a power of two
_ULAW_LIMIT = 0x1FFF  # biased 14-bit magnitudes above this all encode to the top code


def _all_int16() -> NDArray[np.int32]:
    """Every int16 value, ordered by its uint16 bit pattern (the encode tables' index)."""
    return np.arange(65536, dtype=np.uint32).astype(np.uint16).view(np.int16).astype(np.int32)


def _segment(values: NDArray[np.int32], first_boundary: int) -> NDArray[np.int32]:
    """How many of the doubling boundaries first, 2*first, ... (7 of them) each value reaches."""
    boundaries = first_boundary << np.arange(7, dtype=np.int32)
    return np.searchsorted(boundaries, values, side="right").astype(np.int32)


@cache
def _ulaw_tables() -> tuple[NDArray[np.uint8], NDArray[np.int16]]:
    x = _all_int16()
    magnitude = np.where(x < 0, ~x, x) >> 2  # 14-bit magnitude, 0..8191
    biased = np.minimum(magnitude + _ULAW_BIAS, _ULAW_LIMIT)
    seg = _segment(biased, 64)  # biased segment s spans [32 * 2**s, 64 * 2**s)
    step = (biased >> (seg + 1)) & 0xF
    level = (seg << 4) | step  # 0..127, growing with the magnitude
    encode = ((0x7F - level) | np.where(x >= 0, 0x80, 0)).astype(np.uint8)

    codes = np.arange(256, dtype=np.int32)
    level = 0x7F - (codes & 0x7F)
    seg, step = level >> 4, level & 0xF
    # Middle of the quantization interval, back in 16-bit units (x4) with the bias removed.
    middle = (1 << (seg + 5)) - _ULAW_BIAS + step * (2 << seg) + (1 << seg)
    decode = np.where(codes & 0x80, 4 * middle, -4 * middle).astype(np.int16)
    return encode, decode


@cache
def _alaw_tables() -> tuple[NDArray[np.uint8], NDArray[np.int16]]:
    x = _all_int16()
    magnitude = np.where(x < 0, ~x, x) >> 4  # 12-bit magnitude, 0..2047
    seg = _segment(magnitude, 32)
    seg = np.where(magnitude >= 16, seg + 1, 0)  # segments 0 and 1 share the finest step
    step = (magnitude >> np.maximum(seg - 1, 0)) & 0xF
    level = (seg << 4) | step
    encode = ((level | np.where(x >= 0, 0x80, 0)) ^ 0x55).astype(np.uint8)

    codes = np.arange(256, dtype=np.int32)
    toggled = codes ^ 0x55
    level = toggled & 0x7F
    seg, step = level >> 4, level & 0xF
    middle = np.where(
        seg == 0,
        (step << 4) + 8,
        ((256 + (step << 4) + 8) << np.maximum(seg - 1, 0)),
    )
    decode = np.where(toggled & 0x80, middle, -middle).astype(np.int16)
    return encode, decode


def ulaw_encode(audio: Samples | bytes) -> bytes:
    """16-bit PCM (array or little-endian bytes) to mu-law bytes, one byte a sample."""
    return _ulaw_tables()[0][as_samples(audio).view(np.uint16)].tobytes()


def ulaw_decode(data: bytes | bytearray | memoryview) -> Samples:
    """Mu-law bytes to an int16 array."""
    return _ulaw_tables()[1][np.frombuffer(data, dtype=np.uint8)]


def alaw_encode(audio: Samples | bytes) -> bytes:
    """16-bit PCM (array or little-endian bytes) to A-law bytes, one byte a sample."""
    return _alaw_tables()[0][as_samples(audio).view(np.uint16)].tobytes()


def alaw_decode(data: bytes | bytearray | memoryview) -> Samples:
    """A-law bytes to an int16 array."""
    return _alaw_tables()[1][np.frombuffer(data, dtype=np.uint8)]


def encode(law: Law, audio: Samples | bytes) -> bytes:
    """Encode by the law a transport negotiated (PCMU is `ulaw`, PCMA is `alaw`)."""
    return ulaw_encode(audio) if law == "ulaw" else alaw_encode(audio)


def decode(law: Law, data: bytes | bytearray | memoryview) -> Samples:
    return ulaw_decode(data) if law == "ulaw" else alaw_decode(data)
