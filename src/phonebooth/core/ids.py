"""Time-ordered integer ids that stay below 2**53, so JavaScript clients read them exactly."""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable

__all__ = ["MAX_SAFE_INTEGER", "IdGenerator"]

MAX_SAFE_INTEGER = 2**53 - 1
_EPOCH_MS = 1_735_689_600_000  # 2025-01-01T00:00:00Z
_SEQUENCE_BITS = 12
_SEQUENCE_MASK = (1 << _SEQUENCE_BITS) - 1


class IdGenerator:
    """Milliseconds since 2025 in the high bits, a per-process sequence in the low 12.

    41 bits of milliseconds last until the year 2094. The sequence starts at a random value
    so two processes started in the same millisecond are unlikely to collide; the database's
    primary key is the final guard (callers retry on conflict).
    """

    def __init__(self, now_ms: Callable[[], int] | None = None) -> None:
        self._now_ms = now_ms or (lambda: int(time.time() * 1000))
        self._lock = threading.Lock()
        self._last_ms = -1
        self._sequence = secrets.randbelow(1 << _SEQUENCE_BITS)

    def next_id(self) -> int:
        with self._lock:
            ms = max(self._now_ms() - _EPOCH_MS, self._last_ms)
            if ms == self._last_ms:
                self._sequence = (self._sequence + 1) & _SEQUENCE_MASK
                if self._sequence == 0:
                    ms += 1  # borrow the next millisecond rather than wrap
            self._last_ms = ms
            value = (ms << _SEQUENCE_BITS) | self._sequence
        if value > MAX_SAFE_INTEGER:
            raise OverflowError("id space exhausted")
        return value
