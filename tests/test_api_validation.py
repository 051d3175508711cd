"""Bad input gets 400 with `errors` naming the field (never FastAPI's 422)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import Api
from tests.helpers import SEARCH_TOOL, agent_body


def _tool(**changes: Any) -> dict[str, Any]:
    tool: dict[str, Any] = {
        **SEARCH_TOOL,
        "function": dict(SEARCH_TOOL["function"]),
        "endpoint": dict(SEARCH_TOOL["endpoint"]),
    }
    for path, value in changes.items():
        section, key = path.split("__")
        tool[section][key] = value
    return tool


AGENT_CASES = [
    ("unknown top-level key", agent_body(status="ok"), "", "unknown key 'status'"),
    (
        "product fast",
        agent_body(product="fast"),
        "product",
        "'fast' is not one of spark, bolt, zap",
    ),
    (
        "parameters not an object schema",
        agent_body(tools=[_tool(function__parameters={"type": "string"})]),
        "tools[0].function.parameters",
        "top-level type is 'object'",
    ),
    (
        "Host header",
        agent_body(tools=[_tool(endpoint__headers={"Host": "evil.example.com"})]),
        "tools[0].endpoint.headers",
        "'Host' is not allowed",
    ),
    ("missing prompt", {"name": "x", "voice": "v"}, "prompt", "is required"),
    ("tools null", agent_body(tools=None), "tools", "must be an array"),
    (
        "relative tool url",
        agent_body(tools=[_tool(endpoint__url="/relative")]),
        "tools[0].endpoint.url",
        "absolute http or https URL",
    ),
    (
        "metadata tool url",
        agent_body(tools=[_tool(endpoint__url="http://169.254.169.254/latest")]),
        "tools[0].endpoint.url",
        "169.254.169.254",
    ),
    (
        "bad method",
        agent_body(tools=[_tool(endpoint__method="TRACE")]),
        "tools[0].endpoint.method",
        "must be one of",
    ),
    ("speak order", agent_body(inbound_speak_order="whenever"), "inbound_speak_order", "not one"),
    ("prompt type", agent_body(prompt=5), "prompt", "must be a string"),
]


@pytest.mark.parametrize(
    ("case", "body", "field", "message"), AGENT_CASES, ids=[c[0] for c in AGENT_CASES]
)
async def test_bad_agent_is_400_naming_the_field(
    api: Api, case: str, body: dict[str, Any], field: str, message: str
) -> None:
    response = await api.post("/v1/agents", json=body)
    assert response.status_code == 400, response.text
    payload = response.json()
    assert payload["detail"]
    matching = [e for e in payload["errors"] if e["field"] == field]
    assert matching, payload
    assert any(message in e["message"] for e in matching), payload


async def test_header_values_never_echoed_in_errors(api: Api) -> None:
    tool = _tool(endpoint__headers={"Host": "topsecret-value-123", "X-Key": 42})
    response = await api.post("/v1/agents", json=agent_body(tools=[tool]))
    assert response.status_code == 400
    assert "topsecret-value-123" not in response.text


@pytest.mark.parametrize(
    "number", ["5555550100", "+0123456", "+1", "+1555555010012345678", "+1 555"]
)
async def test_number_not_e164_is_400(api: Api, number: str) -> None:
    response = await api.post("/v1/phone-numbers", json={"number": number})
    assert response.status_code == 400
    assert response.json()["errors"][0]["field"] == "number"


async def test_number_with_foreign_agent_is_400(api: Api) -> None:
    response = await api.post(
        "/v1/phone-numbers", json={"number": "+15555550100", "inbound_agent_id": 999}
    )
    assert response.status_code == 400
    assert response.json()["errors"][0]["field"] == "inbound_agent_id"


async def test_unknown_event_name_is_400(api: Api) -> None:
    response = await api.post(
        "/v1/developer/webhook-endpoints",
        json={"label": "x", "url": "https://x.example.com/", "events": ["call.exploded"]},
    )
    assert response.status_code == 400
    assert response.json()["errors"][0]["field"] == "events"
    assert "call.exploded" in response.json()["errors"][0]["message"]


async def test_endpoint_label_and_url_rules(api: Api) -> None:
    long_label = await api.post(
        "/v1/developer/webhook-endpoints",
        json={"label": "x" * 121, "url": "https://x.example.com/"},
    )
    assert long_label.status_code == 400
    assert long_label.json()["errors"][0]["field"] == "label"
    bad_url = await api.post(
        "/v1/developer/webhook-endpoints", json={"label": "x", "url": "ftp://x/"}
    )
    assert bad_url.status_code == 400
    assert bad_url.json()["errors"][0]["field"] == "url"


async def test_webhook_url_literal_policy(api: Api) -> None:
    refused = await api.put("/v1/webhook", json={"url": "http://[fd00:ec2::254]/"})
    assert refused.status_code == 400
    assert refused.json()["errors"][0]["field"] == "url"


async def test_malformed_bodies(api: Api) -> None:
    not_json = await api.post(
        "/v1/agents", content=b"{nope", headers={"Content-Type": "application/json"}
    )
    assert not_json.status_code == 400
    assert not_json.json()["errors"][0] == {"field": "body", "message": "is not valid JSON"}
    array = await api.post("/v1/agents", json=[1, 2])
    assert array.status_code == 400
    path = await api.get("/v1/agents/not-a-number")
    assert path.status_code == 400
    assert "errors" in path.json()
