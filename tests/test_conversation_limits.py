"""Tool results reach the model and the call goes on; guards; silence and time limits."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from tests.conftest import LiveServer
from tests.helpers import SEARCH_TOOL
from tests.llm_server import ScriptedLLMServer
from tests.servers import ScriptedReceiver, json_answer, raw_answer
from tests.sim import open_call


def tool(name: str, url: str, timeout: float = 10, method: str = "POST") -> dict[str, Any]:
    result = json.loads(json.dumps(SEARCH_TOOL))
    result["function"]["name"] = name
    result["endpoint"].update(url=url, method=method)
    result["timeout"] = timeout
    return result


def tool_messages(request: dict[str, Any]) -> dict[str, Any]:
    return {
        m["tool_call_id"]: json.loads(m["content"])
        for m in request["messages"]
        if m["role"] == "tool"
    }


async def test_failing_tools_give_the_contract_results_and_the_call_goes_on(
    live: LiveServer, receiver: ScriptedReceiver, llm: ScriptedLLMServer
) -> None:
    tools = [
        tool("broken", receiver.on("/500", raw_answer("kaput", status=500))),
        tool("slow", receiver.on("/slow", raw_answer("{}", delay=3)), timeout=1),
        tool("huge", receiver.on("/huge", json_answer({"blob": "x" * 50_000}))),
        tool("metadata", "http://169.254.169.254/latest/meta-data"),
        tool("strict", receiver.on("/strict", json_answer({"ok": True}))),
    ]
    # A webhook answer may name a refused URL (the API would not store it): contract 3.2.
    config = {"prompt": "p", "voice": "v", "product": "spark", "tools": tools}
    await live.set_webhook(receiver.on("/hook", json_answer(config)))
    await live.add_number("+15555550200")
    llm.reply_text("Hello.")
    args = {"date": "2025-01-02"}
    llm.reply_tool_calls(
        [
            ("a", "broken", args),
            ("b", "slow", args),
            ("c", "huge", args),
            ("d", "metadata", args),
            ("e", "strict", {"date": 5}),
        ]
    )
    llm.reply_text("Sorry, none of that worked.")
    llm.reply_text("Still here.")
    call = await open_call(live.ws_url, "+15555550200")
    await call.next("agent_turn_end")
    await call.say("Check everything")
    await call.next("agent_turn_end")
    await call.say("Are you there?")
    await call.next("agent_turn_end")
    ended = await call.hangup()
    await call.ws.close()

    results = tool_messages(llm.requests[2])
    assert results["a"] == {"error": "HTTP 500", "body": "kaput"}
    assert results["b"] == {"error": "timeout"}
    assert results["c"]["truncated"] is True
    assert len(results["c"]["result"].encode()) == 6144
    assert results["d"] == {"error": "url_not_allowed"}
    assert results["e"]["error"] == "invalid_arguments" and results["e"]["details"]
    assert receiver.requests_to("/strict") == []
    # the slow tool took a second: the caller heard a filler, the model's history did not
    spoken = [t["content"] for t in ended["transcripts"] if t["role"] == "assistant"]
    assert "One moment, please." in spoken
    assert all(m.get("content") != "One moment, please." for m in llm.requests[2]["messages"])
    assert ended["end_reason"] == "caller_hangup"
    assert ended["transcripts"][-1]["content"] == "Still here."


async def test_a_model_repeating_one_tool_is_stopped(
    live: LiveServer, receiver: ScriptedReceiver, llm: ScriptedLLMServer
) -> None:
    agent = await live.add_agent(
        first_message="Hello.", tools=[tool("lookup", receiver.on("/lookup", json_answer({})))]
    )
    await live.add_number("+15555550200", agent["id"])
    for step in range(6):
        llm.reply_tool_calls([(f"id{step}", "lookup", {"date": "2025-01-02"})])
    call = await open_call(live.ws_url, "+15555550200")
    await call.next("agent_turn_end")
    await call.say("Look it up")
    await call.next("agent_turn_end")
    ended = await call.hangup()
    await call.ws.close()
    assert len(receiver.requests_to("/lookup")) == 3
    assert len(llm.requests) == 5  # at most 5 model steps for the turn
    responses = [t["content"] for t in ended["transcripts"] if t["role"] == "tool_response"]
    assert len(responses) == 5  # every tool call id got a result
    assert responses[3:] == [{"error": "tool_call_limit"}] * 2
    for index in range(1, 5):
        assert {
            m.get("tool_call_id") for m in llm.requests[index]["messages"] if m["role"] == "tool"
        } >= {f"id{index - 1}"}


@pytest.fixture
def quick_silence(server_options: dict[str, Any]) -> None:
    server_options.update(silence_checkin_seconds=0.4, silence_hangup_seconds=1.3)


@pytest.mark.usefixtures("quick_silence")
async def test_silence_checks_in_twice_then_hangs_up(
    live: LiveServer, llm: ScriptedLLMServer
) -> None:
    agent = await live.add_agent(first_message="Hello.")
    await live.add_number("+15555550200", agent["id"])
    call = await open_call(live.ws_url, "+15555550200")
    ended = await asyncio.wait_for(call.next("ended"), 10)
    await call.ws.close()
    assert ended["end_reason"] == "timeout"
    assert ended["status"] == "completed"
    lines = [t["content"] for t in ended["transcripts"]]
    assert lines == ["Hello.", "Are you still there?", "Are you still there?"]


@pytest.fixture
def short_calls(server_options: dict[str, Any]) -> None:
    server_options.update(max_call_seconds=1.0)


@pytest.mark.usefixtures("short_calls")
async def test_max_call_duration(live: LiveServer) -> None:
    agent = await live.add_agent(first_message="Hello.")
    await live.add_number("+15555550200", agent["id"])
    call = await open_call(live.ws_url, "+15555550200")
    await call.next("agent_turn_end")
    await call.say("Hi")  # caller activity does not extend the limit
    ended = await asyncio.wait_for(call.next("ended"), 10)
    await call.ws.close()
    assert ended["end_reason"] == "timeout"
