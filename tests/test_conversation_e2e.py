"""A whole call: scripted model, real tool server, webhook, call.complete (issue acceptance)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import thunderphone
from starlette.requests import Request
from starlette.responses import Response

from tests.conftest import LiveServer
from tests.helpers import SEARCH_TOOL
from tests.llm_server import ScriptedLLMServer
from tests.servers import ScriptedReceiver, json_answer
from tests.sim import open_call


def hook(config: dict[str, Any]) -> Any:
    """The customer's single webhook: a configuration for call.incoming, 200 for the rest."""

    async def answer(request: Request) -> Response:
        event = json.loads(await request.body())
        if event["type"] == "call.incoming":
            return Response(json.dumps(config), media_type="application/json")
        return Response("ok")

    return answer


async def wait_for(predicate: Any, timeout: float = 15) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "timed out waiting"
        await asyncio.sleep(0.05)


async def test_tool_call_round_trip_and_call_complete(
    live: LiveServer, receiver: ScriptedReceiver, llm: ScriptedLLMServer
) -> None:
    tool = json.loads(json.dumps(SEARCH_TOOL))
    tool["endpoint"]["url"] = receiver.url("/appointments/search")
    config = {
        "prompt": "You book dental appointments.",
        "voice": "en-US-James1",
        "product": "spark",
        "tools": [tool],
    }
    await live.add_number("+15555550200")
    await live.set_webhook(receiver.on("/hook", hook(config)))
    secret = (await live.json("GET", "/v1/webhook"))["secret"]
    receiver.on("/appointments/search", json_answer({"slots": ["09:00", "14:00"]}))

    llm.reply_text("Hello, Bright Smile Dental!")
    llm.reply_tool_calls([("call_1", "search_appointments", {"date": "2025-01-02"})])
    llm.reply_text("We have nine and two o'clock.")

    call = await open_call(live.ws_url, "+15555550200")
    setup = await call.next("setup")
    assert setup["config_source"] == "webhook"
    await call.next("agent_turn_end")
    await call.say("Anything on January second?")
    await call.next("agent_turn_end")
    ended = await call.hangup()
    await call.ws.close()
    kinds = [m["type"] for m in call.messages]
    assert kinds.index("tool_call") < kinds.index("tool_result")
    tool_result = next(m for m in call.messages if m["type"] == "tool_result")
    assert tool_result["result"] == {"slots": ["09:00", "14:00"]}

    (sent,) = receiver.requests_to("/appointments/search")
    assert sent.method == "POST"
    assert sent.json() == {"date": "2025-01-02"}
    assert sent.headers["x-api-key"] == "your-key"
    assert sent.headers["x-thunderphone-call-id"] == str(setup["call_id"])
    assert thunderphone.verify_signature(
        sent.headers["x-thunderphone-signature-v2"],
        secret=secret,
        method="POST",
        path=sent.raw_path,
        body=sent.body,
    )

    follow_up = llm.requests[2]["messages"]
    tool_message = next(m for m in follow_up if m["role"] == "tool")
    assert tool_message["tool_call_id"] == "call_1"
    assert json.loads(tool_message["content"]) == {"slots": ["09:00", "14:00"]}

    roles = [t["role"] for t in ended["transcripts"]]
    assert roles == ["assistant", "user", "tool_call", "tool_response", "assistant"]
    assert ended["transcripts"][2]["content"] == {
        "name": "search_appointments",
        "arguments": {"date": "2025-01-02"},
    }
    assert ended["transcripts"][4]["content"] == "We have nine and two o'clock."
    assert ended["end_reason"] == "caller_hangup"
    assert ended["latency"]["p50"]["llm_first_token_ms"] is not None

    def completes() -> list[Any]:
        return [r for r in receiver.requests_to("/hook") if r.json()["type"] == "call.complete"]

    await wait_for(lambda: len(completes()) == 1)
    (complete,) = completes()
    assert thunderphone.verify_signature(
        complete.headers["x-thunderphone-signature-v2"],
        secret=secret,
        method="POST",
        path=complete.raw_path,
        body=complete.body,
    )
    assert "x-thunderphone-event-id" in complete.headers
    data = complete.json()["data"]
    assert data["call_id"] == setup["call_id"]
    assert [t["role"] for t in data["transcripts"]] == roles
    assert data["config_source"] == "webhook"
    assert data["status"] == "completed"


async def test_end_call_tool_ends_with_agent_end(live: LiveServer, llm: ScriptedLLMServer) -> None:
    agent = await live.add_agent(first_message="Hi, this is the front desk.")
    await live.add_number("+15555550200", agent["id"])
    llm.reply_tool_calls([("c1", "end_call", {})], text="Goodbye now!")
    call = await open_call(live.ws_url, "+15555550200")
    await call.next("setup")
    greeting = await call.next("agent_text")
    assert greeting["delta"] == "Hi, this is the front desk."
    await call.say("That's all, thanks.")
    ended = await call.next("ended")
    await call.ws.close()
    assert ended["end_reason"] == "agent_end"
    assert ended["status"] == "completed"
    roles = [t["role"] for t in ended["transcripts"]]
    assert roles == ["assistant", "user", "assistant", "tool_call", "tool_response"]
    assert ended["transcripts"][3]["content"]["name"] == "end_call"
    assert len(llm.requests) == 1  # first_message needed no model call


async def test_model_failure_apologises_and_ends_with_error(
    live: LiveServer, llm: ScriptedLLMServer
) -> None:
    agent = await live.add_agent(first_message="Hello!")
    await live.add_number("+15555550200", agent["id"])
    llm.fail(400, "bad request")
    call = await open_call(live.ws_url, "+15555550200")
    await call.next("setup")
    await call.say("Hi")
    ended = await call.next("ended")
    await call.ws.close()
    assert ended["end_reason"] == "error"
    assert ended["status"] == "failed"
    assert "trouble" in ended["transcripts"][-1]["content"]


async def test_caller_first_waits_for_the_caller(live: LiveServer, llm: ScriptedLLMServer) -> None:
    agent = await live.add_agent(inbound_speak_order="caller_first")
    await live.add_number("+15555550200", agent["id"])
    llm.reply_text("Sure, I can help.")
    call = await open_call(live.ws_url, "+15555550200")
    setup = await call.next("setup")
    assert setup["speak_order"] == "caller_first"
    await call.say("I need help")
    await call.next("agent_turn_end")
    ended = await call.hangup()
    await call.ws.close()
    assert [t["role"] for t in ended["transcripts"]] == ["user", "assistant"]
