"""Isolation between organizations, roles, revocation, and key storage."""

from __future__ import annotations

from phonebooth.config import Settings
from phonebooth.core.secrets import hash_api_key
from phonebooth.storage.db import Database
from phonebooth.storage.orgs import list_api_keys
from tests.conftest import ADMIN_KEY, Api
from tests.helpers import agent_body, other_org_key


async def test_other_organization_sees_nothing(api: Api, app_settings: Settings) -> None:
    agent = (await api.post("/v1/agents", json=agent_body())).json()
    number = (await api.post("/v1/phone-numbers", json={"number": "+15555550300"})).json()
    endpoint = (
        await api.post(
            "/v1/developer/webhook-endpoints", json={"label": "x", "url": "https://x.example.com/"}
        )
    ).json()
    other = api.as_key(await other_org_key(app_settings))

    for path in ("/v1/agents", "/v1/phone-numbers", "/v1/developer/webhook-endpoints"):
        assert (await other.get(path)).json() == []
    assert (await other.get("/v1/calls")).json()["total"] == 0
    assert (await other.get(f"/v1/agents/{agent['id']}")).status_code == 404
    assert (await other.patch(f"/v1/agents/{agent['id']}", json={"name": "x"})).status_code == 404
    assert (await other.delete(f"/v1/agents/{agent['id']}")).status_code == 404
    assert (await other.get(f"/v1/phone-numbers/{number['id']}")).status_code == 404
    assert (
        await other.patch(f"/v1/phone-numbers/{number['id']}", json={"label": "x"})
    ).status_code == 404
    endpoint_path = f"/v1/developer/webhook-endpoints/{endpoint['id']}"
    assert (await other.patch(endpoint_path, json={"label": "y"})).status_code == 404
    assert (await other.post(endpoint_path + "/rotate-secret")).status_code == 404
    assert (await other.delete(endpoint_path)).status_code == 404
    other_secret = (await other.get("/v1/webhook")).json()["secret"]
    assert other_secret != (await api.get("/v1/webhook")).json()["secret"]
    # a number belongs to the installation: the other org cannot take it either
    assert (
        await other.post("/v1/phone-numbers", json={"number": "+15555550300"})
    ).status_code == 409
    # nor point its number at our agent
    response = await other.post(
        "/v1/phone-numbers", json={"number": "+15555550301", "inbound_agent_id": agent["id"]}
    )
    assert response.status_code == 400


async def test_member_key_cannot_touch_keys_or_secrets(api: Api) -> None:
    created = await api.post("/v1/developer/api-keys", json={"name": "ops", "role": "member"})
    assert created.status_code == 201
    member_key = created.json()["key"]
    assert created.json()["key_prefix"] == member_key[:15]
    member = api.as_key(member_key)

    assert (await member.post("/v1/developer/api-keys", json={})).status_code == 403
    assert (await member.get("/v1/developer/api-keys")).status_code == 403
    assert (await member.get("/v1/webhook")).status_code == 403
    assert (
        await member.put("/v1/webhook", json={"url": "https://x.example.com/"})
    ).status_code == 403
    assert (await member.post("/v1/webhook/rotate-secret")).status_code == 403
    # members still do everything else
    assert (await member.post("/v1/agents", json=agent_body())).status_code == 201
    agent_id = (await member.get("/v1/agents")).json()[0]["id"]
    full = (await member.get(f"/v1/agents/{agent_id}")).json()
    assert full["tools"][0]["endpoint"]["headers"] == {"X-Api-Key": "***"}


async def test_revoked_key_gets_401(api: Api) -> None:
    created = (await api.post("/v1/developer/api-keys", json={"role": "admin"})).json()
    second = api.as_key(created["key"])
    assert (await second.get("/v1/agents")).status_code == 200
    assert (await api.delete(f"/v1/developer/api-keys/{created['id']}")).status_code == 204
    revoked = await second.get("/v1/agents")
    assert revoked.status_code == 401
    assert revoked.json()["detail"] == "Invalid or revoked API key"
    listed = {k["id"]: k for k in (await api.get("/v1/developer/api-keys")).json()}
    assert listed[created["id"]]["is_active"] is False
    assert listed[created["id"]]["revoked_at"] is not None


async def test_missing_or_malformed_auth_is_401(api: Api) -> None:
    assert (await api.client.get("/v1/agents")).status_code == 401
    wrong = await api.client.get("/v1/agents", headers={"Authorization": "Basic abc"})
    assert wrong.status_code == 401
    token = await api.client.get("/v1/agents", headers={"Authorization": f"Token {ADMIN_KEY}"})
    assert token.status_code == 200


async def test_last_admin_key_cannot_be_revoked(api: Api) -> None:
    keys = (await api.get("/v1/developer/api-keys")).json()
    assert len(keys) == 1
    response = await api.delete(f"/v1/developer/api-keys/{keys[0]['id']}")
    assert response.status_code == 409


async def test_keys_are_stored_hashed(api: Api, app_settings: Settings) -> None:
    created = (await api.post("/v1/developer/api-keys", json={"name": "x"})).json()
    assert created["role"] == "member"
    db = Database(app_settings.resolved_database_url)
    try:
        async with db.session() as session:
            rows = await list_api_keys(session, 1)
    finally:
        await db.dispose()
    stored = {row.key_hash for row in rows}
    assert hash_api_key(created["key"]) in stored
    assert created["key"] not in stored
    assert all(len(h) == 64 for h in stored)
