"""Endpointing driven by scripted timelines on a fake clock (20 ms frames)."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from phonebooth.voice.endpointing import (
    TRANSITIONS,
    BargeIn,
    Endpointer,
    EndpointEvent,
    EndpointState,
    IllegalTransition,
    SpeechEnded,
    SpeechStarted,
    check_transition,
)

FRAME_MS = 20
Spans = list[tuple[int, int]]


class FakeClock:
    def __init__(self) -> None:
        self.now_ms = 0

    def __call__(self) -> int:
        return self.now_ms


def inside(spans: Spans, t_ms: int) -> bool:
    return any(start <= t_ms < end for start, end in spans)


def run(
    caller: Spans,
    *,
    until_ms: int = 6000,
    agent: Spans | None = None,
    silence_ms: int = 600,
    min_speech_ms: int = 100,
) -> list[EndpointEvent]:
    """Feed one frame per 20 ms; a frame starting at t is speech when t is in a caller span."""
    clock = FakeClock()
    endpointer = Endpointer(clock, silence_ms=silence_ms, min_speech_ms=min_speech_ms)
    events: list[EndpointEvent] = []
    for start in range(0, until_ms, FRAME_MS):
        endpointer.agent_speaking = inside(agent or [], start)
        clock.now_ms = start + FRAME_MS  # the frame has ended when it is fed
        events += endpointer.feed(inside(caller, start))
    return events


@pytest.mark.parametrize("silence_ms", [400, 600, 900])
def test_one_turn_ends_after_the_product_silence(silence_ms: int) -> None:
    events = run([(1000, 2000)], silence_ms=silence_ms)
    assert events == [SpeechStarted(1000), SpeechEnded(2000 + silence_ms, 1000, 2000)]


@pytest.mark.parametrize(
    ("caller", "expected"),
    [
        ([(1000, 1060)], []),  # a 60 ms click
        ([(1000, 1080)], []),
        ([(1000, 1100)], [SpeechStarted(1000), SpeechEnded(1700, 1000, 1100)]),
        ([(1000, 1040), (1200, 1260)], []),  # two clicks are not a turn
        # A pause shorter than the silence keeps the turn open...
        ([(1000, 1500), (1800, 2500)], [SpeechStarted(1000), SpeechEnded(3100, 1000, 2500)]),
        # ...a pause of exactly the silence ends it.
        (
            [(1000, 1500), (2100, 2500)],
            [
                SpeechStarted(1000),
                SpeechEnded(2100, 1000, 1500),
                SpeechStarted(2100),
                SpeechEnded(3100, 2100, 2500),
            ],
        ),
        # Speech to the end of the timeline: started, never ended.
        ([(5000, 6000)], [SpeechStarted(5000)]),
    ],
)
def test_turn_timelines(caller: Spans, expected: list[EndpointEvent]) -> None:
    assert run(caller) == expected


@pytest.mark.parametrize(
    ("caller", "agent", "expected"),
    [
        # The agent talks; the caller barges in at 2.3 s: 200 ms later it counts.
        (
            [(2300, 3000)],
            [(0, 5000)],
            [SpeechStarted(2300), BargeIn(2500), SpeechEnded(3600, 2300, 3000)],
        ),
        # 140 ms over the agent ("uh-huh"): a turn, but no barge-in.
        ([(2300, 2440)], [(0, 5000)], [SpeechStarted(2300), SpeechEnded(3040, 2300, 2440)]),
        # The same speech with the agent silent: no barge-in.
        ([(2300, 3000)], [], [SpeechStarted(2300), SpeechEnded(3600, 2300, 3000)]),
        # Only speech during the agent's audio counts: 100 ms of overlap is not enough...
        ([(1000, 2000)], [(1900, 5000)], [SpeechStarted(1000), SpeechEnded(2600, 1000, 2000)]),
        # ...600 ms is, and the barge-in comes 200 ms after the agent started.
        (
            [(1000, 2500)],
            [(1900, 5000)],
            [SpeechStarted(1000), BargeIn(2100), SpeechEnded(3100, 1000, 2500)],
        ),
        # Speech frames add up across a short pause inside the turn: 120 + 80 ms.
        (
            [(2000, 2120), (2300, 2380)],
            [(0, 5000)],
            [SpeechStarted(2000), BargeIn(2380), SpeechEnded(2980, 2000, 2380)],
        ),
        # One barge-in per caller turn, however long the caller talks.
        (
            [(1000, 3000), (4000, 4300)],
            [(0, 6000)],
            [
                SpeechStarted(1000),
                BargeIn(1200),
                SpeechEnded(3600, 1000, 3000),
                SpeechStarted(4000),
                BargeIn(4200),
                SpeechEnded(4900, 4000, 4300),
            ],
        ),
        # The agent stopped after 100 ms of overlap: the count starts again when it resumes.
        (
            [(2000, 3000)],
            [(1900, 2100), (2200, 5000)],
            [SpeechStarted(2000), BargeIn(2400), SpeechEnded(3600, 2000, 3000)],
        ),
    ],
)
def test_barge_in_timelines(caller: Spans, agent: Spans, expected: list[EndpointEvent]) -> None:
    assert run(caller, agent=agent) == expected


def test_barge_in_waits_for_a_confirmed_turn() -> None:
    """With a minimum speech longer than the barge-in time, the turn must be confirmed first."""
    events = run([(1000, 2000)], agent=[(0, 5000)], min_speech_ms=300)
    assert events == [SpeechStarted(1000), BargeIn(1300), SpeechEnded(2600, 1000, 2000)]


def test_states_along_a_turn() -> None:
    clock = FakeClock()
    endpointer = Endpointer(clock, silence_ms=400)
    seen = []
    for start, speech in [(0, True), (20, True), (40, True), (60, True), (80, True)] + [
        (t, False) for t in range(100, 520, 20)
    ]:
        clock.now_ms = start + FRAME_MS
        endpointer.feed(speech)
        seen.append(endpointer.state)
    assert [state for state, _ in itertools.groupby(seen)] == [
        EndpointState.PENDING,
        EndpointState.SPEAKING,
        EndpointState.TRAILING,
        EndpointState.IDLE,
    ]


def test_reset_returns_to_idle_silently() -> None:
    clock = FakeClock()
    endpointer = Endpointer(clock)
    for t in range(20, 400, 20):
        clock.now_ms = t
        endpointer.feed(True)
    endpointer.reset()
    assert endpointer.state is EndpointState.IDLE
    clock.now_ms = 2000
    assert endpointer.feed(False) == []


@pytest.mark.parametrize(
    ("source", "target"), list(itertools.product(EndpointState, EndpointState))
)
def test_transition_table(source: EndpointState, target: EndpointState) -> None:
    if target in TRANSITIONS[source]:
        assert check_transition(source, target) is target
    else:
        with pytest.raises(IllegalTransition) as raised:
            check_transition(source, target)
        assert (raised.value.source, raised.value.target) == (source, target)


def test_negative_durations_are_refused() -> None:
    with pytest.raises(ValueError):
        Endpointer(FakeClock(), silence_ms=-1)


@given(
    st.lists(st.booleans(), max_size=300),
    st.lists(st.booleans(), max_size=300),
    st.sampled_from([400, 600, 900]),
)
def test_any_frame_sequence_gives_well_formed_turns(
    speech: list[bool], agent: list[bool], silence_ms: int
) -> None:
    clock = FakeClock()
    endpointer = Endpointer(clock, silence_ms=silence_ms)
    events: list[EndpointEvent] = []
    for index, is_speech in enumerate(speech):
        endpointer.agent_speaking = agent[index] if index < len(agent) else False
        clock.now_ms = (index + 1) * FRAME_MS
        events += endpointer.feed(is_speech)
    open_turn: SpeechStarted | None = None
    barged = False
    for event in events:
        if isinstance(event, SpeechStarted):
            assert open_turn is None
            open_turn, barged = event, False
        elif isinstance(event, BargeIn):
            assert open_turn is not None and not barged
            assert event.at_ms - open_turn.at_ms >= 200
            barged = True
        else:
            assert open_turn is not None and event.speech_started_ms == open_turn.at_ms
            assert event.speech_stopped_ms - event.speech_started_ms >= 100
            assert event.at_ms - event.speech_stopped_ms == silence_ms
            open_turn = None
