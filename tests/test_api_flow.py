"""The foundation's acceptance path: one key builds a whole setup and reads it back."""

from __future__ import annotations

from tests.conftest import Api
from tests.helpers import agent_body


async def test_healthz_needs_no_key(api: Api) -> None:
    response = await api.client.get("/v1/healthz")
    assert response.status_code == 200
    assert response.json() == {"ok": True}


async def test_configured_key_builds_a_whole_setup(api: Api) -> None:
    created = await api.post("/v1/agents", json=agent_body(first_message="Hello!"))
    assert created.status_code == 201, created.text
    agent = created.json()
    assert agent["product"] == "bolt"
    assert agent["inbound_speak_order"] == "agent_first"
    assert agent["first_message"] == "Hello!"
    assert agent["tools"][0]["endpoint"]["headers"] == {"X-Api-Key": "***"}
    assert agent["tools"][0]["endpoint"]["method"] == "POST"
    assert agent["tools"][0]["timeout"] == 10

    number = await api.post(
        "/v1/phone-numbers", json={"number": "+15555550200", "inbound_agent_id": agent["id"]}
    )
    assert number.status_code == 201, number.text
    assert number.json()["inbound_agent_id"] == agent["id"]
    assert number.json()["source"] == "virtual"
    assert number.json()["status"] == "active"

    patched = await api.patch(
        f"/v1/phone-numbers/{number.json()['id']}", json={"label": "Front desk"}
    )
    assert patched.status_code == 200
    assert patched.json()["label"] == "Front desk"
    assert patched.json()["inbound_agent_id"] == agent["id"]

    before = await api.get("/v1/webhook")
    assert before.json()["url"] is None
    assert before.json()["secret"].startswith("whsec_")
    hook = await api.put("/v1/webhook", json={"url": "https://hooks.example.com/incoming"})
    assert hook.status_code == 200
    assert hook.json()["url"] == "https://hooks.example.com/incoming"
    assert hook.json()["secret"] == before.json()["secret"]
    assert len(hook.json()["secret"]) == len("whsec_") + 43

    endpoint = await api.post(
        "/v1/developer/webhook-endpoints",
        json={
            "label": "logs",
            "url": "https://logs.example.com/",
            "events": ["telephony.complete"],
        },
    )
    assert endpoint.status_code == 201, endpoint.text
    secret = endpoint.json()["secret"]
    assert secret.startswith("whsec_")
    assert endpoint.json()["secret_hint"] == "whsec_…" + secret[-6:]

    agents = (await api.get("/v1/agents")).json()
    numbers = (await api.get("/v1/phone-numbers")).json()
    endpoints = (await api.get("/v1/developer/webhook-endpoints")).json()
    assert [a["id"] for a in agents] == [agent["id"]]
    assert [n["number"] for n in numbers] == ["+15555550200"]
    assert len(endpoints) == 1
    assert "secret" not in endpoints[0]
    assert endpoints[0]["secret_hint"] == endpoint.json()["secret_hint"]
    single = await api.get(f"/v1/developer/webhook-endpoints/{endpoint.json()['id']}")
    assert "secret" not in single.json()


async def test_admin_reading_one_agent_sees_header_values(api: Api) -> None:
    agent = (await api.post("/v1/agents", json=agent_body())).json()
    full = (await api.get(f"/v1/agents/{agent['id']}")).json()
    assert full["tools"][0]["endpoint"]["headers"] == {"X-Api-Key": "your-key"}
    listed = (await api.get("/v1/agents")).json()
    assert listed[0]["tools"][0]["endpoint"]["headers"] == {"X-Api-Key": "***"}


async def test_put_back_redacted_headers_keeps_stored_values(api: Api) -> None:
    agent = (await api.post("/v1/agents", json=agent_body())).json()
    redacted = (await api.get("/v1/agents")).json()[0]
    body = {k: redacted[k] for k in ("name", "prompt", "voice", "product", "tools")}
    body["prompt"] = "New prompt"
    assert (await api.put(f"/v1/agents/{agent['id']}", json=body)).status_code == 200
    full = (await api.get(f"/v1/agents/{agent['id']}")).json()
    assert full["prompt"] == "New prompt"
    assert full["tools"][0]["endpoint"]["headers"] == {"X-Api-Key": "your-key"}


async def test_agent_patch_put_delete_and_conflicts(api: Api) -> None:
    agent = (await api.post("/v1/agents", json=agent_body())).json()
    patched = await api.patch(f"/v1/agents/{agent['id']}", json={"product": "zap"})
    assert patched.status_code == 200
    assert patched.json()["product"] == "zap"
    assert patched.json()["name"] == "Receptionist"
    assert patched.json()["updated_at"] >= agent["updated_at"]

    number = (
        await api.post(
            "/v1/phone-numbers", json={"number": "+15555550201", "inbound_agent_id": agent["id"]}
        )
    ).json()
    in_use = await api.delete(f"/v1/agents/{agent['id']}")
    assert in_use.status_code == 409
    assert "+15555550201" in in_use.json()["detail"]

    duplicate = await api.post("/v1/phone-numbers", json={"number": "+15555550201"})
    assert duplicate.status_code == 409

    unassign = await api.patch(f"/v1/phone-numbers/{number['id']}", json={"inbound_agent_id": None})
    assert unassign.json()["inbound_agent_id"] is None
    assert (await api.delete(f"/v1/agents/{agent['id']}")).status_code == 204
    assert (await api.get(f"/v1/agents/{agent['id']}")).status_code == 404
    deploy = await api.post(f"/v1/agents/{agent['id']}/deploy")
    assert deploy.status_code == 404


async def test_endpoint_update_rotation_and_delete(api: Api) -> None:
    created = (
        await api.post(
            "/v1/developer/webhook-endpoints",
            json={"label": "a", "url": "https://a.example.com/", "events": []},
        )
    ).json()
    updated = await api.patch(
        f"/v1/developer/webhook-endpoints/{created['id']}",
        json={"events": ["telephony.incoming", "telephony.incoming"], "label": "b"},
    )
    assert updated.status_code == 200
    assert updated.json()["events"] == ["telephony.incoming"]
    assert updated.json()["label"] == "b"
    rotated = await api.post(f"/v1/developer/webhook-endpoints/{created['id']}/rotate-secret")
    assert rotated.status_code == 200
    assert rotated.json()["secret"] != created["secret"]
    assert rotated.json()["secret_hint"].endswith(rotated.json()["secret"][-6:])
    org_before = (await api.get("/v1/webhook")).json()["secret"]
    org_after = (await api.post("/v1/webhook/rotate-secret")).json()["secret"]
    assert org_after != org_before and org_after.startswith("whsec_")
    assert (await api.delete(f"/v1/developer/webhook-endpoints/{created['id']}")).status_code == 204
    assert (await api.get("/v1/developer/webhook-endpoints")).json() == []


async def test_calls_are_empty_until_calls_exist(api: Api) -> None:
    listed = await api.get("/v1/calls")
    assert listed.json() == {"results": [], "total": 0, "limit": 50, "offset": 0}
    assert (await api.get("/v1/calls/123")).status_code == 404
    assert (await api.get("/v1/calls/123/transcript")).status_code == 404
    assert (await api.get("/v1/calls?limit=0")).status_code == 400
    voices = await api.get("/v1/voices")
    assert voices.status_code == 200
    assert set(voices.json()) == {"voices", "languages"}
