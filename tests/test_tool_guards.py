"""Tool-call guards (contract 4.4): tables of model steps and the verdicts they get."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from phonebooth.agent.tool_guards import (
    MAX_CALLS_PER_CALL,
    MAX_CALLS_PER_STEP,
    MAX_SAME_CALL,
    MAX_STEPS_PER_TURN,
    ToolGuards,
    call_key,
)

Step = list[tuple[str, object]]


def distinct(count: int, start: int = 0, name: str = "t") -> Step:
    return [(name, {"n": start + i}) for i in range(count)]


def test_the_contract_numbers() -> None:
    assert (MAX_CALLS_PER_STEP, MAX_STEPS_PER_TURN, MAX_CALLS_PER_CALL, MAX_SAME_CALL) == (
        8,
        5,
        50,
        3,
    )


T, F = True, False


@pytest.mark.parametrize(
    ("steps", "expected"),
    [
        pytest.param([[]], [[]], id="empty step"),
        pytest.param([distinct(8)], [[T] * 8], id="8 in a step"),
        pytest.param([distinct(9)], [[T] * 8 + [F]], id="9th in a step"),
        pytest.param([distinct(12)], [[T] * 8 + [F] * 4], id="12 in a step"),
        pytest.param([distinct(9), distinct(1, 8)], [[T] * 8 + [F], [T]], id="step limit resets"),
        pytest.param([[("t", {"a": 1})] * 4], [[T, T, T, F]], id="4th same call in a step"),
        pytest.param(
            [[("t", {"a": 1})] * 2, [("t", {"a": 1})] * 2],
            [[T, T], [T, F]],
            id="4th same call across steps",
        ),
        pytest.param(
            [
                [("t", {"a": 1, "b": 2}), ("t", {"b": 2, "a": 1}), ("t", {"a": 1, "b": 2})],
                [("t", {"b": 2, "a": 1})],
            ],
            [[T, T, T], [F]],
            id="key order does not make a new call",
        ),
        pytest.param(
            [[("t", {"a": 1})] * 3 + [("u", {"a": 1}), ("t", {"a": 2}), ("t", {"a": "1"})]],
            [[T, T, T, T, T, T]],
            id="other tool or other arguments are other calls",
        ),
        pytest.param(
            [[("t", {"a": 1})] * 3 + [("t", {"a": 1})] * 5 + [("t", {"a": 2})]],
            [[T, T, T, F, F, F, F, F, F]],
            id="step limit counts refused calls too",
        ),
        pytest.param(
            [distinct(8, 8 * i) for i in range(6)] + [distinct(8, 48), distinct(1, 56)],
            [[T] * 8] * 6 + [[T, T] + [F] * 6, [F]],
            id="50 per call",
        ),
        pytest.param(
            [[("t", "not json")] * 4, [("t", [1]), ("t", None)]],
            [[T, T, T, F], [T, T]],
            id="raw and non-object arguments count too",
        ),
    ],
)
def test_admit(steps: list[Step], expected: list[list[bool]]) -> None:
    guards = ToolGuards()
    assert [guards.admit(step) for step in steps] == expected
    assert guards.total == sum(sum(verdicts) for verdicts in expected)


def test_refused_calls_do_not_use_the_call_budget() -> None:
    guards = ToolGuards()
    assert guards.admit([("t", {})] * 8) == [T, T, T] + [F] * 5
    admitted = sum(sum(guards.admit(distinct(8, 8 * i))) for i in range(7))
    assert admitted == MAX_CALLS_PER_CALL - 3
    assert guards.total == MAX_CALLS_PER_CALL


@pytest.mark.parametrize(
    ("first", "second", "same"),
    [
        ({"a": 1, "b": [1, 2]}, {"b": [1, 2], "a": 1}, True),
        ({"a": 1}, {"a": 1.0}, False),  # JSON text differs; conservative, never merges more
        ({"a": "é"}, {"a": "\u00e9"}, True),
        ({"a": [1, 2]}, {"a": [2, 1]}, False),
        ("{}", {}, False),  # raw unparseable text is not the parsed object
    ],
)
def test_call_key(first: object, second: object, same: bool) -> None:
    assert (call_key("t", first) == call_key("t", second)) is same
    assert call_key("t", first) != call_key("u", first)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(0, 3) | st.sampled_from(["a", "b"]),
    lambda children: (
        st.lists(children, max_size=2)
        | st.dictionaries(st.sampled_from(["x", "y"]), children, max_size=2)
    ),
    max_leaves=4,
)
steps_st = st.lists(
    st.lists(st.tuples(st.sampled_from(["t", "u"]), json_values), max_size=12), max_size=12
)


@given(steps_st)
def test_limits_always_hold(steps: list[Step]) -> None:
    guards = ToolGuards()
    per_key: dict[str, int] = {}
    total = 0
    for step in steps:
        verdicts = guards.admit(step)
        assert len(verdicts) == len(step)  # every call id gets a verdict
        assert sum(verdicts) <= MAX_CALLS_PER_STEP
        for index, ((name, arguments), allowed) in enumerate(zip(step, verdicts, strict=True)):
            key = call_key(name, arguments)
            count = per_key.get(key, 0)
            # Admitted exactly when no limit is reached: never refused without a reason.
            assert allowed == (
                index < MAX_CALLS_PER_STEP and count < MAX_SAME_CALL and total < MAX_CALLS_PER_CALL
            )
            if allowed:
                per_key[key] = count + 1
                total += 1
    assert total == guards.total <= MAX_CALLS_PER_CALL
    assert all(count <= MAX_SAME_CALL for count in per_key.values())
