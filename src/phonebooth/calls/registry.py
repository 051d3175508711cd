"""Live calls in this process and the concurrency limit that refuses calls beyond it."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field

__all__ = ["LiveCall", "LiveCalls"]


@dataclass
class LiveCall:
    """A running call; `hangup` is how the API or a timer asks it to end."""

    call_id: int
    org_id: int
    ended: asyncio.Event = field(default_factory=asyncio.Event)
    end_requests: list[str] = field(default_factory=list)
    on_hangup: Callable[[str], None] | None = None

    def request_end(self, reason: str) -> None:
        self.end_requests.append(reason)
        if self.on_hangup is not None:
            self.on_hangup(reason)


class LiveCalls:
    """Slots are reserved before anything is recorded, so a refused call leaves no trace."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._reserved = 0
        self._holding: set[int] = set()
        self._calls: dict[int, LiveCall] = {}

    @property
    def in_use(self) -> int:
        return self._reserved

    def try_reserve(self) -> bool:
        if self._reserved >= self.limit:
            return False
        self._reserved += 1
        return True

    def release(self) -> None:
        """Give back a reservation that never became a call (setup failed)."""
        self._reserved = max(0, self._reserved - 1)

    def bind(self, call_id: int) -> None:
        """The reservation now belongs to this call; `finish` gives it back."""
        self._holding.add(call_id)

    def finish(self, call_id: int) -> None:
        """The call is over: forget it and free its slot (once, however often called)."""
        self._calls.pop(call_id, None)
        if call_id in self._holding:
            self._holding.discard(call_id)
            self.release()

    def add(self, call: LiveCall) -> None:
        self._calls[call.call_id] = call

    def get(self, call_id: int) -> LiveCall | None:
        return self._calls.get(call_id)
