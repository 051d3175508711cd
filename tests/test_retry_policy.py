"""The retry schedule and the classification of answers (contract 6), as plain tables."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from phonebooth.webhooks.retry import (
    RETRY_WINDOW,
    classify,
    next_attempt_at,
    parse_retry_after,
    retry_delay,
)

T0 = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)


def middle() -> float:  # no jitter: the factor is exactly 1
    return 0.5


@pytest.mark.parametrize(
    ("status", "category", "expected"),
    [
        (200, None, "delivered"),
        (201, None, "delivered"),
        (204, None, "delivered"),
        (299, None, "delivered"),
        (410, "http_error", "gone"),
        (199, "http_error", "retry"),
        (300, "http_error", "retry"),
        (301, "http_error", "retry"),
        (400, "http_error", "retry"),
        (404, "http_error", "retry"),
        (429, "http_error", "retry"),
        (500, "http_error", "retry"),
        (503, "http_error", "retry"),
        (None, "timeout", "retry"),
        (None, "connection", "retry"),
        (None, "dns", "retry"),
        (None, "tls", "retry"),
        (None, "url_not_allowed", "retry"),
        (None, None, "retry"),
    ],
)
def test_classify(status: int | None, category: str | None, expected: str) -> None:
    assert classify(status, category) == expected


@pytest.mark.parametrize(
    ("attempts", "base"),
    [
        (1, timedelta(seconds=5)),
        (2, timedelta(seconds=30)),
        (3, timedelta(minutes=2)),
        (4, timedelta(minutes=10)),
        (5, timedelta(minutes=30)),
        (6, timedelta(hours=1)),
        (7, timedelta(hours=2)),
        (8, timedelta(hours=4)),
        (9, timedelta(hours=4)),
        (20, timedelta(hours=4)),
    ],
)
@pytest.mark.parametrize(("draw", "factor"), [(0.0, 0.9), (0.5, 1.0), (0.75, 1.05)])
def test_retry_delay_follows_the_schedule_with_jitter(
    attempts: int, base: timedelta, draw: float, factor: float
) -> None:
    assert retry_delay(attempts, lambda: draw) == base * factor


def test_jitter_stays_within_ten_percent() -> None:
    just_below_one = 1 - 2**-53  # the largest value random.random() can return
    assert retry_delay(1, lambda: 0.0) == timedelta(seconds=4.5)
    assert retry_delay(1, lambda: just_below_one) <= timedelta(seconds=5.5)  # microsecond rounding


def test_retry_delay_refuses_zero_attempts() -> None:
    with pytest.raises(ValueError):
        retry_delay(0, middle)


def test_the_whole_schedule_gives_up_24_hours_after_the_first_attempt() -> None:
    """Attempt at each scheduled time until the policy says stop; list the attempt times."""
    attempts = [T0]
    while True:
        after = next_attempt_at(T0, len(attempts), attempts[-1], middle)
        if after is None:
            break
        attempts.append(after)
    offsets = [a - T0 for a in attempts]
    h, m, s = timedelta(hours=1), timedelta(minutes=1), timedelta(seconds=1)
    assert offsets == [
        timedelta(0),
        5 * s,
        35 * s,
        2 * m + 35 * s,
        12 * m + 35 * s,
        42 * m + 35 * s,
        h + 42 * m + 35 * s,
        3 * h + 42 * m + 35 * s,
        7 * h + 42 * m + 35 * s,
        11 * h + 42 * m + 35 * s,
        15 * h + 42 * m + 35 * s,
        19 * h + 42 * m + 35 * s,
        23 * h + 42 * m + 35 * s,
    ]


@pytest.mark.parametrize(
    ("now_offset", "attempts", "expected_offset"),
    [
        (timedelta(0), 1, timedelta(seconds=5)),
        (timedelta(hours=23, minutes=59), 9, None),  # +4 h is past the window
        (timedelta(hours=23, minutes=59, seconds=55), 1, timedelta(hours=24)),  # exactly at the end
        (timedelta(hours=23, minutes=59, seconds=56), 1, None),
        (timedelta(hours=25), 2, None),  # a late worker never resumes an expired delivery
    ],
)
def test_next_attempt_at_respects_the_window(
    now_offset: timedelta, attempts: int, expected_offset: timedelta | None
) -> None:
    result = next_attempt_at(T0, attempts, T0 + now_offset, middle)
    assert result == (None if expected_offset is None else T0 + expected_offset)


@pytest.mark.parametrize(
    ("attempts", "retry_after", "expected"),
    [
        (1, timedelta(seconds=120), timedelta(seconds=120)),  # longer: the receiver wins
        (1, timedelta(seconds=2), timedelta(seconds=5)),  # shorter: the schedule wins
        (3, timedelta(seconds=0), timedelta(minutes=2)),
        (8, timedelta(hours=5), timedelta(hours=5)),
        (1, None, timedelta(seconds=5)),
    ],
)
def test_a_longer_retry_after_wins(
    attempts: int, retry_after: timedelta | None, expected: timedelta
) -> None:
    assert next_attempt_at(T0, attempts, T0, middle, retry_after) == T0 + expected


def test_a_retry_after_beyond_the_window_gives_up() -> None:
    assert next_attempt_at(T0, 1, T0, middle, RETRY_WINDOW + timedelta(seconds=1)) is None


def test_jitter_never_applies_to_retry_after() -> None:
    wait = timedelta(minutes=10)
    assert next_attempt_at(T0, 1, T0, lambda: 0.0, wait) == T0 + wait


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, None),
        ("", None),
        ("   ", None),
        ("120", timedelta(seconds=120)),
        (" 7 ", timedelta(seconds=7)),
        ("0", timedelta(0)),
        ("-5", None),
        ("1.5", None),
        ("soon", None),
        ("99999999999999999999", None),
        ("٣", None),  # a non-ASCII digit is not delay-seconds
        ("Thu, 01 Jan 2026 13:00:00 GMT", timedelta(hours=1)),
        ("Thursday, 01-Jan-26 12:00:30 GMT", timedelta(seconds=30)),  # RFC 850 form
        ("Thu Jan  1 12:02:00 2026", timedelta(minutes=2)),  # asctime form
        ("Wed, 31 Dec 2025 12:00:00 GMT", timedelta(0)),  # in the past: no wait
        ("Thu, 32 Jan 2026 13:00:00 GMT", None),
    ],
)
def test_parse_retry_after(header: str | None, expected: timedelta | None) -> None:
    assert parse_retry_after(header, T0) == expected
