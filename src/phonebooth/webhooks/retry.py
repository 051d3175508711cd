"""When to try a non-blocking event again, and what an answer means (contract 6).

Pure: the caller passes the time and the random source, so a schedule is a plain table in
tests and two workers with the same inputs make the same decision.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Literal

__all__ = [
    "JITTER",
    "RETRY_DELAYS",
    "RETRY_WINDOW",
    "STEADY_DELAY",
    "Classification",
    "classify",
    "next_attempt_at",
    "parse_retry_after",
    "retry_delay",
]

Classification = Literal["delivered", "retry", "gone"]

RETRY_DELAYS: tuple[timedelta, ...] = (
    timedelta(seconds=5),
    timedelta(seconds=30),
    timedelta(minutes=2),
    timedelta(minutes=10),
    timedelta(minutes=30),
    timedelta(hours=1),
    timedelta(hours=2),
    timedelta(hours=4),
)
STEADY_DELAY = timedelta(hours=4)  # after the listed delays, until the window closes
RETRY_WINDOW = timedelta(hours=24)  # counted from the first attempt
JITTER = 0.10  # each delay is scaled by a factor in [0.9, 1.1)
_MAX_RETRY_AFTER_DIGITS = 10  # ~300 years; keeps timedelta() from overflowing


def classify(status_code: int | None, failure_category: str | None) -> Classification:
    """Any 2xx is delivered, 410 means the receiver is gone for good, all else is retried.

    `failure_category` is accepted for symmetry with the recorded attempt: a request that got
    no answer (timeout, connection, DNS, TLS, refused URL) is always retried, since the
    receiver may come back.
    """
    del failure_category  # every transport failure is retryable
    if status_code is None:
        return "retry"
    if 200 <= status_code <= 299:
        return "delivered"
    if status_code == 410:
        return "gone"
    return "retry"


def retry_delay(attempt_count: int, rng: Callable[[], float]) -> timedelta:
    """The jittered wait after the `attempt_count`-th failed attempt (1 is the first).

    Jitter spreads the retries of many events that failed together (a receiver outage), so the
    receiver is not hit by all of them at the same instant when it comes back.
    """
    if attempt_count < 1:
        raise ValueError("attempt_count counts attempts made, starting at 1")
    index = attempt_count - 1
    base = RETRY_DELAYS[index] if index < len(RETRY_DELAYS) else STEADY_DELAY
    return base * (1 + JITTER * (2 * rng() - 1))


def parse_retry_after(value: str | None, now: datetime) -> timedelta | None:
    """A `Retry-After` header (delay-seconds or an HTTP-date) as a wait from `now`.

    None when absent or unreadable: a malformed header must not stop the schedule. A date in
    the past is a zero wait.
    """
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    if text.isascii() and text.isdigit():
        if len(text) > _MAX_RETRY_AFTER_DIGITS:
            return None
        return timedelta(seconds=int(text))
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # an HTTP-date is always GMT
        when = when.replace(tzinfo=UTC)
    return max(when - now, timedelta(0))


def next_attempt_at(
    first_attempt_at: datetime,
    attempt_count: int,
    now: datetime,
    rng: Callable[[], float],
    retry_after: timedelta | None = None,
) -> datetime | None:
    """When to try again after `attempt_count` failed attempts, or None to give up.

    The wait is the scheduled delay with jitter, or the receiver's `Retry-After` when that is
    longer (a receiver asking for more time knows its own load). No attempt starts more than
    24 h after the first one: past that the delivery is `failed`.
    """
    delay = retry_delay(attempt_count, rng)
    if retry_after is not None and retry_after > delay:
        delay = retry_after
    candidate = now + delay
    if candidate > first_attempt_at + RETRY_WINDOW:
        return None
    return candidate
