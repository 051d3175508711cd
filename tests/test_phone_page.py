"""The browser phone without a browser: tokens, web sessions, the web-call socket, the page."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import re
import time
from importlib import resources
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from phonebooth.config import Settings
from phonebooth.core.tokens import (
    WEB_CALL_MAX_TTL,
    TokenError,
    derive_key,
    mint_web_call_token,
    verify_web_call_token,
)
from phonebooth.telephony.browser import (
    TOKEN_KEY_PURPOSE,
    normalize_origin,
    origin_allowed,
    parse_web_start,
)
from phonebooth.telephony.sim_protocol import ProtocolError
from phonebooth.voice.recording import load_recording_key
from tests.conftest import Api, LiveServer
from tests.helpers import other_org_key
from tests.llm_server import ScriptedLLMServer
from tests.servers import ScriptedReceiver, json_answer

KEY = b"k" * 32
NOW = 1_800_000_000
NUMBER = "+15555550200"
ALLOWED = "https://app.example.com"
CONFIG = {"prompt": "You are the web agent.", "voice": "en-US-James1", "product": "bolt"}


@pytest.fixture
def server_options() -> dict[str, Any]:
    return {"allowed_origins": f"{ALLOWED}, https://other.example.com:8443/"}


# -- tokens (pure) -------------------------------------------------------------------------


def test_token_round_trip() -> None:
    token, grant = mint_web_call_token(7, NUMBER, key=KEY, now=NOW)
    assert grant.org_id == 7 and grant.to_number == NUMBER
    assert grant.expires_at == NOW + WEB_CALL_MAX_TTL
    assert verify_web_call_token(token, key=KEY, now=NOW) == grant
    assert verify_web_call_token(token, key=KEY, now=grant.expires_at - 1) == grant
    assert re.fullmatch(r"pbw1\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+", token)


@pytest.mark.parametrize("later", [WEB_CALL_MAX_TTL, WEB_CALL_MAX_TTL + 1, 86_400])
def test_token_expires(later: int) -> None:
    token, _ = mint_web_call_token(7, NUMBER, key=KEY, now=NOW)
    with pytest.raises(TokenError) as caught:
        verify_web_call_token(token, key=KEY, now=NOW + later)
    assert caught.value.problem == "expired"


def test_token_lifetime_is_capped() -> None:
    with pytest.raises(ValueError):
        mint_web_call_token(7, NUMBER, key=KEY, now=NOW, ttl=WEB_CALL_MAX_TTL + 1)
    with pytest.raises(ValueError):
        mint_web_call_token(7, NUMBER, key=KEY, now=NOW, ttl=0)
    # minted by a clock far ahead: a valid signature, but a lifetime over 10 minutes from here
    token, _ = mint_web_call_token(7, NUMBER, key=KEY, now=NOW + 3600)
    with pytest.raises(TokenError):
        verify_web_call_token(token, key=KEY, now=NOW)


def _reclaim(token: str, **changes: Any) -> str:
    """The token with its claims edited and the original signature kept."""
    prefix, body, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    claims.update(changes)
    raw = json.dumps(claims, sort_keys=True, separators=(",", ":")).encode()
    return f"{prefix}.{base64.urlsafe_b64encode(raw).rstrip(b'=').decode()}.{signature}"


@pytest.mark.parametrize(
    "changes",
    [{"num": "+15555550999"}, {"org": 8}, {"exp": NOW + 60}, {"typ": "recording"}],
    ids=["other number", "other org", "other expiry", "other type"],
)
def test_tampered_claims_are_refused(changes: dict[str, Any]) -> None:
    token, _ = mint_web_call_token(7, NUMBER, key=KEY, now=NOW)
    with pytest.raises(TokenError) as caught:
        verify_web_call_token(_reclaim(token, **changes), key=KEY, now=NOW)
    assert caught.value.problem == "signature"


def test_other_keys_and_broken_tokens_are_refused() -> None:
    token, _ = mint_web_call_token(7, NUMBER, key=KEY, now=NOW)
    prefix, body, signature = token.split(".")
    flipped = signature[:-2] + ("A" if signature[-2] != "A" else "B") + signature[-1]
    cases = {
        "other key": (token, b"x" * 32, "signature"),
        "flipped signature": (f"{prefix}.{body}.{flipped}", KEY, "signature"),
        "no signature": (f"{prefix}.{body}.", KEY, "malformed"),
        "other prefix": (f"pbw2.{body}.{signature}", KEY, "malformed"),
        "extra part": (f"{token}.x", KEY, "malformed"),
        "not base64": (f"{prefix}.{body}.!!!", KEY, "malformed"),
        "empty": ("", KEY, "malformed"),
        "huge": ("pbw1." + "A" * 5000 + ".AAAA", KEY, "malformed"),
    }
    for name, (candidate, key, problem) in cases.items():
        with pytest.raises(TokenError) as caught:
            verify_web_call_token(candidate, key=key, now=NOW)
        assert caught.value.problem == problem, name


def test_derived_keys_differ_by_purpose() -> None:
    secret = b"s" * 32
    assert derive_key(secret, "a") != derive_key(secret, "b")
    assert derive_key(secret, "a") == derive_key(secret, "a")
    assert len(derive_key(secret, "a")) == 32


@given(st.text(max_size=300))
def test_any_string_is_refused_cleanly(candidate: str) -> None:
    with pytest.raises(TokenError):
        verify_web_call_token(candidate, key=KEY, now=NOW)


# -- origins and the start message (pure) --------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("http://127.0.0.1:8000", "http://127.0.0.1:8000"),
        ("HTTPS://App.Example.com", "https://app.example.com"),
        ("https://app.example.com:443", "https://app.example.com"),
        ("http://app.example.com:80/", "http://app.example.com"),
        ("http://[::1]:8000", "http://[::1]:8000"),
        ("null", None),
        ("file://", None),
        ("https://app.example.com/path", None),
        ("https://user@app.example.com", None),
        ("https://app.example.com:99999", None),
    ],
)
def test_normalize_origin(value: str, expected: str | None) -> None:
    assert normalize_origin(value) == expected


@pytest.mark.parametrize(
    ("origin", "host", "allowed"),
    [
        ("http://127.0.0.1:8000", "127.0.0.1:8000", True),  # the page this server served
        ("http://localhost:8000", "localhost:8000", True),
        ("https://phone.example.com", "phone.example.com", True),  # behind a TLS proxy
        ("https://phone.example.com", "phone.example.com:443", True),
        ("https://app.example.com", "127.0.0.1:8000", True),  # PHONEBOOTH_ALLOWED_ORIGINS
        ("https://evil.example.com", "127.0.0.1:8000", False),
        ("http://127.0.0.1:8001", "127.0.0.1:8000", False),  # another port is another origin
        ("null", "127.0.0.1:8000", False),
        (None, "127.0.0.1:8000", False),  # not a browser: use /v1/sim/call with a key
        ("http://127.0.0.1:8000", None, False),
    ],
)
def test_origin_allowed(origin: str | None, host: str | None, allowed: bool) -> None:
    assert origin_allowed(origin, host=host, allowed={"https://app.example.com"}) is allowed


def test_parse_web_start() -> None:
    start = parse_web_start(json.dumps({"type": "start", "token": "t", "audio": True}))
    assert (start.token, start.audio) == ("t", True)
    assert parse_web_start('{"type": "start", "token": "t"}').audio is False
    for bad in ["nope", "[]", '{"type": "media"}', '{"type": "start"}',
                '{"type": "start", "token": ""}', '{"type": "start", "token": "t", "audio": 1}',
                '{"type": "start", "api_key": "sk_live_x"}']:  # fmt: skip
        with pytest.raises(ProtocolError):
            parse_web_start(bad)


def test_allowed_origins_setting(tmp_path: Any) -> None:
    settings = Settings(data_dir=tmp_path, allowed_origins=" https://A.example.com/ ,http://b:81")
    assert settings.allowed_origin_list == ("https://a.example.com", "http://b:81")
    assert Settings(data_dir=tmp_path).allowed_origin_list == ()
    with pytest.raises(ValueError, match="is not an origin"):
        Settings(data_dir=tmp_path, allowed_origins="https://a.example.com/app")


# -- POST /v1/web-sessions -----------------------------------------------------------------


def token_key(settings: Settings) -> bytes:
    """The key the server signs tokens with: a subkey of `<data_dir>/recording-key`."""
    return derive_key(load_recording_key(settings.data_dir), TOKEN_KEY_PURPOSE)


async def test_web_session_is_a_token_for_one_number(api: Api, app_settings: Settings) -> None:
    created = await api.post("/v1/phone-numbers", json={"number": NUMBER})
    assert created.status_code == 201, created.text
    before = int(time.time())
    response = await api.post("/v1/web-sessions", json={"to_number": NUMBER})
    assert response.status_code == 201, response.text
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert set(body) == {"token", "expires_at", "to_number"}
    assert body["to_number"] == NUMBER
    after = int(time.time())
    grant = verify_web_call_token(body["token"], key=token_key(app_settings), now=after)
    assert grant.to_number == NUMBER
    assert before + WEB_CALL_MAX_TTL <= grant.expires_at <= after + WEB_CALL_MAX_TTL
    assert body["expires_at"].endswith("Z")
    assert (app_settings.data_dir / "recording-key").stat().st_mode & 0o777 == 0o600


async def test_web_session_needs_a_key_of_the_numbers_org(api: Api, app_settings: Settings) -> None:
    await api.post("/v1/phone-numbers", json={"number": NUMBER})
    anonymous = await api.client.post("/v1/web-sessions", json={"to_number": NUMBER})
    assert anonymous.status_code == 401
    bad_key = await api.as_key("sk_live_" + "Z9" * 20).post(
        "/v1/web-sessions", json={"to_number": NUMBER}
    )
    assert bad_key.status_code == 401
    other = api.as_key(await other_org_key(app_settings))
    assert (await other.post("/v1/web-sessions", json={"to_number": NUMBER})).status_code == 404
    unknown = await api.post("/v1/web-sessions", json={"to_number": "+15555550999"})
    assert unknown.status_code == 404


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "to_number"),
        ({"to_number": 15555550200}, "to_number"),
        ({"to_number": "555-0200"}, "to_number"),
        ({"to_number": NUMBER, "from_number": "+15555550100"}, "from_number"),
        ([NUMBER], "body"),
        ("not json", "body"),
    ],
)
async def test_web_session_bad_body(api: Api, body: Any, field: str) -> None:
    await api.post("/v1/phone-numbers", json={"number": NUMBER})
    content = body if isinstance(body, str) else json.dumps(body)
    response = await api.post(
        "/v1/web-sessions", content=content, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 400, response.text
    assert field in response.json()["detail"]
    if field != "from_number":  # an unknown key is named in the message, not as the field
        assert [e["field"] for e in response.json()["errors"]] == [field]


# -- the page ------------------------------------------------------------------------------


def static(name: str) -> str:
    return resources.files("phonebooth.api").joinpath("static", name).read_text("utf-8")


async def test_page_has_a_strict_policy_and_no_inline_code(api: Api) -> None:
    response = await api.client.get("/phone")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    policy = dict(
        part.strip().split(" ", 1)
        for part in response.headers["content-security-policy"].split(";")
    )
    assert policy["default-src"] == "'self'"
    assert policy["script-src"] == "'self'"
    assert policy["connect-src"] == "'self' ws://testserver wss://testserver"
    assert policy["frame-ancestors"] == "'none'"
    assert policy["object-src"] == "'none'"
    assert "unsafe" not in response.headers["content-security-policy"]
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["referrer-policy"] == "no-referrer"
    html = response.text
    scripts = re.findall(r"<script\b([^>]*)>(.*?)</script>", html, re.S | re.I)
    assert scripts and all('src="/phone/' in attrs and not body.strip() for attrs, body in scripts)
    assert not re.search(r"\son[a-z]+\s*=", html, re.I), "inline event handler"
    assert not re.search(r"\sstyle\s*=|<style", html, re.I), "inline style"
    assert "javascript:" not in html.lower()
    for name, kind in [("phone.js", "text/javascript"), ("phone-worklet.js", "text/javascript"),
                       ("phone.css", "text/css")]:  # fmt: skip
        asset = await api.client.get(f"/phone/{name}")
        assert asset.status_code == 200 and asset.headers["content-type"].startswith(kind)
        assert asset.headers["x-content-type-options"] == "nosniff"
    assert (await api.client.get("/phone/app.py")).status_code == 404
    assert (await api.client.get("/phone/..%2Fapp.py")).status_code == 404
    evil = await api.client.get("/phone", headers={"host": "x\r\ny"})
    assert "connect-src 'self';" in evil.headers["content-security-policy"]


def test_page_script_keeps_credentials_out_of_urls_and_html() -> None:
    code = static("phone.js") + static("phone-worklet.js")
    code_only = re.sub(r"//.*", "", code)  # comments may name what the code never does
    for forbidden in ["innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(",
                      "new Function", "localStorage", "sessionStorage", "document.cookie",
                      "indexedDB", "URLSearchParams", "searchParams", "location.search",
                      "location.hash", "history."]:  # fmt: skip
        assert forbidden not in code_only, forbidden
    # Every URL the page asks for is a literal path, or the socket URL built from the page's
    # own location: nothing the user typed or the server answered goes into one.
    requests = re.findall(r"\bapi\(\s*\"(\w+)\",\s*([^,]+),", code_only)
    assert sorted(path for _, path in requests) == ['"/v1/phone-numbers"', '"/v1/web-sessions"']
    assert re.findall(r"\bfetch\(([^,)]+)", code_only) == ["path"]
    assert re.findall(r"new WebSocket\(([^)]*)\)", code_only) == ["url"]
    assert re.findall(r"addModule\(([^)]*)\)", code_only) == ['"/phone/phone-worklet.js"']
    socket_url = re.search(r"function socketUrl\(\) \{(.*?)\n\}", code_only, re.S)
    assert socket_url is not None
    assert "token" not in socket_url.group(1) and "key" not in socket_url.group(1).lower()
    assert "const url = socketUrl();" in code_only
    # the token only in the first message; the key only in the Authorization header
    no_strings = re.sub(r'"[^"\n]*"', '""', code_only)
    assert re.findall(r"\btoken\b[^\n]*", no_strings) == [
        "token;",
        "token = session.token;",
        "token, audio: true }));",
        "token = null;",
    ]
    assert re.findall(r"Bearer[^\n]*", code_only) == ["Bearer ${key}` };"]


# -- WS /v1/web/call -----------------------------------------------------------------------


async def mint(live: LiveServer, number: str = NUMBER) -> str:
    response = await live.http.post("/v1/web-sessions", json={"to_number": number})
    assert response.status_code == 201, response.text
    token: str = response.json()["token"]
    return token


def web_url(live: LiveServer) -> str:
    return live.ws_url.replace("/v1/sim/call", "/v1/web/call")


async def close_code(ws: ClientConnection) -> int | None:
    with pytest.raises(ConnectionClosed):
        while True:
            await asyncio.wait_for(ws.recv(), 10)
    return ws.close_code


async def refused(live: LiveServer, origin: str | None, start: dict[str, Any] | None) -> int | None:
    options: dict[str, Any] = {} if origin is None else {"origin": origin}
    async with connect(web_url(live), **options) as ws:
        if start is not None:
            with contextlib.suppress(ConnectionClosed):  # an Origin refusal comes first
                await ws.send(json.dumps(start))
        return await close_code(ws)


async def test_socket_refuses_bad_tokens(live: LiveServer) -> None:
    await live.add_number(NUMBER)
    good, _ = mint_web_call_token(1, NUMBER, key=b"not the server's key" * 2, now=int(time.time()))
    stale, _ = mint_web_call_token(
        1, NUMBER, key=token_key(live.settings), now=int(time.time()) - 601
    )
    for token in ["garbage", good, stale, "pbw1.e30.AAAA"]:
        start = {"type": "start", "token": token, "audio": False}
        assert await refused(live, live.base, start) == 4401, token
    assert await refused(live, live.base, {"type": "start", "api_key": "x"}) == 4400
    assert (await live.json("GET", "/v1/calls"))["results"] == []


async def test_socket_checks_the_origin(live: LiveServer) -> None:
    agent = await live.add_agent(inbound_speak_order="caller_first")
    await live.add_number(NUMBER, agent["id"])
    token = await mint(live)
    start = {"type": "start", "token": token, "audio": False}
    for origin in ["https://evil.example.com", "http://127.0.0.1:1", "null", None]:
        assert await refused(live, origin, start) == 4403, origin
    assert (await live.json("GET", "/v1/calls"))["results"] == []
    for origin in [live.base, ALLOWED, "https://other.example.com:8443"]:
        async with connect(web_url(live), origin=origin) as ws:
            await ws.send(json.dumps(start))
            setup = json.loads(await asyncio.wait_for(ws.recv(), 10))
            assert setup["type"] == "setup", setup
            await ws.send(json.dumps({"type": "hangup"}))
            ended = json.loads(await asyncio.wait_for(ws.recv(), 10))
            assert ended["type"] == "ended" and ended["direction"] == "web"


async def test_token_outlives_its_number(live: LiveServer) -> None:
    number = await live.add_number(NUMBER)
    token = await mint(live)
    await live.json("DELETE", f"/v1/phone-numbers/{number['id']}", expect=204)
    start = {"type": "start", "token": token, "audio": False}
    assert await refused(live, live.base, start) == 4404


async def test_text_web_call_is_a_web_call(
    live: LiveServer, llm: ScriptedLLMServer, receiver: ScriptedReceiver
) -> None:
    url = receiver.on("/web", json_answer(CONFIG))
    phone_only = receiver.on("/phone", json_answer({**CONFIG, "prompt": "phone"}))
    for path, events in [(url, ["web.incoming"]), (phone_only, ["telephony.incoming"])]:
        await live.json(
            "POST",
            "/v1/developer/webhook-endpoints",
            {"label": events[0], "url": path, "events": events},
            201,
        )
    agent = await live.add_agent(inbound_speak_order="caller_first")
    await live.add_number(NUMBER, agent["id"])
    llm.reply_text("Hello from the web agent.")
    token = await mint(live)
    async with connect(web_url(live), origin=live.base) as ws:
        await ws.send(json.dumps({"type": "start", "token": token, "audio": False}))
        setup = json.loads(await asyncio.wait_for(ws.recv(), 10))
        assert setup["type"] == "setup" and setup["config_source"] == "webhook", setup
        await ws.send(json.dumps({"type": "caller_text", "text": "Hi there"}))
        deltas = []
        while (message := json.loads(await asyncio.wait_for(ws.recv(), 10)))["type"] != (
            "agent_turn_end"
        ):
            deltas.append(message.get("delta", ""))
        assert "".join(deltas) == "Hello from the web agent."
        await ws.send(json.dumps({"type": "hangup"}))
        ended = json.loads(await asyncio.wait_for(ws.recv(), 10))
    assert ended["type"] == "ended"
    assert ended["direction"] == "web"
    assert ended["from_number"] == "web" and ended["to_number"] == NUMBER
    assert ended["end_reason"] == "caller_hangup"
    assert [r["role"] for r in ended["transcripts"]] == ["user", "assistant"]
    incoming = receiver.requests_to("/web")
    assert len(incoming) == 1
    body = incoming[0].json()
    assert body["type"] == "web.incoming"
    assert body["data"] == {"call_id": setup["call_id"], "from_number": "web", "to_number": NUMBER}
    assert receiver.requests_to("/phone") == []
    stored = await live.json("GET", f"/v1/calls/{setup['call_id']}")
    assert stored["direction"] == "web" and stored["from_number"] == "web"
