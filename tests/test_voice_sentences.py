"""Sentence splitting of streamed model text (speech starts before the reply is complete)."""

from __future__ import annotations

import pytest

from phonebooth.voice.sentences import SentenceSplitter


def split(text: str, piece: int = 3) -> list[str]:
    splitter = SentenceSplitter()
    out: list[str] = []
    for start in range(0, len(text), piece):
        out += splitter.feed(text[start : start + piece])
    return out + splitter.flush()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Hello there! How are you? ", ["Hello there!", "How are you?"]),
        ("Of course, we have nine. And two. ", ["Of course,", "we have nine.", "And two."]),
        ("We open at 9.30 today. Bye. ", ["We open at 9.30 today.", "Bye."]),
        ("No punctuation at all", ["No punctuation at all"]),
        ("Line one\nLine two", ["Line one", "Line two"]),
        ("", []),
    ],
)
def test_split_table(text: str, expected: list[str]) -> None:
    assert split(text) == expected


def test_only_the_first_piece_of_a_reply_ends_at_a_comma() -> None:
    assert split("Of course, sure. Then, later, fine. ") == [
        "Of course,",
        "sure.",
        "Then, later, fine.",
    ]


def test_run_on_text_is_cut_at_a_comma() -> None:
    text = "First. " + ", ".join(["a clause with several words in it"] * 8) + "."
    pieces = split(text, piece=7)
    assert all(len(p) <= 200 for p in pieces)
    assert " ".join(pieces) == text.strip()
