"""Contract 3.3 row by row against a real receiver on 127.0.0.1, through the simulated carrier."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import pytest

from tests.conftest import LiveServer, free_port
from tests.helpers import SEARCH_TOOL
from tests.servers import ScriptedReceiver, json_answer, raw_answer
from tests.sim import setup_and_hangup

VALID = {"prompt": "You are the webhook's agent.", "voice": "en-US-James1", "product": "bolt"}


def with_tools(*tools: dict[str, Any]) -> dict[str, Any]:
    return {**VALID, "tools": list(tools)}


def tool(**changes: Any) -> dict[str, Any]:
    result = copy.deepcopy(SEARCH_TOOL)
    for path, value in changes.items():
        section, key = path.split("__")
        result[section][key] = value
    return result


@dataclass(frozen=True)
class Row:
    name: str
    answer: Any  # a behaviour for the receiver, or a URL string to use instead
    reason: str | None  # None: the webhook's configuration is used
    status: str | None  # delivery status; None: no delivery recorded
    category: str | None = None
    error_part: str | None = None


ROWS = [
    Row("500", raw_answer("boom", status=500), "http_500", "failed", "http_error"),
    Row("302", raw_answer("", 302, {"Location": "http://127.0.0.1:1/"}), "http_302", "failed",
        "http_error"),
    Row("204", raw_answer(b"", status=204), "empty", "delivered"),
    Row("empty body", raw_answer(b""), "empty", "delivered"),
    Row("whitespace", raw_answer(b" \n\t "), "empty", "delivered"),
    Row("{}", json_answer({}), "empty", "delivered"),
    Row("null", raw_answer(b"null"), "empty", "delivered"),
    Row("non-JSON", raw_answer(b"<html>ok</html>"), "invalid_json", "failed", "invalid_config"),
    Row("JSON list", json_answer([VALID]), "invalid_config", "failed", "invalid_config",
        "JSON object"),
    Row("seed status ok", json_answer({"status": "ok"}), "invalid_config", "failed",
        "invalid_config", "unknown key 'status'"),
    Row("voice_name and voice differ", json_answer({**VALID, "voice_name": "other"}),
        "invalid_config", "failed", "invalid_config", "voice_name"),
    Row("product SPARK", json_answer({**VALID, "product": "SPARK"}), "invalid_config", "failed",
        "invalid_config", "product: 'SPARK' is not one of spark, bolt, zap"),
    Row("background OFFICE", json_answer({**VALID, "background_track": "OFFICE"}),
        "invalid_config", "failed", "invalid_config", "background_track"),
    Row("relative tool url", json_answer(with_tools(tool(endpoint__url="/search"))),
        "invalid_config", "failed", "invalid_config", "tools[0].endpoint.url"),
    Row("duplicate tool names", json_answer(with_tools(tool(), tool())), "invalid_config",
        "failed", "invalid_config", "duplicate function name 'search_appointments'"),
    Row("parameters not object schema",
        json_answer(with_tools(tool(function__parameters={"type": "array"}))),
        "invalid_config", "failed", "invalid_config", "tools[0].function.parameters"),
    Row("remote $ref",
        json_answer(with_tools(tool(function__parameters={
            "type": "object", "properties": {"d": {"$ref": "https://evil.example/s.json"}}}))),
        "invalid_config", "failed", "invalid_config", "$ref"),
    Row("valid", json_answer(VALID), None, "delivered"),
    Row("voice_name alone", json_answer({k: v for k, v in {**VALID, "voice_name": "en-US-James1"}
                                         .items() if k != "voice"}), None, "delivered"),
]  # fmt: skip


@pytest.fixture
async def number(live: LiveServer) -> dict[str, Any]:
    agent = await live.add_agent(name="Fallback", prompt="You are the fallback.", voice="fallback")
    return await live.add_number("+15555550200", agent["id"])


async def run_row(live: LiveServer, url: str) -> tuple[dict[str, Any], dict[str, Any], list[Any]]:
    await live.set_webhook(url)
    setup, _ended = await setup_and_hangup(live.ws_url, "+15555550200")
    call = await live.json("GET", f"/v1/calls/{setup['call_id']}")
    deliveries = await live.deliveries(setup["call_id"], 1)
    return setup, call, deliveries


@pytest.mark.parametrize("row", ROWS, ids=[r.name for r in ROWS])
async def test_answer_table(
    live: LiveServer, receiver: ScriptedReceiver, number: dict[str, Any], row: Row
) -> None:
    url = receiver.on("/hook", row.answer)
    setup, call, deliveries = await run_row(live, url)
    assert len(receiver.requests_to("/hook")) == 1
    (delivery,) = deliveries
    assert delivery["status"] == row.status
    assert delivery["failure_category"] == row.category
    assert delivery["event_type"] == "call.incoming"
    assert delivery["source"] == "legacy"
    assert delivery["call_id"] == setup["call_id"]
    if row.reason is None:
        assert setup["config_source"] == "webhook"
        assert setup["config_error"] is None
        assert setup["config"]["voice"] == "en-US-James1"
        assert call["config_source"] == "webhook"
        assert call["voice"] == "en-US-James1"
        assert call["agent_id"] is None
        return
    assert setup["config_source"] == "default"
    assert setup["config"]["prompt"] == "You are the fallback."
    assert call["config_source"] == "default"
    assert call["agent_id"] == number["inbound_agent_id"]
    assert call["config_error"]["reason"] == row.reason
    assert call["config_error"]["receiver"] == "legacy"
    assert setup["config_error"] == call["config_error"]
    if row.error_part:
        assert any(row.error_part in e for e in call["config_error"]["errors"]), call
        assert any(row.error_part in e for e in delivery["errors"]), delivery
    if row.status == "failed" and row.category == "http_error":
        assert delivery["http_status"] == int(row.reason.removeprefix("http_"))
    assert call["webhook_latency_ms"] is not None
    assert call["status"] == "completed"
    assert call["end_reason"] == "caller_hangup"


async def test_no_webhook(live: LiveServer, number: dict[str, Any]) -> None:
    setup, ended = await setup_and_hangup(live.ws_url, "+15555550200")
    assert setup["config_source"] == "default"
    assert setup["config_error"] == {"reason": "no_webhook", "errors": [], "receiver": None}
    page = await live.json("GET", f"/v1/developer/webhook-deliveries?call_id={setup['call_id']}")
    assert page["results"] == []
    assert ended["end_reason"] == "caller_hangup"


@pytest.mark.parametrize(
    ("name", "url", "reason"),
    [
        ("refused", f"http://127.0.0.1:{free_port()}/hook", "connection"),
        ("dns", "http://does-not-exist.invalid/hook", "dns"),
    ],
)
async def test_transport_failures(
    live: LiveServer, number: dict[str, Any], name: str, url: str, reason: str
) -> None:
    _setup, call, (delivery,) = await run_row(live, url)
    assert call["config_source"] == "default"
    assert call["config_error"]["reason"] == reason
    assert delivery["status"] == "failed"
    assert delivery["failure_category"] == reason
    assert delivery["http_status"] is None


async def test_tls_failure(
    live: LiveServer, receiver: ScriptedReceiver, number: dict[str, Any]
) -> None:
    receiver.on("/hook", json_answer(VALID))
    url = f"https://127.0.0.1:{receiver.port}/hook"  # plain HTTP behind: the handshake fails
    _setup, call, (delivery,) = await run_row(live, url)
    assert call["config_error"]["reason"] == "tls"
    assert delivery["failure_category"] == "tls"


@pytest.mark.parametrize("server_options", [{"incoming_timeout": 0.5}])
async def test_timeout_is_bounded_by_the_deadline(
    live: LiveServer, receiver: ScriptedReceiver, number: dict[str, Any]
) -> None:
    url = receiver.on("/hook", raw_answer(b"{}", delay=3))
    _setup, call, (delivery,) = await run_row(live, url)
    assert call["config_error"]["reason"] == "timeout"
    assert delivery["failure_category"] == "timeout"
    assert 500 <= call["webhook_latency_ms"] <= 550


async def test_seed_handler_picks_prompt_by_area_code(
    live: LiveServer, receiver: ScriptedReceiver, number: dict[str, Any]
) -> None:
    from tests.seed_handler import create_seed_app
    from tests.servers import serve_in_thread

    secret = (await live.json("GET", "/v1/webhook"))["secret"]
    port = free_port()
    with serve_in_thread(create_seed_app(secret), port):
        await live.set_webhook(f"http://127.0.0.1:{port}/thunderphone-webhook")
        sf, _ = await setup_and_hangup(live.ws_url, "+15555550200", "+14155550123")
        ny, _ = await setup_and_hangup(live.ws_url, "+15555550200", "+12125550123")
    assert sf["config_source"] == "webhook" and ny["config_source"] == "webhook"
    assert "San Francisco" in sf["config"]["prompt"]
    assert "San Francisco" not in ny["config"]["prompt"]
    assert "New York" in ny["config"]["prompt"]


async def test_refusals_record_nothing(live: LiveServer, number: dict[str, Any]) -> None:
    from tests.sim import refused_code

    assert await refused_code(live.ws_url, "+15555559999") == 4404
    assert await refused_code(live.ws_url, "+15555550200", key="sk_live_" + "Z" * 40) == 4401
    assert (await live.json("GET", "/v1/calls"))["total"] == 0


async def test_number_without_any_agent_ends_with_error(live: LiveServer) -> None:
    await live.add_number("+15555550201")
    setup, ended = await setup_and_hangup(live.ws_url, "+15555550201")
    assert setup["config_source"] == "none"
    assert setup["config"] is None
    assert ended["status"] == "failed"
    assert ended["end_reason"] == "error"
    assert ended["product"] is None and ended["voice"] is None
    assert ended["config_source"] == "none"
