"""The tool-call limits of one call (contract 4.4), as pure counters with no I/O.

A model that loops on a tool (or is steered into hammering a customer endpoint) must not be able
to send unbounded requests; these counters decide, before anything is sent, which tool calls of a
model step may run. Refused calls still get an answer (`{"error": "tool_call_limit"}`), which the
runner gives, so every tool call id the model produced is answered.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence

__all__ = [
    "MAX_CALLS_PER_CALL",
    "MAX_CALLS_PER_STEP",
    "MAX_SAME_CALL",
    "MAX_STEPS_PER_TURN",
    "ToolGuards",
    "call_key",
]

MAX_CALLS_PER_STEP = 8
MAX_STEPS_PER_TURN = 5  # enforced by the turn loop, which owns the steps
MAX_CALLS_PER_CALL = 50
MAX_SAME_CALL = 3


def call_key(name: str, arguments: object) -> str:
    """Identity of "the same tool with the same arguments": name plus canonical JSON.

    Sorted keys make `{"a":1,"b":2}` and `{"b":2,"a":1}` the same call. Arguments that are not
    JSON-serializable (the raw text of unparseable arguments is a string, so this is rare) fall
    back to their repr, which still identifies a repeat.
    """
    try:
        canonical = json.dumps(arguments, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    except (TypeError, ValueError):
        canonical = repr(arguments)
    return f"{name}\n{canonical}"


class ToolGuards:
    """Counters for one call; give every model step's tool calls to `admit`, in the model's order.

    Only admitted calls consume the per-call budgets: a refused call is never executed, so it
    should not use up a repeat or one of the 50.
    """

    def __init__(self) -> None:
        self._total = 0
        self._same: Counter[str] = Counter()

    @property
    def total(self) -> int:
        """Tool calls admitted so far in this call."""
        return self._total

    def admit(self, requests: Sequence[tuple[str, object]]) -> list[bool]:
        """For one model step's (name, arguments) pairs: True = execute, False = over a limit."""
        verdicts: list[bool] = []
        for index, (name, arguments) in enumerate(requests):
            key = call_key(name, arguments)
            allowed = (
                index < MAX_CALLS_PER_STEP
                and self._total < MAX_CALLS_PER_CALL
                and self._same[key] < MAX_SAME_CALL
            )
            if allowed:
                self._total += 1
                self._same[key] += 1
            verdicts.append(allowed)
        return verdicts
