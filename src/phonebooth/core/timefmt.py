"""ISO 8601 UTC timestamps as the contract writes them (`2026-01-01T12:00:00Z`)."""

from __future__ import annotations

from datetime import UTC, datetime

__all__ = ["iso"]


def iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
