"""The customer toolkit: a FastAPI handler guarded by `thunderphone_event`, driven over ASGI."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
import thunderphone
from fastapi import Depends, FastAPI, Request
from pydantic import BaseModel

from phonebooth.receiver import (
    IncomingCallEvent,
    WebhookAnswer,
    request_target,
    thunderphone_event,
    verify_body_signature,
    verify_signature,
)
from phonebooth.webhooks.signing import build_headers, serialize, sign_v1

SECRET = "whsec_test123"
BASE = "http://customer.test"
EVENT = {
    "type": "call.incoming",
    "data": {"call_id": 987654321, "from_number": "+15555550100", "to_number": "+15555550200"},
}
BODY = serialize(EVENT)


class LookupArgs(BaseModel):
    id: int


def make_app() -> FastAPI:
    app = FastAPI()

    @app.post("/thunderphone-webhook")
    async def hook(event: IncomingCallEvent = Depends(thunderphone_event(SECRET))) -> WebhookAnswer:
        return WebhookAnswer(
            prompt=f"Greet {event.data.from_number}", voice="en-US-James1", product="spark"
        )

    @app.post("/rotating")
    async def rotating(
        event: IncomingCallEvent = Depends(thunderphone_event(["whsec_new", SECRET])),
    ) -> dict[str, int]:
        return {"call_id": event.data.call_id}

    @app.post("/v2-only")
    async def v2_only(
        event: IncomingCallEvent = Depends(thunderphone_event(SECRET, accept_v1=False)),
    ) -> dict[str, str]:
        return {"type": event.type}

    @app.post("/tools/lookup")
    async def lookup(
        args: LookupArgs = Depends(thunderphone_event(SECRET, model=LookupArgs)),
    ) -> dict[str, int]:
        return {"id": args.id}

    return app


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=make_app())
    async with httpx.AsyncClient(transport=transport, base_url=BASE) as c:
        yield c


def signed(
    url: str, body: bytes = BODY, *, t: int | None = None, method: str = "POST"
) -> dict[str, str]:
    stamp = int(time.time()) if t is None else t
    return build_headers(secrets=[SECRET], method=method, url=url, body=body, timestamp=stamp)


async def test_valid_v2(client: httpx.AsyncClient) -> None:
    url = f"{BASE}/thunderphone-webhook?source=prod"
    response = await client.post(url, content=BODY, headers=signed(url))
    assert response.status_code == 200, response.text
    assert response.json()["prompt"] == "Greet +15555550100"


async def test_valid_v2_with_encoded_path(client: httpx.AsyncClient) -> None:
    url = f"{BASE}/thunderphone-webhook?name=Jos%C3%A9%20Garc%C3%ADa&x=%2F"
    response = await client.post(url, content=BODY, headers=signed(url))
    assert response.status_code == 200, response.text


async def test_valid_v1_only(client: httpx.AsyncClient) -> None:
    headers = {
        "Content-Type": "application/json",
        "X-ThunderPhone-Signature": sign_v1(BODY, SECRET),
    }
    response = await client.post("/thunderphone-webhook", content=BODY, headers=headers)
    assert response.status_code == 200, response.text


async def test_v1_refused_when_v2_is_required(client: httpx.AsyncClient) -> None:
    headers = {"X-ThunderPhone-Signature": sign_v1(BODY, SECRET)}
    response = await client.post("/v2-only", content=BODY, headers=headers)
    assert response.status_code == 401
    url = f"{BASE}/v2-only"
    assert (await client.post(url, content=BODY, headers=signed(url))).status_code == 200


async def test_tampered_body(client: httpx.AsyncClient) -> None:
    url = f"{BASE}/thunderphone-webhook"
    tampered = BODY.replace(b"987654321", b"987654322")
    response = await client.post(url, content=tampered, headers=signed(url))
    assert response.status_code == 401
    v1_only = {"X-ThunderPhone-Signature": sign_v1(BODY, SECRET)}
    assert (await client.post(url, content=tampered, headers=v1_only)).status_code == 401


async def test_v2_checked_even_when_v1_is_valid(client: httpx.AsyncClient) -> None:
    """A valid V1 next to a bad V2 must not pass: V2 wins whenever it is present."""
    url = f"{BASE}/thunderphone-webhook"
    headers = signed(f"{BASE}/elsewhere")  # V2 for another path, V1 still matches the body
    response = await client.post(url, content=BODY, headers=headers)
    assert response.status_code == 401


async def test_stale_timestamp(client: httpx.AsyncClient) -> None:
    url = f"{BASE}/thunderphone-webhook"
    response = await client.post(url, content=BODY, headers=signed(url, t=int(time.time()) - 301))
    assert response.status_code == 401


async def test_missing_header(client: httpx.AsyncClient) -> None:
    response = await client.post("/thunderphone-webhook", content=BODY)
    assert response.status_code == 401


async def test_rotation_accepts_either_secret(client: httpx.AsyncClient) -> None:
    url = f"{BASE}/rotating"
    response = await client.post(url, content=BODY, headers=signed(url))
    assert response.json() == {"call_id": 987654321}


async def test_verified_but_malformed_event_is_422(client: httpx.AsyncClient) -> None:
    url = f"{BASE}/thunderphone-webhook"
    body = serialize({"type": "call.incoming", "data": {}})
    response = await client.post(url, content=body, headers=signed(url, body))
    assert response.status_code == 422


async def test_tool_arguments_model(client: httpx.AsyncClient) -> None:
    url = f"{BASE}/tools/lookup"
    body = serialize({"id": 7})
    response = await client.post(url, content=body, headers=signed(url, body))
    assert response.json() == {"id": 7}


def test_verify_signature_matches_the_official_client() -> None:
    header = "t=1767225600,v1=e9149faffca143a3de4f25791e0df4c7dec3c4d48029ae994fda63eceda32db5"
    args: dict[str, Any] = {
        "secret": SECRET,
        "method": "POST",
        "path": "/thunderphone-webhook?source=prod",
        "body": BODY,
        "now": 1767225600.0,
    }
    verifiers: list[Callable[..., bool]] = [verify_signature, thunderphone.verify_signature]
    for verify in verifiers:
        assert verify(header, **args)
        assert verify(header, **{**args, "body": BODY.decode()})
        assert verify(header, **{**args, "secret": ["whsec_x", SECRET]})
        assert not verify(header, **{**args, "now": 1767225600.0 + 301})
        assert not verify(None, **args)
        with pytest.raises(ValueError):
            verify(header, **{**args, "secret": []})
        with pytest.raises(ValueError):
            verify(header, **{**args, "tolerance": -1})


def test_verify_body_signature() -> None:
    v1 = "c9c21f36f51cc944890cb2d73c13efd239acc2a1c6df9c087cb1a8b5edb046c9"
    assert verify_body_signature(BODY, v1, SECRET)
    assert verify_body_signature(BODY.decode(), v1, ["whsec_new", SECRET])
    assert not verify_body_signature(BODY + b" ", v1, SECRET)
    assert not verify_body_signature(BODY, None, SECRET)


async def test_request_target_is_the_wire_form() -> None:
    app = FastAPI()
    seen: list[str] = []

    @app.put("/{rest:path}")
    async def put(rest: str, request: Request) -> None:
        seen.append(request_target(request))

    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url=BASE) as c:
        await c.put("/caf%C3%A9/a%2Fb?q=a%20b&r=%7e")
        await c.put("/plain")
    assert seen == ["/caf%C3%A9/a%2Fb?q=a%20b&r=%7e", "/plain"]
